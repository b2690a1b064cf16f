"""Stage APOGEENet's first retrain slice from its resume file: the run was OOM-killed in the final validation
evaluation (evaluate_apogeenet, 20 draws in float64 on ~6,900 spectra) after training had stopped at max_seconds."""
import torch
from stellarnn.labels.apogeenet.network import APOGEENET_OUTPUT_MEAN, APOGEENET_OUTPUT_STD, APOGEENET_SIZES, APOGEENetResNet
from stellarnn.labels.apogeenet.pipeline import LABELS
from stellarnn.train import save_checkpoint, file_sha256
d = torch.load("/tmp/apogeenet_slice1.resume.pt", weights_only=False, map_location="cpu")
hp = dict(APOGEENET_SIZES["medium"])
m = APOGEENetResNet(**hp)
m.load_state_dict(d["best_state"], strict=True)
h = d["history"]
metrics = {"best_epoch": h["best_epoch"], "best_val_loss": h["best_val"], "epochs_run": len(h["val_loss"]),
           "train_seconds": h["seconds"], "stopped_by": "max_seconds", "val_loss": h["val_loss"], "lr": h["lr"],
           "validation": None,
           "note": "staged by hand from the resume file: the process was OOM-killed in the final validation "
                   "evaluation (evaluate_apogeenet) after training stopped at --max-seconds 9378"}
prov = {"training_data": "synthetic grid grids/apogee_like_f0/train, fresh noise every epoch (S/N log-uniform 30-500) + "
        "57053 noise-free emulator spectra with fresh noise (retrain/v4/weights/emulator/payne_apogee.pt, gated "
        "<= 0.3 sigma on grids/apogee_like_f0/test; seed 1000); scripts/retrain_labels_v4.sh first APOGEENet slice",
        "resume_sha256": file_sha256("/tmp/apogeenet_slice1.resume.pt")}
save_checkpoint("retrain/v4/weights/apogeenet/apogeenet.pt", m, "apogeenet",
                {k: (list(v) if isinstance(v, tuple) else v) for k, v in hp.items()},
                normalisation={"output_mean": list(APOGEENET_OUTPUT_MEAN), "output_std": list(APOGEENET_OUTPUT_STD),
                               "input_flux": "continuum_normalised", "label_names": list(LABELS), "brackett_mask": True},
                metrics=metrics, provenance=prov, half=True)
print("staged", h["seconds"], h["best_epoch"], h["best_val"])
