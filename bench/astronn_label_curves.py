"""Validation error per label and epoch of an AstroNN training (a diagnostic of the retrain's recipe).

The retrain's AstroNN attempts (``retrain/v4/attempts/README.md``) reached their lowest validation value-MSE, the
mean over 22 z-scored labels that selects the epoch, after 1-6 epochs. This script trains AstroNN the way the
retrain does, on a smaller pool, for a fixed number of epochs without early stopping. After every epoch it
records each label's validation MSE (z-scored), so that one can see which labels stall, which keep improving
and what a selection metric would choose. The data are the first ``--grid-rows`` PySME spectra of the training
grid and ``--emulated`` emulator spectra from its prior. All are noise-free with fresh noise every epoch (S/N
log-uniform 30-500), and the Brackett cores are masked, as in ``scripts/retrain_labels_v4.sh``.

Run: ``.venv/bin/python bench/astronn_label_curves.py --beta 0.5 --lr 5e-4`` (about 1-2 min per epoch on one
thread at the defaults); writes ``bench/results/astronn_label_curves_<tag>.json``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from stellarnn.labels import cli as labels_cli
from stellarnn.labels.astronn.loss import missing_label_mask
from stellarnn.labels.astronn.network import OUTPUT_LABELS
from stellarnn.labels.astronn.training import train_astronn
from stellarnn.train import TrainConfig, Trainer

REPO = Path(__file__).resolve().parents[1]
SHOWN = ("teff", "logg", "fe_h", "c_h", "mg_h", "p_h", "k_h")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", default=str(REPO / "grids" / "apogee_like_f0" / "train"))
    ap.add_argument("--emulator", default=str(REPO / "retrain" / "v4" / "weights" / "emulator" / "payne_apogee.pt"))
    ap.add_argument("--grid-rows", type=int, default=6000, help="PySME spectra used (the first N of the grid)")
    ap.add_argument("--emulated", type=int, default=8000)
    ap.add_argument("--beta", type=float, default=0.5, help="beta-NLL exponent of the loss")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--grad-clip", type=float, default=None, help="clip the gradient norm (TrainConfig.grad_clip)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tag", default=None, help="output name (default beta<beta>_lr<lr>)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tag = args.tag or f"beta{args.beta:g}_lr{args.lr:g}" + (f"_clip{args.grad_clip:g}" if args.grad_clip else "")
    data_args = argparse.Namespace(grid=[args.grid], fresh_noise=True, snr_range=[30, 500], emulated=args.emulated,
                                   emulator=args.emulator, gate_grid=None, gate_sigma=0.3, seed=0, spectra=None,
                                   labels=None)
    data = labels_cli._training_arrays(data_args)
    pool = data["fresh"]
    n_grid = len(pool["labels"]) - args.emulated  # the grid's spectra come first in the pool
    keep = np.r_[np.arange(min(args.grid_rows, n_grid)), np.arange(n_grid, len(pool["labels"]))]
    fresh = {k: pool[k][keep] for k in ("flux", "continuum", "labels")}

    curves: list[list[float]] = []
    evaluate = Trainer.evaluate

    def evaluate_per_label(self, val_data):  # records each label's MSE, then the trainer's own evaluation
        self.model.eval()
        sq, n = torch.zeros(len(OUTPUT_LABELS)), torch.zeros(len(OUTPUT_LABELS))
        with torch.no_grad():
            for batch in self._loader(val_data, shuffle=False):
                value, _ = self.model(batch[0])
                ok = ~missing_label_mask(batch[1])
                sq += torch.where(ok, (value - torch.where(ok, batch[1], 0.0)) ** 2, 0.0).sum(0)
                n += ok.sum(0)
        curves.append((sq / n.clamp_min(1)).tolist())
        print(f"epoch {len(curves) - 1}: " + " ".join(f"{k}={curves[-1][OUTPUT_LABELS.index(k)]:.4f}" for k in SHOWN),
              flush=True)
        return evaluate(self, val_data)

    Trainer.evaluate = evaluate_per_label
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=0, progress=False,
                         grad_clip=args.grad_clip)
    t0 = time.perf_counter()
    empty = np.empty((0, 8575), np.float32)
    _, metrics = train_astronn(empty, np.empty((0, len(OUTPUT_LABELS))), Path("/tmp") / f"astronn_curves_{tag}.pt",
                               ivar=empty, config=config, loss_beta=args.beta, brackett_mask=True, fresh=fresh,
                               snr_range=(30, 500), eval_passes=2)
    out = REPO / "bench" / "results" / f"astronn_label_curves_{tag}.json"
    out.write_text(json.dumps({
        "benchmark": "astronn_label_curves", "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "args": vars(args),
        "n_grid_spectra": int(min(args.grid_rows, n_grid)), "n_emulated": int(args.emulated),
        "labels": list(OUTPUT_LABELS), "val_mse_z_per_epoch": curves, "seconds": time.perf_counter() - t0,
        "final_validation": metrics["validation"]}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
