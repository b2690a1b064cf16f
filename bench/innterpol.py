"""Benchmark iNNterpol against linear interpolation on the ATLAS9 grid (issue 3 evaluation protocol).

For each emulator checkpoint: rms / max error per quantity (dex; T also in %) on the three held-out
sets of its training splits, (a) 10 % random models, (b) every other Teff column 4250–7250 K,
(c) the log g = 0 plane, side by side with multilinear interpolation (raw log quantities and SVD
coefficients) over the models the network could see; the SVD truncation floor; the fraction of
monotone T(tau) profiles; then throughput (atmospheres per second, log10 profiles converted to cgs
values on the 71-point tau scale) of the emulator and of linear interpolation at batch sizes 1, 1e3
and 1e5, measured in this one run (medians over repeats).  Also the SVD reconstruction error at the
grid points against the number of components.

    python bench/innterpol.py [--weights a.pt b.pt] [--plot-dir DIR] [--out bench/results/innterpol.json]
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

from stellarnn.atmospheres.emulator import DEFAULT_WEIGHTS, Innterpol
from stellarnn.atmospheres.evaluation import LinearBaseline, evaluate_checkpoint, time_call
from stellarnn.atmospheres.resample import atlas9_tau_grid
from stellarnn.atmospheres.svd import reconstruction_error
from stellarnn.atmospheres.training import make_splits


def random_points_in_complete_cells(baseline: LinearBaseline, n: int, seed: int = 0) -> np.ndarray:
    """Uniform random points inside complete cells of the baseline's grid (no extrapolation needed)."""
    rng = np.random.default_rng(seed)
    interp = baseline.interpolator
    cells = interp._cell_lo[rng.integers(0, len(interp._cell_lo), n)]
    frac = rng.uniform(size=cells.shape)
    lo = np.stack([interp.axes[k][cells[:, k]] for k in range(interp.ndim)], 1)
    hi = np.stack([interp.axes[k][cells[:, k] + 1] for k in range(interp.ndim)], 1)
    return lo + frac * (hi - lo)


def throughput(emulator: Innterpol, grid, repeats: int) -> dict:
    splits = make_splits(grid)
    known = splits.train | splits.validation
    linear_raw = LinearBaseline(grid, known, grid.values)
    coeff = emulator.basis.encode(grid.values)
    linear_svd = LinearBaseline(grid, known, coeff)
    out = {}
    for batch in (1, 1000, 100_000):
        pts = random_points_in_complete_cells(linear_raw, batch, seed=batch)
        pts_t = torch.as_tensor(pts, dtype=torch.float32)

        def emu():
            with torch.inference_mode():
                return emulator.profiles(pts_t)

        def lin_raw():
            v, _ = linear_raw.interpolator(pts)
            return 10.0 ** v

        def lin_svd():
            v, _ = linear_svd.interpolator(pts)
            return 10.0 ** emulator.basis.decode(v.reshape(len(pts), *coeff.shape[1:]))

        emu(), lin_raw(), lin_svd()  # warm-up
        min_s = 0.3 if batch < 100_000 else 0.0
        reps = repeats if batch < 100_000 else max(3, repeats // 2)
        t_emu = time_call(emu, reps, min_s)
        t_raw = time_call(lin_raw, reps, min_s)
        t_svd = time_call(lin_svd, reps, min_s)
        out[str(batch)] = {"emulator_atm_per_s": batch / t_emu, "linear_raw_atm_per_s": batch / t_raw,
                           "linear_svd_atm_per_s": batch / t_svd,
                           "emulator_seconds": t_emu, "linear_raw_seconds": t_raw, "linear_svd_seconds": t_svd,
                           "ratio_emulator_over_linear_raw": t_raw / t_emu}
        print(f"batch {batch:>6d}: emulator {batch / t_emu:12.0f} /s, linear {batch / t_raw:12.0f} /s, "
              f"linear-SVD {batch / t_svd:12.0f} /s, speed-up vs linear {t_raw / t_emu:6.1f}x")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", nargs="*", default=None, help="checkpoints (default: the shipped weights)")
    ap.add_argument("--plot-dir", default="/tmp/atmo_bench_plots")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "innterpol.json"))
    args = ap.parse_args(argv)
    weights = args.weights or [str(p) for p in sorted(DEFAULT_WEIGHTS.parent.glob("innterpol_atlas9*.pt"))]
    if not weights:
        raise SystemExit(f"no checkpoints found in {DEFAULT_WEIGHTS.parent}")
    grid = atlas9_tau_grid()
    result = {"machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                          "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                          "load_average_start": os.getloadavg()},
              "grid": {"n_models": len(grid), "notes": grid.notes},
              "svd_reconstruction_vs_components": reconstruction_error(grid.values, 24),
              "checkpoints": {}}
    for w in weights:
        name = Path(w).stem
        print(f"== {name}")
        res = evaluate_checkpoint(w, grid, plot_dir=Path(args.plot_dir) / name)
        from stellarnn.atmospheres.evaluation import format_table

        print(format_table(res))
        emulator = Innterpol.load(w)
        res["throughput"] = throughput(emulator, grid, args.repeats)
        res["checkpoint_metrics"] = emulator.checkpoint.get("metrics", {})
        res["hyperparameters"] = emulator.checkpoint.get("hyperparameters", {})
        result["checkpoints"][name] = res
    result["machine"]["load_average_end"] = os.getloadavg()
    result["created"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
