"""Benchmark the Payne-style spectrum emulator and the least-squares fitter; writes bench/results/emulator.json.

Measured in one run, on the held-out PySME grid (``grids/apogee/test``: labels drawn with another
seed, never trained on, never emulated):

* emulator accuracy: median, 99th percentile, mean and max of |emulated - PySME| normalised flux
  over all finite pixels (anchor: The Payne, Ting et al. 2019, ~1e-3 median), per-spectrum medians,
  and the same split into cool (< 4500 K) and warm stars; per population
  (:mod:`stellarnn.synthesis.populations`) the per-spectrum rms error over the pipelines' 7514 pixels in
  units of the S/N-100 noise (``by_population.<name>.rms_over_sigma_snr100``, target <= 0.3);
* emulator speed: spectra per second at batch 1 and 1000 (median of ``--repeats``);
* fitter: every held-out spectrum, shifted by a random RV in +-100 km/s and given Gaussian noise at
  S/N 100 (sigma = 1/100 of the normalised flux), fitted for all labels + RV; per label the robust
  scatter (1.4826 MAD of fitted - true), median bias, std of the pulls (fitted - true)/formal error,
  and the fraction pinned at a bound; spectra per second of the batched fitter; the fraction of fits whose
  chi^2 exceeds the chi^2 at the true labels and RV (a fit stopped in a local minimum; target <= 1 %), also
  among the spectra whose true labels lie inside the emulator's label box (a bounded fit cannot reach a truth
  outside it), with each such fit listed (``chi2_above_truth``); per
  population the robust scatter of Teff, log g, [M/H] next to the median Cramér-Rao bound of the same
  population from ``bench/results/crlb.json`` for the same held-out labels (``by_population`` when its
  ``label_set`` is this test grid, else ``by_population_box_test``: the old box grid) when present
  (``fitter.crlb_reference`` says which).

Timings are wall clock on this machine with ``--threads`` torch threads; the load average at start
and end is recorded (other jobs share the 2 cores).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from timing import median_seconds
from stellarnn.synthesis.emulator import emulator_error_by_population, evaluate_emulator, load_emulator
from stellarnn.synthesis.fitter import chi2_at_labels, doppler_shift, fit_spectra
from stellarnn.synthesis.populations import POPULATIONS, population_masks
from stellarnn.synthesis.grid_builder import grid_rows, load_grid

REPO = Path(__file__).resolve().parents[1]


def robust_scatter(x: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(x - np.median(x))))




def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=str(REPO / "weights" / "emulator" / "payne_apogee.pt"))
    ap.add_argument("--test-grid", default=str(REPO / "grids" / "apogee" / "test"))
    ap.add_argument("--snr", type=float, default=100.0)
    ap.add_argument("--n-fit", type=int, default=0, help="fit only the first N held-out spectra (0: all)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "emulator.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()

    model, payload = load_emulator(args.weights)
    data = load_grid(args.test_grid)
    names = data["label_names"]
    acc = evaluate_emulator(model, data)
    cool = data["labels"][:, 0] < 4500
    acc_split = {}
    for tag, sel in (("teff_lt_4500", cool), ("teff_ge_4500", ~cool)):
        if sel.any():
            acc_split[tag] = evaluate_emulator(model, grid_rows(data, sel))

    by_population = emulator_error_by_population(model, data, snr=100.0)

    # emulator speed
    lab1 = torch.as_tensor(data["labels"][:1], dtype=torch.float32)
    lab1000 = torch.as_tensor(np.resize(data["labels"], (1000, data["labels"].shape[1])), dtype=torch.float32)
    with torch.inference_mode():
        t1 = median_seconds(lambda: model(lab1), args.repeats * 20)
        t1000 = median_seconds(lambda: model(lab1000), args.repeats)

    # fitter at S/N
    n = len(data["index"]) if not args.n_fit else min(args.n_fit, len(data["index"]))
    rng = np.random.default_rng(7)
    truth = data["labels"][:n]
    rv_true = rng.uniform(-100, 100, n)
    clean = np.nan_to_num(data["flux"][:n], nan=1.0)
    with torch.no_grad():
        shifted = doppler_shift(torch.as_tensor(clean, dtype=torch.float64), torch.as_tensor(rv_true)).numpy()
    sigma = shifted / args.snr
    flux = shifted + sigma * rng.standard_normal(shifted.shape)
    ivar = np.where(np.isfinite(data["flux"][:n]), 1.0 / sigma ** 2, 0.0)
    t0 = time.perf_counter()
    res = fit_spectra(model, flux, ivar)
    fit_seconds = time.perf_counter() - t0
    per_label = {}
    for j, name in enumerate(names):
        d = res.labels[:, j] - truth[:, j]
        pull = d / np.maximum(res.label_errors[:, j], 1e-12)
        per_label[name] = {"robust_scatter": robust_scatter(d), "median_bias": float(np.median(d)),
                           "pull_std": float(np.std(pull)), "pull_robust_std": robust_scatter(pull),
                           "median_formal_error": float(np.median(res.label_errors[:, j])),
                           "fraction_at_bound": float(res.at_bound[:, j].mean())}
    drv = res.rv - rv_true
    chi2_truth = chi2_at_labels(model, flux, ivar, truth, rv_true)
    local_minimum = res.chi2 > chi2_truth * (1 + 1e-6) + 1e-2
    # a truth outside the emulator's label box (beyond float32 rounding) cannot be reached by a fit bounded to
    # it: its chi^2 "above the truth's" (the emulator extrapolated) is no convergence failure
    lo, hi = (getattr(model, k).numpy().astype(np.float64) for k in ("label_min", "label_max"))
    tol = 1e-6 * (hi - lo)
    outside = (truth < lo - tol) | (truth > hi + tol)
    inside = ~outside.any(axis=1)
    pops = population_masks(truth[:, 0], truth[:, 1], truth[:, 2])
    local_minima = [{"index": int(data["index"][i]),
                     "population": next((p for p in POPULATIONS if pops[p][i]), ""),
                     "chi2": float(res.chi2[i]), "chi2_at_truth": float(chi2_truth[i]),
                     "labels_outside_emulator_box": {names[j]: float(truth[i, j]) for j in np.flatnonzero(outside[i])},
                     "labels_at_bound": [names[j] for j in np.flatnonzero(res.at_bound[i])]}
                    for i in np.flatnonzero(local_minimum)]
    crlb_path = REPO / "bench" / "results" / "crlb.json"
    crlb_all = json.loads(crlb_path.read_text()) if crlb_path.exists() else {}
    # the bounds of this test grid's own labels: crlb.json's by_population is computed on its label_set (the
    # APOGEE-like test grid), by_population_box_test on the old uniform-box test grid
    same = crlb_all.get("label_set") and (REPO / crlb_all["label_set"]).resolve() == Path(args.test_grid).resolve()
    crlb_key = "by_population" if same else "by_population_box_test"
    crlb = crlb_all.get(crlb_key, {})
    masks = population_masks(truth[:, 0], truth[:, 1], truth[:, 2])
    fit_by_population = {}
    for pop in POPULATIONS:
        m = masks[pop]
        entry = {"n": int(m.sum())}
        for j, (name, key) in enumerate((("teff", "teff"), ("logg", "logg"), ("m_h", "fe_h"))):
            if m.sum() >= 3:
                entry[key] = robust_scatter(res.labels[m, j] - truth[m, j])
                bound = crlb.get(pop, {}).get(f"snr_{int(args.snr)}", {}).get(key)
                if bound:
                    entry[f"{key}_over_crlb"] = entry[key] / bound
        fit_by_population[pop] = entry
    result = {
        "benchmark": "emulator", "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "host": platform.node(),
        "threads": args.threads, "load_average_start": load_start, "load_average_end": os.getloadavg(),
        "weights": str(Path(args.weights).relative_to(REPO)) if str(args.weights).startswith(str(REPO)) else args.weights,
        "weights_hyperparameters": payload.get("hyperparameters"),
        "test_grid": str(args.test_grid), "n_test_spectra": int(len(data["index"])),
        "emulator_accuracy_held_out": acc, "emulator_accuracy_by_teff": acc_split,
        "by_population": by_population, "target_rms_over_sigma_snr100": 0.3,
        "target_median_abs_dflux": 1e-3, "meets_target": bool(acc["median_abs_dflux"] <= 1e-3),
        "emulator_spectra_per_second": {"batch_1": 1 / t1, "batch_1000": 1000 / t1000},
        "fitter": {"snr": args.snr, "n_spectra": n, "seconds": fit_seconds, "spectra_per_second": n / fit_seconds,
                   "rv_robust_scatter_kms": robust_scatter(drv), "rv_median_bias_kms": float(np.median(drv)),
                   "median_reduced_chi2": float(np.median(res.chi2 / res.dof)), "per_label": per_label,
                   "fraction_chi2_above_truth": float(local_minimum.mean()), "target_fraction_chi2_above_truth": 0.01,
                   "n_truth_inside_emulator_box": int(inside.sum()),
                   "fraction_chi2_above_truth_inside_box": (float(local_minimum[inside].mean()) if inside.any()
                                                            else None),
                   "chi2_above_truth": local_minima,
                   "by_population": fit_by_population, "crlb_reference": f"crlb.json -> {crlb_key}"},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(json.dumps({"median_abs_dflux": acc["median_abs_dflux"], "p99": acc["p99_abs_dflux"],
                      "fit_spectra_per_second": n / fit_seconds,
                      **{k: per_label[k]["robust_scatter"] for k in names[:4]}}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
