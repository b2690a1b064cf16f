"""Benchmark: ME-CNN against the multi-start Levenberg-Marquardt ME inversion.

Held-out synthetic Hinode SP profiles (parameters from ``stellarnn.stokes.me_cnn.PRIOR``, a seed
never used in training) with 1e-3 I_c white noise. Both methods invert the same profiles; the
errors of B [G], γ [deg], χ [deg, modulo 180] and v_LOS [km/s] are reported side by side on the
LM subset, the CNN also on the full set. Speeds are medians over repeats, in profiles per second,
and their ratio. Writes bench/results/stokes.json.

Usage: python bench/stokes.py [--n-cnn 20000] [--n-lm 60] [--lm-batches 3] [--threads 2] [--lm-threads 1]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from stellarnn.stokes.lm_inversion import invert_lm
from stellarnn.stokes.me_cnn import MEInverter, sample_parameters
from stellarnn.stokes.milne_eddington import MilneEddington, add_noise

ROOT = Path(__file__).resolve().parents[1]
HELD_OUT_SEED = 987654
NOISE = 1e-3


def errors(pred: dict, truth: np.ndarray, select=slice(None)) -> dict:
    """Median |error|, RMSE and robust σ (1.4826·MAD) of B, γ, χ (mod 180) and v_LOS."""
    out = {}
    for name, k, unit in (("B", 0, "G"), ("gamma", 1, "deg"), ("chi", 2, "deg"), ("v_los", 3, "km/s")):
        d = np.asarray(pred[name])[select] - truth[select, k]
        if name == "chi":
            d = (d + 90.0) % 180.0 - 90.0
        out[name] = {"unit": unit, "median_abs": float(np.median(np.abs(d))), "rmse": float(np.sqrt(np.mean(d * d))),
                     "robust_sigma": float(1.4826 * np.median(np.abs(d - np.median(d)))), "bias": float(np.mean(d))}
    return out


def coverage(pred: dict, truth: np.ndarray) -> dict:
    """Fraction of |error| < predicted 1σ (0.683 for calibrated Gaussian uncertainties)."""
    out = {}
    for name, k in (("B", 0), ("gamma", 1), ("v_los", 3)):
        out[name] = float(np.mean(np.abs(pred[name] - truth[:, k]) < pred[f"e_{name}"]))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=str(ROOT / "weights/stokes/me_cnn.pt"))
    ap.add_argument("--n-cnn", type=int, default=20000)
    ap.add_argument("--n-lm", type=int, default=60)
    ap.add_argument("--lm-batches", type=int, default=3)
    ap.add_argument("--lm-starts", type=int, default=4)
    ap.add_argument("--cnn-repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="torch threads for the CNN")
    ap.add_argument("--lm-threads", type=int, default=1, help="torch threads for LM (small batched linear algebra "
                    "scales badly across threads; the per-core-normalised ratio assumes perfect LM scaling)")
    ap.add_argument("--out", default=str(ROOT / "bench/results/stokes.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()

    me = MilneEddington()
    gen = torch.Generator().manual_seed(HELD_OUT_SEED)
    truth = sample_parameters(args.n_cnn, gen)
    with torch.inference_mode():
        clean = torch.cat([me(truth[i:i + 2000]) for i in range(0, args.n_cnn, 2000)])
    observed = add_noise(clean, NOISE, gen)
    truth_np = truth.numpy()

    inverter = MEInverter(args.weights)
    obs32 = observed.float()
    inverter.invert(obs32[:1000])  # warm-up
    cnn_times = []
    for _ in range(args.cnn_repeats):
        t0 = time.perf_counter()
        cnn = inverter.invert(obs32)
        cnn_times.append(time.perf_counter() - t0)
    cnn_rate = args.n_cnn / statistics.median(cnn_times)
    torch.set_num_threads(1)
    cnn_times_1 = []
    for _ in range(args.cnn_repeats):
        t0 = time.perf_counter()
        inverter.invert(obs32)
        cnn_times_1.append(time.perf_counter() - t0)
    cnn_rate_1 = args.n_cnn / statistics.median(cnn_times_1)

    torch.set_num_threads(args.lm_threads)
    n_lm = args.n_lm
    per_batch = n_lm // args.lm_batches
    lm_parts, lm_rates = [], []
    for b in range(args.lm_batches):
        sl = slice(b * per_batch, (b + 1) * per_batch)
        t0 = time.perf_counter()
        lm_parts.append(invert_lm(observed[sl], me, sigma=NOISE, n_starts=args.lm_starts))
        lm_rates.append(per_batch / (time.perf_counter() - t0))
    n_lm = per_batch * args.lm_batches
    lm = {k: np.concatenate([p[k] for p in lm_parts]) for k in lm_parts[0]}
    lm_rate = statistics.median(lm_rates)
    sub = slice(0, n_lm)
    strong = truth_np[:n_lm, 0] >= 500.0
    cnn_sub = {k: v[:n_lm] for k, v in cnn.items()}

    result = {
        "description": "ME-CNN vs multi-start Levenberg-Marquardt on held-out synthetic Hinode SP ME profiles "
                       "(Fe I 6301.5/6302.5, 30 mA PSF) with 1e-3 Ic noise",
        "held_out_seed": HELD_OUT_SEED, "noise_ic": NOISE, "weights": os.path.relpath(args.weights, ROOT),
        "n_cnn": args.n_cnn, "n_lm": n_lm, "lm_starts": args.lm_starts, "cnn_threads": args.threads,
        "lm_threads": args.lm_threads,
        "errors_same_profiles": {"n": n_lm, "cnn": errors(cnn_sub, truth_np[:n_lm]),
                                 "lm": errors(lm, truth_np[:n_lm])},
        "errors_same_profiles_B_ge_500G": {"n": int(strong.sum()), "cnn": errors(cnn_sub, truth_np[:n_lm], strong),
                                           "lm": errors(lm, truth_np[:n_lm], strong)},
        "errors_cnn_full_set": errors(cnn, truth_np),
        "cnn_uncertainty_coverage_1sigma": coverage(cnn, truth_np),
        "lm_median_chi2_reduced": float(np.median(lm["chi2_reduced"])),
        "lm_fraction_chi2_reduced_below_1.5": float(np.mean(lm["chi2_reduced"] < 1.5)),
        "speed": {
            "cnn_profiles_per_s_median": cnn_rate, "cnn_seconds_per_repeat": cnn_times,
            "cnn_1_thread_profiles_per_s_median": cnn_rate_1, "cnn_1_thread_seconds_per_repeat": cnn_times_1,
            "lm_profiles_per_s_median": lm_rate, "lm_profiles_per_s_per_batch": lm_rates,
            "ratio_cnn_over_lm": cnn_rate / lm_rate,
            "ratio_cnn_over_lm_per_core_normalised": cnn_rate / (lm_rate * args.threads / args.lm_threads),
            "reference_vfisv_design_profiles_per_s_per_core": 530.0,
            "ratio_cnn_over_vfisv_reference_2_cores": cnn_rate / (2 * 530.0),
        },
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                    "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps({"errors_same_profiles": result["errors_same_profiles"], "speed": result["speed"]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
