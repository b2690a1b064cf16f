"""Label-network checkpoints on a fixed held-out subset and on the same number of training stars, per population.

A quick comparison of trained-but-not-shipped checkpoints (e.g. the retrain's attempts,
``retrain/v4/attempts/README.md``). It uses the first ``--per-population`` stars of each population
(:mod:`stellarnn.synthesis.populations`) of the held-out grid and of the training grid, observed at S/N
``--snr`` (:func:`stellarnn.labels.accuracy_guard.guard_subset`). Each checkpoint's robust scatter of Teff, log
g and [Fe/H] per population goes to JSON. A training-grid scatter far below the held-out one means the network
learned its training stars. The pipeline's OOD emulator is off and the MC passes are few: this compares
checkpoints, it is not the accuracy benchmark (``bench/labels.py``).

Run: ``.venv/bin/python bench/label_attempts.py --weights NAME=PATH [NAME=PATH ...] --pipeline astronn``
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from stellarnn.labels.accuracy_guard import guard_subset, population_scatter
from stellarnn.labels.pipeline import get_pipeline

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", nargs="+", required=True, help="NAME=PATH of each checkpoint")
    ap.add_argument("--pipeline", default="astronn", choices=("astronn", "apogeenet"))
    ap.add_argument("--test-grid", default=str(REPO / "grids" / "apogee_like_f0" / "test"))
    ap.add_argument("--train-grid", default=str(REPO / "grids" / "apogee_like_f0" / "train"))
    ap.add_argument("--per-population", type=int, default=30)
    ap.add_argument("--snr", type=float, default=100.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "label_attempts.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    subsets = {"held_out": guard_subset(args.test_grid, per_population=args.per_population, snr=args.snr, seed=3),
               "training_stars": guard_subset(args.train_grid, per_population=args.per_population, snr=args.snr,
                                              seed=3)}
    draws = {"mc_passes": 20} if args.pipeline == "astronn" else {"n_draws": 5}
    results = {}
    for item in args.weights:
        name, path = item.split("=", 1)
        pipe = get_pipeline(args.pipeline, weights=path, ood_emulator=False, **draws)
        results[name] = {"weights": path, **{k: population_scatter(pipe, sub) for k, sub in subsets.items()}}
        for pop, entry in results[name]["held_out"].items():
            own = results[name]["training_stars"][pop]
            print(f"{name} {pop:18s} held-out {entry['teff']:.0f} K / {entry['logg']:.3f} / {entry['fe_h']:.3f}   "
                  f"training stars {own['teff']:.0f} K / {own['logg']:.3f} / {own['fe_h']:.3f}", flush=True)
    Path(args.out).write_text(json.dumps({
        "benchmark": "label_attempts", "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "pipeline": args.pipeline,
        "snr": args.snr, "per_population": args.per_population, "test_grid": args.test_grid,
        "train_grid": args.train_grid, "measure": "robust scatter (1.4826 MAD) of Teff [K], log g, [Fe/H] = [M/H]",
        "checkpoints": results}, indent=1, default=float) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
