"""Which APOGEENet configuration is the largest that trains to convergence and meets the throughput target on 2 cores.

Issue "APOGEENet and AstroNN at the information bound", item 1: retrain APOGEENet "at the largest configuration of
its architecture that trains to convergence on 2 cores".  The architecture (BOSSNet residual CNN,
:mod:`stellarnn.labels.apogeenet.network`) is fixed; its widths are hyper-parameters.  For each configuration in
:data:`CONFIGS` (the shipped ``small``, the published ``full`` and widths between them) this script measures, in
one run on this machine:

* ``train_spectra_per_s``: training throughput -- one Adam step on a batch of 32 spectra (train-mode forward,
  mean squared error, backward, update), median over repeats, ``--threads`` threads;
* ``pipeline_spectra_per_s``: the survey pipeline (``get_pipeline("apogeenet", n_draws=20)``: preprocessing, 20
  noise draws per spectrum, flags) on apStar-like spectra, the issue's throughput target being >= 20 spectra/s;
* ``epoch_hours`` for ``--n-train`` spectra per epoch (default: the retrain's 90 % of 12,000 PySME spectra plus
  20,000 emulated label sets, the most scripts/retrain_labels_v4.sh can use) and ``hours_for_epochs`` for
  ``--epochs`` epochs (default 40: the small network's early stopping ended at 30-60 epochs of fresh noise).

The choice (key ``choice``): the largest configuration (by parameters) whose pipeline keeps the throughput target
with ``--margin`` to spare (the out-of-distribution measure costs ~15 %: ``labels.json`` -> ``ood.throughput``),
whose ``--epochs`` epochs fit in ``--budget-hours`` on these cores and whose float16 checkpoint (``weights_mb``)
fits ``--max-weights-mb`` (the repository keeps every shipped version and the retrain's snapshots).

    python bench/apogeenet_sizes.py [--threads 2] [--out bench/results/apogeenet_sizes.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from labels import test_batch  # noqa: E402  (bench/labels.py: apStar-like spectra with fresh noise)
from timing import median_seconds  # noqa: E402

from stellarnn.labels.apogeenet.network import (APOGEENET_FULL, APOGEENET_MEDIUM, APOGEENET_SMALL,  # noqa: E402
                                                APOGEENetResNet, count_parameters)
from stellarnn.labels.pipeline import get_pipeline  # noqa: E402
from stellarnn.train import save_checkpoint  # noqa: E402

#: configurations timed, smallest first: the shipped one, widths between, the published one
CONFIGS = {
    "small": APOGEENET_SMALL,
    "small_pool256_head512x4": dict(APOGEENET_SMALL, pool_length=256, head_width=512, n_head_layers=4),
    "medium": APOGEENET_MEDIUM,
    "small_pool1024_head1024x6": dict(APOGEENET_SMALL, pool_length=1024, head_width=1024, n_head_layers=6),
    "blocks_4_8_8_16": dict(APOGEENET_SMALL, block_channels=(4, 8, 8, 16), pool_length=128, head_width=256),
    "blocks_4_8_16_32": dict(APOGEENET_SMALL, block_channels=(4, 8, 16, 32), pool_length=256, head_width=512,
                             n_head_layers=4),
    "blocks_8_16_32_64_pool256": dict(APOGEENET_FULL, pool_length=256, head_width=512, n_head_layers=4),
    "full": APOGEENET_FULL,
}


def train_step_seconds(config: dict, repeats: int, batch: int = 32) -> float:
    """Median seconds of one Adam step on ``batch`` random spectra (train mode)."""
    torch.manual_seed(0)
    model = APOGEENetResNet(**config).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(batch, 8575), torch.randn(batch, 3)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()

    step()
    return median_seconds(step, repeats)


def pipeline_seconds(config: dict, spectra, tmp: Path, name: str, repeats: int) -> tuple[float, float]:
    """Median seconds of the 20-draw pipeline over ``spectra`` (random weights: the cost does not depend on them)
    and the size (MB) of the float16 checkpoint it loaded (the shipped weights' format)."""
    torch.manual_seed(0)
    hp = {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items()}
    path = save_checkpoint(tmp / f"{name}.pt", APOGEENetResNet(**config), "apogeenet", hp, half=True)
    p = get_pipeline("apogeenet", weights=path, n_draws=20)
    p.process(spectra[:2])
    return median_seconds(lambda: p.process(spectra), repeats), Path(path).stat().st_size / 1e6


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--n-spectra", type=int, default=32, help="spectra per pipeline timing")
    ap.add_argument("--n-train", type=int, default=int(0.9 * 12000) + 20000, help="training spectra per epoch")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--budget-hours", type=float, default=8.0,
                    help="wall time the retrain may give APOGEENet on these cores (resumable across sessions)")
    ap.add_argument("--target", type=float, default=20.0, help="pipeline spectra/s (issue target, 20 draws)")
    ap.add_argument("--margin", type=float, default=1.25, help="pipeline throughput needed: target x margin")
    ap.add_argument("--max-weights-mb", type=float, default=12.0,
                    help="float16 checkpoint size allowed (the repository's 400 MB holds the grids, every shipped "
                         "network and the retrain's per-session snapshots: ~25 MB are left for APOGEENet's)")
    ap.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "apogeenet_sizes.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    spectra = test_batch(args.n_spectra)
    result = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": args.threads,
                          "torch": torch.__version__, "load_average_start": os.getloadavg()},
              "settings": {k: getattr(args, k) for k in ("n_train", "epochs", "budget_hours", "target", "margin",
                                                         "max_weights_mb", "n_spectra", "repeats")},
              "configs": {}}
    with tempfile.TemporaryDirectory(prefix="apogeenet_sizes") as tmp:
        for name in args.configs:
            cfg = CONFIGS[name]
            t_train = train_step_seconds(cfg, args.repeats)
            reps = args.repeats if name != "full" else 2
            t_pipe, weights_mb = pipeline_seconds(cfg, spectra, Path(tmp), name, reps)
            train_rate = 32 / t_train
            epoch_h = args.n_train / train_rate / 3600
            row = {"config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
                   "parameters": count_parameters(APOGEENetResNet(**cfg)),
                   "train_spectra_per_s": train_rate, "pipeline_spectra_per_s": args.n_spectra / t_pipe,
                   "epoch_hours": epoch_h, "hours_for_epochs": args.epochs * epoch_h, "weights_mb": weights_mb}
            row["meets_throughput"] = row["pipeline_spectra_per_s"] >= args.target * args.margin
            row["fits_budget"] = row["hours_for_epochs"] <= args.budget_hours
            row["fits_repository"] = weights_mb <= args.max_weights_mb
            result["configs"][name] = row
            print(f"{name:>26s}: {row['parameters']:>10,d} parameters ({weights_mb:5.1f} MB), train "
                  f"{train_rate:6.1f} spectra/s ({epoch_h:5.2f} h/epoch, {row['hours_for_epochs']:5.1f} h for {args.epochs}), pipeline "
                  f"{row['pipeline_spectra_per_s']:6.1f} spectra/s (20 draws)", flush=True)
    ok = [(r["parameters"], n) for n, r in result["configs"].items()
          if r["meets_throughput"] and r["fits_budget"] and r["fits_repository"]]
    result["choice"] = max(ok)[1] if ok else None
    result["machine"]["load_average_end"] = os.getloadavg()
    result["created"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"choice: {result['choice']}\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
