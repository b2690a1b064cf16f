"""Dead ReLU units in AstroNN's dense trunk: how many of dense1's 192 and dense2's 96 units are ever active.

A unit whose pre-activation is <= 0 for every input passes nothing through its ReLU and gets no gradient: it is
dead for good. The spectra are the first ``--per-population`` held-out stars of each population at S/N ``--snr``
(:func:`stellarnn.labels.accuracy_guard.guard_subset`). They go through the pipeline with ``--mc-passes`` MC
dropout passes, and a forward hook on ``dense1`` and ``dense2`` ORs ``pre-activation > 0`` over every row the
layers see. The retrain's AstroNN attempts (``retrain/v4/attempts/README.md``) stopped improving after 1-6 epochs;
this measures whether their trunk had died.

Run: ``.venv/bin/python bench/astronn_dead_units.py --weights NAME=PATH [NAME=PATH ...]``
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from stellarnn.labels.accuracy_guard import guard_subset
from stellarnn.labels.pipeline import get_pipeline

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("dense1", "dense2")


def active_units(pipe, spectra) -> dict:
    """Per dense layer: units ever active (pre-activation > 0) over every row it saw, and the rows."""
    seen: dict = {}

    def record(name, out):
        rows = out.detach().reshape(-1, out.shape[-1])
        on = (rows > 0).any(dim=0)
        seen[name] = (seen[name][0] | on, seen[name][1] + rows.shape[0]) if name in seen else (on, rows.shape[0])

    hooks = [getattr(pipe.model, n).register_forward_hook(lambda m, i, o, n=n: record(n, o)) for n in LAYERS]
    try:
        pipe.process(spectra)
    finally:
        for h in hooks:
            h.remove()
    return {n: {"units": int(seen[n][0].numel()), "ever_active": int(seen[n][0].sum()), "rows_seen": int(seen[n][1])}
            for n in LAYERS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", nargs="+", required=True, help="NAME=PATH of each AstroNN checkpoint")
    ap.add_argument("--test-grid", default=str(REPO / "grids" / "apogee_like_f0" / "test"))
    ap.add_argument("--per-population", type=int, default=20)
    ap.add_argument("--snr", type=float, default=100.0)
    ap.add_argument("--mc-passes", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "astronn_dead_units.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sub = guard_subset(args.test_grid, per_population=args.per_population, snr=args.snr, seed=3)
    results = {}
    for item in args.weights:
        name, path = item.split("=", 1)
        pipe = get_pipeline("astronn", weights=path, ood_emulator=False, mc_passes=args.mc_passes)
        results[name] = {"weights": path, **active_units(pipe, sub["spectra"])}
        print(name, {n: f"{results[name][n]['ever_active']} of {results[name][n]['units']}" for n in LAYERS},
              flush=True)
    Path(args.out).write_text(json.dumps({
        "benchmark": "astronn_dead_units", "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "test_grid": args.test_grid,
        "n_spectra": len(sub["spectra"]), "snr": args.snr, "mc_passes": args.mc_passes, "checkpoints": results},
        indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
