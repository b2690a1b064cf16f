"""Stage APOGEENet's third (last) retrain slice from its resume file, at the session's end.

The slice (--max-seconds 9340, from the second slice's checkpoint at 3e-4) would have run one more ~590 s epoch and
its final validation evaluation past the session's end (its data set-up took 11 min before the trainer's clock
started), so the chain was stopped after the last finished epoch and its best weights are staged here as the chain
would have staged them (float16, the second slice's normalisation and provenance, the manifest beside them), but
only if they validate better than the second slice's (the same validation split); else the second slice stays.
The final validation statistics (``metrics["validation"]``) are not computed here: the per-population benches
measure the staged network instead.

Usage: .venv/bin/python retrain/v4/attempts/stage_apogeenet_slice3.py [RESUME] [CHECKPOINT] [--seconds-file F]
"""
import argparse
import json
import time
from pathlib import Path

import torch

from stellarnn.labels.apogeenet.network import APOGEENetResNet
from stellarnn.labels.cli import write_manifest
from stellarnn.train import file_sha256, read_checkpoint, save_checkpoint

ap = argparse.ArgumentParser()
ap.add_argument("resume", nargs="?", default="retrain/v4/apogeenet.resume.pt")
ap.add_argument("checkpoint", nargs="?", default="retrain/v4/weights/apogeenet/apogeenet.pt")
ap.add_argument("--seconds-file", default="retrain/v4/apogeenet.seconds")
ap.add_argument("--command", default="")
args = ap.parse_args()

state = torch.load(args.resume, weights_only=True, map_location="cpu")
history = state["history"]
previous = read_checkpoint(args.checkpoint)
old_best = float(previous["metrics"]["best_val_loss"])
spent_before = float(Path(args.seconds_file).read_text())
spent = spent_before + float(history["seconds"])
print(f"slice 3: {len(history['val_loss'])} epochs, {history['seconds']:.0f} s, best validation MSE "
      f"{history['best_val']:.6f} at epoch {history['best_epoch']} (slice 2: {old_best:.6f}); "
      f"{spent:.0f} s spent in all")
Path(args.seconds_file).write_text(f"{spent}\n")
if not history["best_val"] < old_best:
    print("the second slice validates better: kept")
    raise SystemExit(0)
hp = previous["hyperparameters"]
model = APOGEENetResNet(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in hp.items()})
model.load_state_dict(state["best_state"], strict=True)
metrics = {k: previous["metrics"].get(k) for k in ("n_train", "n_val", "early_stop_patience", "fresh_noise")}
metrics.update(best_epoch=history["best_epoch"], best_val_loss=history["best_val"], epochs_run=len(history["val_loss"]),
               train_seconds=history["seconds"], stopped_by="session_end", val_loss=history["val_loss"],
               lr=history.get("lr"), validation=None,
               note="staged by hand from the resume file after the last finished epoch "
                    "(retrain/v4/attempts/stage_apogeenet_slice3.py): the slice's last epoch and final evaluation "
                    "would have run past the session's end")
provenance = dict(previous.get("provenance") or {})
provenance.update(init_from=args.checkpoint, init_sha256=file_sha256(args.checkpoint),
                  command=args.command or provenance.get("command", ""), resume_sha256=file_sha256(args.resume),
                  created=time.strftime("%Y-%m-%dT%H:%M:%S"))
save_checkpoint(args.checkpoint, model, "apogeenet", hp, normalisation=previous["normalisation"], metrics=metrics,
                provenance=provenance, half=True)
manifest = write_manifest(args.checkpoint, "apogeenet")
print("staged", args.checkpoint, file_sha256(args.checkpoint), "manifest", manifest,
      json.dumps({k: metrics[k] for k in ("best_epoch", "best_val_loss", "epochs_run", "train_seconds")}))
