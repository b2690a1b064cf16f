"""How far AstroNN's abundances follow the truth: the slope of predicted against true [X/Fe], per population.

Issue 19's abundance targets (giants C, N, O, Mg, Al, Si, Ca, Mn, Ni <= 0.03 dex at S/N 100) are missed by 2x for
O, Al, Ca and Mn while the Cramér-Rao bound (``bench/results/crlb.json``) is 0.017-0.024 dex.  This bench tells
whether the miss is noise or the network: for each checkpoint and population it predicts the held-out PySME spectra
(``--test-grid``) noise-free (S/N 1e5) and at S/N 100, and the first ``--train-per-population`` stars of each
population of the training grid (``--train-grid``) noise-free, and reports per label

* ``robust_scatter`` of prediction - truth (1.4826 MAD) of [X/H] (Teff, log g, [Fe/H] as they are);
* ``slope``: the least-squares slope of predicted against true [X/Fe] ([X/H] - [Fe/H], each side its own), or of
  the value for Teff, log g and [Fe/H].  1 is a network that follows the label; below 1 it shrinks towards the
  population's mean (at a fixed [Fe/H]), as a posterior mean does where the spectrum holds little information;
* ``shrinkage_share``: the share of the error variance that the shrinkage alone explains,
  var((1 - slope) (x - mean x)) / var(error), x the true [X/Fe].

A slope well below 1 on noise-free spectra, on training stars as on held-out ones, is a network that does not fit
its own training data for that label (regularisation or capacity), not noise.  Run:
``.venv/bin/python bench/label_shrinkage.py [--weights NAME=PATH ...] [--threads 1]`` (a few minutes per checkpoint
on one thread); writes ``bench/results/label_shrinkage.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
NOISE_FREE_SNR = 1e5
MAIN_LABELS = ("teff", "logg", "fe_h")


def label_slopes(values: np.ndarray, truth: np.ndarray, labels: list[str]) -> dict:
    """Per label: robust scatter, slope of predicted against true [X/Fe] (the value for the main labels) and the
    share of the error variance the shrinkage explains (see the module docstring)."""
    from stellarnn.labels.astronn.training import robust_scatter

    fe = labels.index("fe_h")
    out = {}
    for i, name in enumerate(labels):
        ok = np.all(np.isfinite(values[:, [i, fe]]) & np.isfinite(truth[:, [i, fe]]), axis=1)
        if ok.sum() < 5:
            continue
        relative = name not in MAIN_LABELS
        x = truth[ok, i] - (truth[ok, fe] if relative else 0.0)
        y = values[ok, i] - (values[ok, fe] if relative else 0.0)
        slope = float(np.polyfit(x, y, 1)[0]) if np.ptp(x) > 0 else float("nan")
        error = values[ok, i] - truth[ok, i]
        shrink = (1.0 - slope) * (x - x.mean())
        out[name] = {"n": int(ok.sum()), "robust_scatter": float(robust_scatter(error)), "slope": slope,
                     "true_std": float(np.std(x)),
                     "shrinkage_share": float(np.var(shrink) / np.var(error)) if np.var(error) > 0 else float("nan")}
    return out


def bench_checkpoint(weights, test_grid: dict, train_grid: dict | None, train_per_population: int) -> dict:
    from noise_population import observe

    from stellarnn.labels.pipeline import get_pipeline
    from stellarnn.synthesis.grid_builder import grid_rows
    from stellarnn.synthesis.populations import POPULATIONS, population_of

    pipeline = get_pipeline("astronn", weights=weights, quality_checks=False)
    labels = list(pipeline.noise_model.labels)
    result = {"weights": str(weights) if weights else "shipped", "version": pipeline.version, "populations": {}}
    sets = [("test", test_grid, None, (NOISE_FREE_SNR, 100.0))]
    if train_grid is not None:
        sets.append(("train", train_grid, train_per_population, (NOISE_FREE_SNR,)))
    for set_name, grid, limit, snrs in sets:
        lab = np.asarray(grid["labels"])
        pop = population_of(lab[:, 0], lab[:, 1], lab[:, 2])
        for name in POPULATIONS:
            rows = np.flatnonzero(pop == name)[:limit]
            if len(rows) < 5:
                continue
            sub = grid_rows(grid, rows)
            entry = result["populations"].setdefault(name, {})
            for snr in snrs:
                values, _, truth = observe(pipeline, sub, f"{set_name}_{name}", snr, 100, None)[:3]
                key = f"{set_name}_{'noise_free' if snr == NOISE_FREE_SNR else f'snr_{snr:g}'}"
                entry[key] = label_slopes(values, truth, labels)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", nargs="+", default=["shipped="], metavar="NAME=PATH",
                        help="AstroNN checkpoints (PATH empty: the shipped weights)")
    parser.add_argument("--test-grid", default=str(REPO / "grids" / "apogee_like_f0" / "test"))
    parser.add_argument("--train-grid", default=str(REPO / "grids" / "apogee_like_f0" / "train"),
                        help="training grid of the checkpoints ('' to skip)")
    parser.add_argument("--train-per-population", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "label_shrinkage.json"))
    args = parser.parse_args()
    import torch

    from stellarnn import __version__
    from stellarnn.synthesis.grid_builder import load_grid

    torch.set_num_threads(args.threads)
    test_grid = load_grid(args.test_grid)
    train_grid = load_grid(args.train_grid) if args.train_grid else None
    out = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "stellarnn": __version__,
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": args.threads,
                       "load_average_start": list(os.getloadavg())},
           "test_grid": args.test_grid, "train_grid": args.train_grid or None,
           "train_per_population": args.train_per_population, "noise_free_snr": NOISE_FREE_SNR,
           "noise_seed": 100, "checkpoints": {}}
    t0 = time.perf_counter()
    for spec in args.weights:
        name, _, path = spec.partition("=")
        out["checkpoints"][name] = r = bench_checkpoint(path or None, test_grid, train_grid, args.train_per_population)
        giants = r["populations"].get("giants", {})
        for key in ("test_noise_free", "test_snr_100", "train_noise_free"):
            if key in giants:
                print(f"{name} giants {key}: " + " ".join(
                    f"{lab} {v['robust_scatter']:.3g}/s{v['slope']:.2f}" for lab, v in giants[key].items()
                    if lab in ("teff", "logg", "fe_h", "o_h", "mg_h", "al_h", "si_h", "ca_h", "mn_h", "ni_h")))
    out["seconds"] = time.perf_counter() - t0
    out["machine"]["load_average_end"] = list(os.getloadavg())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
