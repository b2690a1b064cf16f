"""Benchmark iNNterpol against linear interpolation on the ATLAS9 grid (issue 3 evaluation protocol).

For each emulator checkpoint: rms / max error per quantity (dex; T also in %) on the three held-out
sets of its training splits, (a) 10 % random models, (b) every other Teff column 4250–7250 K,
(c) the log g = 0 plane, side by side with multilinear interpolation (raw log quantities and SVD
coefficients) over the models the network could see; the SVD truncation floor; how smooth the grid
itself is along Teff (1D linear and cubic interpolation of the held-out models from their own column); the fraction of
monotone T(tau) profiles; then throughput (atmospheres per second of ``Innterpol.atmosphere``: cgs
depth arrays on the 71-point tau scale, with and without the out-of-grid indicator, float32 and the
``precision="bfloat16"`` engine, whose held-out errors are recorded too) of the emulator
and of linear interpolation at batch sizes 1, 1e3 and 1e5, measured in this one run (medians over
repeats).  Also the SVD reconstruction error at the grid points against the number of components.

    python bench/innterpol.py [--weights a.pt b.pt] [--plot-dir DIR] [--out bench/results/innterpol.json]
    python bench/innterpol.py --throughput-only   # re-time only, merged into the existing JSON
    python bench/innterpol.py --audit-only        # the grid audit only (keys ``audit`` and
                                                  # ``synthesis_atmosphere_families``), merged into the JSON
    python bench/innterpol.py --skip-throughput   # accuracy + audit; throughput entries of the JSON kept
    python bench/innterpol.py --device cuda       # GPU throughput only, key ``gpu`` of the JSON (the rest kept)

GPU (``--device cuda`` or ``cuda:N``): ``Innterpol.load(device=...)`` (the batched torch path, chunks of
``--device-chunk-size`` rows) at batch sizes ``--gpu-batches``, numpy in and out (each chunk copied back to the
host) and tensors kept on the GPU, with and without the out-of-grid distance, plus the agreement with the CPU
engine on 1e4 points (max |delta log10|, distances identical or not); written under the key ``gpu`` with the
GPU's name.  Without a CUDA device the key records ``{"present": false, "reason": ...}`` and the script exits 0.

Grid audit (issue 23, :mod:`stellarnn.atmospheres.audit`): per slice of every axis the deck VTURB and the
smoothness against the neighbouring slices, key ``audit``.  The accuracy of each checkpoint is evaluated
twice with the same held-out splits: ``checkpoints.<name>.sets`` on the *consistent* grid (the slices the
audit flags -- [M/H] = 0, VTURB = 0 -- left out of every set and of linear interpolation's models) with
``sets.<name>.ratio_to_linear`` per quantity (T, P, n_e, kappa_Ross) and set (d) ``solar_columns``, and
``checkpoints.<name>.full_grid`` on every model as before.
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

from stellarnn.atmospheres.audit import audit_grid, format_audit, inconsistent_slices
from stellarnn.atmospheres.emulator import DEFAULT_WEIGHTS, Innterpol
from stellarnn.atmospheres.evaluation import SETS, LinearBaseline, error_table, evaluate_checkpoint, time_call
from stellarnn.atmospheres.resample import add_family_axis, atlas9_tau_grid
from stellarnn.atmospheres.svd import reconstruction_error
from stellarnn.atmospheres.training import make_splits
from timing import repeat_seconds

ROOT = Path(__file__).resolve().parents[1]


def random_points_in_complete_cells(baseline: LinearBaseline, n: int, seed: int = 0) -> np.ndarray:
    """Uniform random points inside complete cells of the baseline's grid (no extrapolation needed)."""
    rng = np.random.default_rng(seed)
    interp = baseline.interpolator
    cells = interp._cell_lo[rng.integers(0, len(interp._cell_lo), n)]
    frac = rng.uniform(size=cells.shape)
    lo = np.stack([interp.axes[k][cells[:, k]] for k in range(interp.ndim)], 1)
    hi = np.stack([interp.axes[k][cells[:, k] + 1] for k in range(interp.ndim)], 1)
    return lo + frac * (hi - lo)


def teff_axis_interpolation(grid, seed: int = 0) -> dict:
    """How smooth the grid is along Teff: 1D Lagrange interpolation of each held-out model from its own column.

    For every model of the held-out sets (a) and (b) whose Teff neighbours at node offsets -1, +1 (linear) or
    -3, -1, +1, +3 (cubic) are all models the network may see (same log g and [M/H]), the log profiles are
    interpolated along Teff alone and compared with the model (T error in %).  The figures say how far the
    grid is from a low-order polynomial in Teff at its node spacing; they are a reference, not a bound, for an
    emulator, which also draws on the other axes.
    """
    splits = make_splits(grid, seed=seed)
    known = splits.train | splits.validation
    k_teff = grid.axis_names.index("teff")
    axis = np.asarray(grid.axes["teff"], dtype=float)
    where = {tuple(p): i for i, p in enumerate(grid.params)}
    out = {}
    for name in ("random", "teff_columns"):
        rows = {}
        for label, offsets in (("linear", (-1, 1)), ("cubic", (-3, -1, 1, 3))):
            errors = []
            for i in np.flatnonzero(getattr(splits, name)):
                node = int(np.searchsorted(axis, grid.params[i, k_teff]))
                if min(node + o for o in offsets) < 0 or max(node + o for o in offsets) >= len(axis):
                    continue
                xs = axis[[node + o for o in offsets]]
                idx = []
                for x in xs:
                    q = grid.params[i].copy()
                    q[k_teff] = x
                    j = where.get(tuple(q))
                    if j is None or not known[j]:
                        break
                    idx.append(j)
                if len(idx) < len(offsets):
                    continue
                t = grid.params[i, k_teff]
                weights = [np.prod([(t - xs[b]) / (xs[a] - xs[b]) for b in range(len(xs)) if b != a])
                           for a in range(len(xs))]
                log_t = np.tensordot(np.array(weights), grid.values[idx, 1], 1)
                errors.append(100 * np.abs(10 ** (log_t - grid.values[i, 1]) - 1))
            e = np.array(errors)
            rows[label] = ({"n_models": len(e), "T_rms_percent": float(np.sqrt(np.mean(e ** 2))),
                            "T_max_percent": float(e.max()),
                            "T_median_per_model_rms_percent": float(np.median(np.sqrt(np.mean(e ** 2, axis=1))))}
                           if len(e) else {"n_models": 0})
        rows["n_held_out"] = int(getattr(splits, name).sum())
        out[name] = rows
    return out


def synthesis_atmosphere_families(teff: float = 5800.0, logg: float = 4.4) -> dict:
    """T(tau_Ross = 1) [K] of a solar-type dwarf interpolated from the ATLAS9 grid near solar [M/H]: over every slice
    but [M/H] = 0 (how grids/apogee_like was synthesised) and within family 0 (grids/apogee_like_f0)."""
    from stellarnn.atmospheres.grid import AtmosphereGrid
    from stellarnn.synthesis.grid_builder import GridSpec

    grid = AtmosphereGrid.load_atlas9()
    specs = {"across_families": GridSpec(name="x", n=1, seed=1, atmosphere_m_h_family=None),
             "family_0": GridSpec(name="x", n=1, seed=1)}
    m_h = [-0.3, -0.2, -0.1, 0.0, 0.1, 0.2, 0.3]
    k = int(np.argmin(np.abs(grid.log_tau)))
    out = {"teff": teff, "logg": logg, "m_h": m_h, "log_tau_ross": float(grid.log_tau[k])}
    for name, spec in specs.items():
        atm = grid.without_slices("m_h", spec.atmosphere_slices_left_out())
        out[f"T_tau1_{name}_K"] = [float(atm.interpolate_linear(teff, logg, m).temperature[k]) for m in m_h]
    out["test_grid_flux_difference"] = test_grid_flux_difference()
    return out


def test_grid_flux_difference(across=ROOT / "grids" / "apogee_like" / "test",
                              within=ROOT / "grids" / "apogee_like_f0" / "test") -> dict:
    """What the atmosphere family does to the synthetic spectra: the two held-out grids have the same labels (same
    prior, seed and indices) and differ only in the ATLAS9 interpolation (across both [M/H] families vs within
    family 0).  Per population (:mod:`stellarnn.synthesis.populations`): the median and 90th percentile over stars of
    the per-star rms of the normalised-flux difference on the 7514 kept apStar pixels, in units of sigma at S/N 100
    (1e-2), the scale of the emulator target (0.3 sigma)."""
    from stellarnn.spectra.apogee_grid import kept_pixel_index
    from stellarnn.synthesis.grid_builder import load_grid
    from stellarnn.synthesis.populations import population_of

    if not ((Path(across) / "spec.json").is_file() and (Path(within) / "spec.json").is_file()):
        return {"present": False, "reason": f"{across} or {within} missing"}
    a, b = load_grid(across), load_grid(within)
    if not (np.array_equal(a["index"], b["index"]) and np.array_equal(a["labels"], b["labels"])):
        return {"present": False, "reason": "the two grids do not hold the same labels"}
    keep = kept_pixel_index()
    ok = (np.asarray(a["status"]) == "ok") & (np.asarray(b["status"]) == "ok")
    diff = a["flux"][:, keep].astype(float) - b["flux"][:, keep].astype(float)
    per_star = np.sqrt(np.nanmean(diff ** 2, axis=1)) / 1e-2
    names = list(a["label_names"])
    lab = np.asarray(a["labels"], dtype=float)
    pop = population_of(*(lab[:, names.index(k)] for k in ("teff", "logg", "m_h")))
    out = {"grids": [Path(across).relative_to(ROOT).as_posix(), Path(within).relative_to(ROOT).as_posix()],
           "unit": "per-star rms of the flux difference / 1e-2 (sigma at S/N 100), 7514 kept pixels",
           "by_population": {}}
    for name in dict.fromkeys(pop):
        m = ok & (pop == name)
        if not m.any():
            out["by_population"][str(name)] = {"n": 0}
            continue
        out["by_population"][str(name)] = {"n": int(m.sum()), "median_rms_over_sigma": float(np.median(per_star[m])),
                                           "p90_rms_over_sigma": float(np.percentile(per_star[m], 90))}
    return out


def bfloat16_accuracy(emulator: Innterpol, grid) -> dict:
    """Error table of the ``precision="bfloat16"`` engine on the checkpoint's three held-out sets."""
    seed = emulator.checkpoint.get("provenance", {}).get("splits", {}).get("seed", 0)
    if "family" in emulator.axis_names:
        grid = add_family_axis(grid)
    splits = make_splits(grid, seed=seed)
    out = {"bfloat16_float32_layers": list(emulator.bfloat16_float32_layers), "sets": {}}
    for name in SETS:
        mask = getattr(splits, name)
        p, truth = grid.params[mask], grid.values[mask]
        atm = emulator.atmosphere(**dict(zip(grid.axis_names, p.T)), with_distance=False, precision="bfloat16")
        pred = np.log10(np.stack([atm.rhox, atm.temperature, atm.p_gas, atm.n_e], axis=1))
        out["sets"][name] = error_table(pred, truth)
    return out


def throughput(emulator: Innterpol, grid, repeats: int) -> dict:
    """Atmospheres per second of ``Innterpol.atmosphere`` and of linear interpolation, same run.

    Emulator variants: the full API (numpy float64 depth arrays + the out-of-grid indicator), the
    fast path without the indicator (``with_distance=False``), the same returning float32 arrays, the
    bfloat16 engine without and with the indicator (float32 arrays), and the full API on one thread.
    Linear: multilinear interpolation of the raw log quantities (and of the SVD coefficients, then
    decoded), converted to cgs.  Each callable is warmed up
    before timing; medians over ``repeats`` timings.
    """
    splits = make_splits(grid)
    known = splits.train | splits.validation
    linear_raw = LinearBaseline(grid, known, grid.values)
    coeff = emulator.basis.encode(grid.values)
    linear_svd = LinearBaseline(grid, known, coeff)
    out = {}
    for batch in (1, 1000, 100_000):
        pts = random_points_in_complete_cells(linear_raw, batch, seed=batch)
        teff, logg, m_h = (pts[0, k] if batch == 1 else pts[:, k] for k in range(3))

        def emu():
            return emulator.atmosphere(teff, logg, m_h)

        def emu_fast():
            return emulator.atmosphere(teff, logg, m_h, with_distance=False)

        def emu_fast32():
            return emulator.atmosphere(teff, logg, m_h, with_distance=False, dtype=np.float32)

        def emu_bf16():
            return emulator.atmosphere(teff, logg, m_h, with_distance=False, dtype=np.float32, precision="bfloat16")

        def emu_bf16_distance():  # the fastest call that keeps the out-of-grid distance
            return emulator.atmosphere(teff, logg, m_h, dtype=np.float32, precision="bfloat16")

        def emu_1thread():
            emulator.threads = 1
            try:
                return emulator.atmosphere(teff, logg, m_h)
            finally:
                emulator.threads = None

        def lin_raw():
            v, _ = linear_raw.interpolator(pts)
            return 10.0 ** v

        def lin_svd():
            v, _ = linear_svd.interpolator(pts)
            return 10.0 ** emulator.basis.decode(v.reshape(len(pts), *coeff.shape[1:]))

        fns = {"emulator": emu, "emulator_no_distance": emu_fast, "emulator_no_distance_float32": emu_fast32,
               "emulator_no_distance_bfloat16": emu_bf16, "emulator_bfloat16_float32": emu_bf16_distance,
               "emulator_1thread": emu_1thread, "linear_raw": lin_raw, "linear_svd": lin_svd}
        for fn in fns.values():  # warm-up (first calls build the engine weights and the worker pool)
            fn()
        min_s = 0.3 if batch < 100_000 else 0.0
        reps = repeats if batch < 100_000 else max(3, repeats // 2)
        row = {"load_average": os.getloadavg()}
        secs = {}
        for name, fn in fns.items():
            secs[name] = time_call(fn, reps, min_s)
            row[f"{name}_atm_per_s"] = batch / secs[name]
        for name, t in secs.items():
            row[f"{name}_seconds"] = t
        for name in ("emulator", "emulator_no_distance", "emulator_no_distance_float32",
                     "emulator_no_distance_bfloat16", "emulator_bfloat16_float32"):
            row[f"ratio_{name}_over_linear_raw"] = secs["linear_raw"] / secs[name]
        out[str(batch)] = row
        rate = {name: batch / t for name, t in secs.items()}
        print(f"batch {batch:>6d}: emulator {rate['emulator']:10.3g} /s (no distance "
              f"{rate['emulator_no_distance']:.3g}, float32 {rate['emulator_no_distance_float32']:.3g}, "
              f"bfloat16 {rate['emulator_no_distance_bfloat16']:.3g}, "
              f"bfloat16 with distance {rate['emulator_bfloat16_float32']:.3g}, "
              f"1 thread {rate['emulator_1thread']:.3g}), linear {rate['linear_raw']:10.3g} /s, "
              f"linear-SVD {rate['linear_svd']:10.3g} /s, speed-up vs linear {secs['linear_raw'] / secs['emulator']:6.1f}x")
    return out


def throughput_bound(emulator: Innterpol, repeats: int, cores: int | None = None) -> dict:
    """Upper bound on the CPU engine's atmospheres per second on this machine, from rates measured in this run.

    The engine's work per atmosphere is counted from its weights: multiply-adds of every product (trunk,
    output layer, SVD decoding; those of bfloat16 layers apart), activation evaluations (one per hidden unit
    of each activated layer, SiLU or leaky ReLU) and ``2**x`` evaluations (Q x K profile values).  Rates
    measured on one thread: the GEMM peak (2048 x 2048 x 2048, float32 and bfloat16) and the GEMM at the
    engine's own shape (a chunk of :attr:`Innterpol.chunk_size` rows times a hidden x hidden layer), and
    torch's SiLU, leaky ReLU and exp2 (ns per float32 element, exp alongside for the record), each the fastest
    of its repeats (the machine is shared: a bound takes its best rate, not the median).  The bound on
    ``cores`` cores (default: the CPUs this process may run on) is ``cores / t`` with ``t`` the time per
    atmosphere at those rates: ``gemm_peak_only`` counts the products alone at the peak (activations, 10**x,
    inputs, copies and the out-of-grid distance free) -- no engine built on torch's matrix products (MKL,
    oneDNN) passes it on this machine; ``with_elementwise`` adds the activations and 10**x at torch's measured
    per-element cost.
    """
    cores = int(cores or len(os.sched_getaffinity(0)))
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        g = torch.Generator().manual_seed(0)
        big = torch.randn(2048, 2048, generator=g)
        rows = int(emulator.chunk_size)
        layers, _, _, _, _ = emulator._engine_weights("float32")
        hidden = int(layers[-1][0][0].shape[1])
        h = torch.randn(rows, hidden, generator=g)
        w = torch.randn(hidden, hidden, generator=g) / hidden ** 0.5
        x = torch.randn(rows, 4 * 71, generator=g) * 10.0
        y = torch.empty_like(x)
        with torch.inference_mode():
            def best(fn, inner):  # the fastest of the repeats: a bound wants the machine's best rate
                return min(repeat_seconds(lambda: [fn() for _ in range(inner)], max(repeats, 7))) / inner

            def gflops(fn, macs, inner):
                return 2.0 * macs / best(fn, inner) / 1e9

            rates = {"float32_peak": gflops(lambda: torch.mm(big, big), 2048 ** 3, 1),
                     "bfloat16_peak": gflops(lambda b=big.bfloat16(): torch.mm(b, b), 2048 ** 3, 2),
                     "float32_engine_shape": gflops(lambda: torch.mm(h, w), rows * hidden * hidden, 50),
                     "bfloat16_engine_shape": gflops(lambda a=h.bfloat16(), b=w.bfloat16(): torch.mm(a, b),
                                                     rows * hidden * hidden, 100)}
            ns = {"silu": best(lambda: torch.nn.functional.silu(h), 200) / h.numel() * 1e9,
                  "leaky_relu": best(lambda: torch.nn.functional.leaky_relu(h, 0.2), 200) / h.numel() * 1e9,
                  "exp2": best(lambda: torch.exp2(x, out=y), 200) / x.numel() * 1e9,
                  "exp": best(lambda: torch.exp(x, out=y), 100) / x.numel() * 1e9}
    finally:
        torch.set_num_threads(prev)
    out = {"cores": cores, "chunk_rows": rows, "gemm_gflops_per_s_one_thread": rates,
           "elementwise_ns_per_element": ns, "precisions": {}}
    for precision in ("float32", "bfloat16"):
        layers, output, _, _, _ = emulator._engine_weights(precision)
        macs = {"float32": 0, "bfloat16": 0}
        activations = {"silu": 0, "leaky_relu": 0}
        for (w_l, _), slope in layers:
            macs["bfloat16" if w_l.dtype == torch.bfloat16 else "float32"] += int(w_l.shape[0] * w_l.shape[1])
            if slope is not None:
                activations["silu" if slope == "silu" else "leaky_relu"] += int(w_l.shape[1])
        if output[0] == "split":
            _, w_c, _, comps, _ = output
            macs["float32"] += int(w_c.numel() + comps.numel())
            n_exp = int(comps.shape[0] * comps.shape[2])
        else:
            macs["float32"] += int(output[1].numel())
            n_exp = int(output[1].shape[1])
        t_gemm = 2e-9 * (macs["float32"] / rates["float32_peak"] + macs["bfloat16"] / rates["bfloat16_peak"])
        t_elem = 1e-9 * (sum(n * ns[kind] for kind, n in activations.items()) + n_exp * ns["exp2"])
        out["precisions"][precision] = {
            "multiply_adds_per_atmosphere": macs, "activations_per_atmosphere": activations,
            "exp2_per_atmosphere": n_exp,
            "bound_atm_per_s": {"gemm_peak_only": cores / t_gemm, "with_elementwise": cores / (t_gemm + t_elem)}}
    return out


def print_bound(entry: dict) -> None:
    """One line per precision: the engine's measured rate at batch 1e5 against :func:`throughput_bound`."""
    measured = entry.get("throughput", {}).get("100000", {})
    keys = {"float32": "emulator_atm_per_s", "bfloat16": "emulator_bfloat16_float32_atm_per_s"}
    for precision, row in entry["throughput_bound"]["precisions"].items():
        b = row["bound_atm_per_s"]
        print(f"  {precision}: measured {measured.get(keys[precision], float('nan')):.3g} /s with distance; bound "
              f"{b['with_elementwise']:.3g} /s (products at the GEMM peak + activations + 10**x), "
              f"{b['gemm_peak_only']:.3g} /s (products alone) on {entry['throughput_bound']['cores']} cores")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("" where there is none): timings differ between machines."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    return next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "")


def bfloat16_cpu_flags() -> list[str]:
    """The CPU's bfloat16 matrix/vector flags (amx_*, avx512_bf16) from /proc/cpuinfo: what the bfloat16 engine can use."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return sorted(f for f in set(flags) if f.startswith("amx") or f == "avx512_bf16")


NO_GPU = {"present": False, "reason": "no CUDA device on this machine"}


def gpu_throughput(emulator: Innterpol, batches, repeats: int, seed: int = 0) -> dict:
    """Atmospheres per second of ``emulator`` (any device, the torch path) at each batch size.

    Points uniform over the grid's axis ranges (some nearest a hole: the KD-tree fallback is in the figures).
    ``numpy``: arrays in, numpy out (host copies included); ``tensor``: tensors on the device in and out.
    Device work is synchronised before each clock read.  Medians over ``repeats`` after one warm-up call.
    """
    dev = emulator.device
    lo, hi = emulator.grid_nodes.min(0), emulator.grid_nodes.max(0)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    out = {}
    for batch in batches:
        pts = np.random.default_rng(seed + batch).uniform(lo, hi, (batch, len(lo)))
        cols = [pts[:, k] for k in range(pts.shape[1])]
        tens = [torch.as_tensor(c, dtype=torch.float32, device=dev) for c in cols]
        row = {}
        for kind, args in (("numpy", cols), ("tensor", tens)):
            for with_distance in (True, False):
                def call():
                    emulator.atmosphere(*args, with_distance=with_distance)
                    sync()

                call()
                times = []
                for _ in range(max(1, repeats)):
                    t0 = time.perf_counter()
                    call()
                    times.append(time.perf_counter() - t0)
                t = float(np.median(times))
                key = f"{kind}_{'with' if with_distance else 'no'}_distance"
                row[f"{key}_atm_per_s"], row[f"{key}_seconds"] = batch / t, t
        out[str(batch)] = row
        print(f"batch {batch:>9d} on {dev}: numpy {row['numpy_with_distance_atm_per_s']:.3g} /s with distance, "
              f"tensor {row['tensor_with_distance_atm_per_s']:.3g} /s with distance, "
              f"{row['tensor_no_distance_atm_per_s']:.3g} /s without")
    return out


def device_agreement(emulator: Innterpol, reference: Innterpol, n: int = 10_000, seed: int = 1) -> dict:
    """Max |delta log10| per quantity and whether the distances are identical, ``emulator`` vs ``reference``."""
    lo, hi = reference.grid_nodes.min(0), reference.grid_nodes.max(0)
    pts = np.random.default_rng(seed).uniform(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo), (n, len(lo)))
    a = reference.atmosphere(*pts.T)
    b = emulator.atmosphere(*pts.T)
    names = ("rhox", "temperature", "p_gas", "n_e")
    return {"n_points": n, "max_abs_delta_log10": {k: float(np.max(np.abs(np.log10(getattr(b, k))
                                                                         - np.log10(getattr(a, k))))) for k in names},
            "distance_identical": bool(np.array_equal(a.grid_distance, b.grid_distance)),
            "distance_max_abs_delta": float(np.max(np.abs(a.grid_distance - b.grid_distance)))}


def gpu_section(weights: str, device: str, batches, repeats: int, chunk_size: int) -> dict:
    """The ``gpu`` key: GPU name, throughput and agreement with the CPU engine (or why there is none)."""
    if not torch.cuda.is_available():
        return dict(NO_GPU)
    emulator = Innterpol.load(weights, device=device)
    emulator.device_chunk_size = chunk_size
    dev = emulator.device
    return {"present": True, "device": str(dev), "name": torch.cuda.get_device_name(dev),
            "torch": torch.__version__, "cuda": torch.version.cuda, "checkpoint": Path(weights).stem,
            "device_chunk_size": chunk_size, "repeats": repeats,
            "agreement_with_cpu_engine": device_agreement(emulator, Innterpol.load(weights)),
            "throughput": gpu_throughput(emulator, batches, repeats),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", nargs="*", default=None, help="checkpoints (default: the shipped weights)")
    ap.add_argument("--plot-dir", default=str(Path(__file__).parent / "results" / "innterpol_plots"))
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "innterpol.json"))
    ap.add_argument("--throughput-only", action="store_true",
                    help="time only (skip the held-out accuracy); merge into the existing --out JSON")
    ap.add_argument("--audit-only", action="store_true",
                    help="the grid audit only (key 'audit'); merge into the existing --out JSON")
    ap.add_argument("--skip-throughput", action="store_true",
                    help="accuracy and audit only; keep the throughput entries of the existing --out JSON")
    ap.add_argument("--device", default="cpu",
                    help="cpu (default: the CPU benchmark) or cuda / cuda:N: GPU throughput only, key 'gpu' of --out")
    ap.add_argument("--gpu-batches", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000],
                    help="batch sizes of the GPU timing")
    ap.add_argument("--device-chunk-size", type=int, default=2 ** 20, help="rows per chunk of the GPU path")
    args = ap.parse_args(argv)
    if args.device != "cpu":
        if not args.device.startswith("cuda"):
            ap.error(f"--device must be cpu, cuda or cuda:N, got {args.device!r}")
        out = Path(args.out)
        result = json.loads(out.read_text()) if out.is_file() else {}
        weights = (args.weights or [str(DEFAULT_WEIGHTS)])[0]
        result["gpu"] = gpu_section(weights, args.device, args.gpu_batches, args.repeats, args.device_chunk_size)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1))
        print(f"gpu: {json.dumps(result['gpu'])[:300]}\nwrote {out}")
        return 0
    if args.audit_only:
        out = Path(args.out)
        result = json.loads(out.read_text()) if out.is_file() else {}
        result["audit"] = audit_grid()
        result["synthesis_atmosphere_families"] = synthesis_atmosphere_families()
        print(format_audit(result["audit"]))
        print(f"synthesis_atmosphere_families: {result['synthesis_atmosphere_families']}")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1))
        print(f"wrote {out}")
        return 0
    weights = args.weights or [str(p) for p in sorted(DEFAULT_WEIGHTS.parent.glob("innterpol_atlas9*.pt"))]
    if not weights:
        raise SystemExit(f"no checkpoints found in {DEFAULT_WEIGHTS.parent}")
    grid = atlas9_tau_grid()
    if args.throughput_only:
        return _throughput_only(weights, grid, args)
    audit = audit_grid()
    print(format_audit(audit))
    exclude = inconsistent_slices(audit, "m_h")
    previous = json.loads(Path(args.out).read_text()) if args.skip_throughput and Path(args.out).is_file() else {}
    result = {"audit": audit, "excluded_m_h_slices": exclude,
              "synthesis_atmosphere_families": synthesis_atmosphere_families(),
              "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                          "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                          "bfloat16_cpu_flags": bfloat16_cpu_flags(), "cpu_model": cpu_model(),
                          "load_average_start": os.getloadavg()},
              "grid": {"n_models": len(grid), "notes": grid.notes},
              "svd_reconstruction_vs_components": reconstruction_error(grid.values, 24),
              "teff_axis_interpolation": teff_axis_interpolation(grid),
              "checkpoints": {}}
    for set_name, rows in result["teff_axis_interpolation"].items():
        for label in ("linear", "cubic"):
            r = rows[label]
            if r["n_models"]:
                print(f"grid along Teff, {set_name}, {label} from its own column ({r['n_models']} models): "
                      f"T rms {r['T_rms_percent']:.2f} %, max {r['T_max_percent']:.1f} %")
    for w in weights:
        name = Path(w).stem
        print(f"== {name}")
        from stellarnn.atmospheres.evaluation import format_table

        full = evaluate_checkpoint(w, grid, plot_dir=Path(args.plot_dir) / name)
        root = Path(__file__).resolve().parents[1]
        full["plots"] = [str(Path(q).resolve().relative_to(root)) if Path(q).resolve().is_relative_to(root) else q
                         for q in full.get("plots", [])]
        print("-- full grid")
        print(format_table(full))
        res = evaluate_checkpoint(w, grid, exclude_m_h=exclude)
        res["full_grid"] = {"sets": full.pop("sets")}
        res["plots"] = full.get("plots", [])
        print(f"-- consistent grid (left out: [M/H] = {exclude})")
        print(format_table(res))
        emulator = Innterpol.load(w)
        res["bfloat16_engine"] = bfloat16_accuracy(emulator, grid)
        for set_name, row in res["bfloat16_engine"]["sets"].items():
            t = row["temperature_percent"]
            print(f"  bfloat16 engine, {set_name}: T rms {t['rms']:.3f} %, max {t['max']:.2f} %")
        if args.skip_throughput:
            kept = previous.get("checkpoints", {}).get(name, {}).get("throughput")
            if kept is not None:
                res["throughput"] = kept
                res["throughput_note"] = "kept from the previous run of this script (--skip-throughput)"
            kept = previous.get("checkpoints", {}).get(name, {}).get("throughput_bound")
            if kept is not None:
                res["throughput_bound"] = kept
        else:
            res["throughput"] = throughput(emulator, grid, args.repeats)
            res["throughput_bound"] = throughput_bound(emulator, args.repeats)
            print_bound(res)
        res["checkpoint_metrics"] = emulator.checkpoint.get("metrics", {})
        res["hyperparameters"] = emulator.checkpoint.get("hyperparameters", {})
        res["training_command"] = emulator.checkpoint.get("provenance", {}).get("command")  # how it was made
        result["checkpoints"][name] = res
    result["machine"]["load_average_end"] = os.getloadavg()
    if args.skip_throughput and "throughput_machine" in previous:
        result["throughput_machine"] = previous["throughput_machine"]
    result["created"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return 0


def _throughput_only(weights, grid, args) -> int:
    """Re-time every checkpoint and merge into the existing JSON (accuracy figures kept)."""
    out = Path(args.out)
    result = json.loads(out.read_text()) if out.is_file() else {"checkpoints": {}}
    machine = {"platform": platform.platform(), "cpu_count": os.cpu_count(),
               "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
               "bfloat16_cpu_flags": bfloat16_cpu_flags(), "cpu_model": cpu_model(),
               "load_average_start": os.getloadavg()}
    for w in weights:
        name = Path(w).stem
        print(f"== {name}")
        emulator = Innterpol.load(w)
        entry = result["checkpoints"].setdefault(name, {})
        entry["throughput"] = throughput(emulator, grid, args.repeats)
        entry["throughput_bound"] = throughput_bound(emulator, args.repeats)
        print_bound(entry)
    machine["load_average_end"] = os.getloadavg()
    machine["created"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    result["throughput_machine"] = machine
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
