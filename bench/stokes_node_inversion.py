"""Benchmark: the node-based Lightweaver inversion next to the stratified CNN on the same held-out profiles.

Issue 21, item 8. Held-out profiles: the chunk files of ``--heldout`` (default
``weights/stokes/regime_heldout``, a regime set with stray light and continuum errors; where it has no
chunk yet, ``weights/stokes/stratified_heldout``). Up to ``--per-regime`` profiles of each of
``--regimes`` are taken in chunk-file order, round-robin over the regimes (so a partial run covers them
all); a set with none of these regimes (the broad ``stratified_heldout``) gives ``--per-regime`` ×
len(``--regimes``) profiles of its own. The chunk files are re-read before every profile, so chunks that
a running builder finishes are used as they appear.

Noise: the CNN bench's 1e-3 I_c (``NOISE`` of bench/stokes_stratified.py) with its seed ``NOISE_SEED``,
but drawn per profile from ``default_rng([NOISE_SEED, set seed, chunk, index])`` so that a profile's
noise does not depend on which chunks exist when the run is (re)started. The CNN is evaluated on exactly
these noisy profiles.

Each profile is inverted alone (:func:`stellarnn.stokes.node_inversion.invert_nodes`, default SIR-style
cycles, ``--workers`` Lightweaver processes for the finite-difference columns) and its result saved to
``--cache`` (default ``~/.cache/stellarnn/node_inversion/<settings hash>/``, one ``.npz`` per profile,
written atomically): the run can be killed and restarted at any time and loses at most the profile in
progress. Every ``--write-every`` profiles and at the end, ``--out`` (bench/results/stokes_node_inversion.json)
is written from all cached profiles of the selection: per regime, the RMSE against the truth at log τ500
= −1 (T, v_LOS, B_LOS) and 0 (T), the fraction of profiles with an unphysical value (B_⊥ < 0 or T
outside 3000–12000 K at any node, the CNN's definition), the fraction converged and the seconds per
profile of the inversion; the same figures of the stratified CNN (``per_regime`` of
bench/stokes_stratified.py on the same profiles) and the CNN's seconds per profile (median of repeats,
``--threads`` torch threads), hence how many times faster the CNN is (target ≥ 1000).

With ``--strong-weights`` the CNN is the routed pair (``--weights`` for weak fields, the strong-field specialist
where it finds |B| > ``--route-threshold`` at log τ500 = −1), the default of ``stellarnn stokes invert --method
stratified``.

Usage: python bench/stokes_node_inversion.py [--per-regime 20] [--max-profiles N] [--workers 1]
       [--out JSON] [--cache DIR] [--heldout DIR] [--weights A.pt [--strong-weights B.pt]]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from stellarnn.stokes.lightweaver_driver import LOG_TAU_NODES, TARGET_NAMES
from stellarnn.stokes.node_inversion import DEFAULT_CYCLES, LightweaverForward, invert_nodes
from stellarnn.stokes.stratified_cnn import (ROUTE_THRESHOLD_GAUSS, TEMPERATURE_BOUNDS_K, RoutedStratifiedInverter,
                                             StratifiedInverter)
from stokes_stratified import NOISE, NOISE_SEED, REGIME_TARGETS, per_regime
from timing import repeat_seconds

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_HELDOUT = ROOT / "weights/stokes/regime_heldout"
FALLBACK_HELDOUT = ROOT / "weights/stokes/stratified_heldout"
CHUNK_NAME = re.compile(r"lw_seed(\d+)_chunk(\d+)_n(\d+)\.npz$")
MAX_ITERATIONS = (10, 15)
TOLERANCE = 1e-3
SIGMA = NOISE


def chunk_files(directory: Path) -> list[Path]:
    return sorted(p for p in Path(directory).glob("lw_seed*_chunk*_n*.npz") if CHUNK_NAME.search(p.name))


def select(directory: Path, regimes: list[str], per_regime_n: int, max_profiles: int | None) -> list[dict]:
    """The profiles to invert: (file, index, regime), round-robin over ``regimes`` in chunk-file order."""
    by_regime: dict[str, list[dict]] = {}
    for path in chunk_files(directory):
        with np.load(path) as f:
            regime = f["regime"].astype(str) if "regime" in f.files else np.full(len(f["stokes"]), "broad")
        for k, r in enumerate(regime):
            by_regime.setdefault(str(r), []).append({"file": path, "index": k, "regime": str(r)})
    wanted = [r for r in regimes if r in by_regime]
    if not wanted:  # a set without regimes: take its own
        wanted = sorted(by_regime)
        per_regime_n = per_regime_n * len(regimes)
    lists = [by_regime[r][:per_regime_n] for r in wanted]
    out = [lst[rank] for rank in range(per_regime_n) for lst in lists if rank < len(lst)]
    return out[:max_profiles] if max_profiles else out


def profile_key(item: dict) -> str:
    return f"{item['file'].stem}_p{item['index']:03d}"


def noisy_profile(item: dict) -> tuple[np.ndarray, np.ndarray, dict]:
    """Stokes with the bench noise (per-profile seed, module docstring), the truth and the chunk's metadata."""
    seed, chunk, _ = (int(g) for g in CHUNK_NAME.search(item["file"].name).groups())
    with np.load(item["file"]) as f:
        stokes = f["stokes"][item["index"]].astype(np.float64)
        truth = f["targets"][item["index"]].astype(np.float64)
        metadata = json.loads(str(f["metadata"])) if "metadata" in f.files else {}
    rng = np.random.default_rng([NOISE_SEED, seed, chunk, item["index"]])
    return stokes + rng.normal(0.0, NOISE, stokes.shape), truth, metadata


def settings() -> dict:
    return {"cycles": [{q: list(getattr(layout, q)) for q in ("temperature_rel", "v_los", "B", "gamma", "vturb")}
                       for layout in DEFAULT_CYCLES],
            "max_iterations": list(MAX_ITERATIONS), "tolerance": TOLERANCE, "sigma": SIGMA, "noise": NOISE,
            "noise_seed": NOISE_SEED}


def default_cache(heldout: Path) -> Path:
    tag = hashlib.sha1(json.dumps({**settings(), "heldout": heldout.name}, sort_keys=True).encode()).hexdigest()[:12]
    return Path.home() / ".cache/stellarnn/node_inversion" / f"{heldout.name}_{tag}"


def invert_one(item: dict, forward: LightweaverForward, cache: Path) -> dict:
    stokes, truth, _ = noisy_profile(item)
    res = invert_nodes(stokes[None], forward, cycles=DEFAULT_CYCLES, sigma=SIGMA, max_iterations=MAX_ITERATIONS,
                       tolerance=TOLERANCE)
    record = {"stokes": stokes, "truth": truth, "targets": res["targets"][0], "params": res["params"][0],
              "parameter_names": np.array(res["parameter_names"]), "chi2": res["chi2"][0],
              "chi2_reduced": res["chi2_reduced"][0], "penalty": res["penalty"][0],
              "iterations": res["iterations"][0], "converged": res["converged"][0],
              "stop_reason": res["stop_reason"][0], "seconds": res["seconds"],
              "lightweaver_calls": res["lightweaver_calls"], "lightweaver_seconds": res["lightweaver_seconds"],
              "regime": item["regime"], "chunk_file": item["file"].name, "index": item["index"],
              "workers": forward.workers}
    tmp = cache / f"{profile_key(item)}.{os.getpid()}.part.npz"
    np.savez(tmp, **record)
    tmp.replace(cache / f"{profile_key(item)}.npz")
    return record


def load_cached(cache: Path, selection: list[dict]) -> list[dict]:
    out = []
    for item in selection:
        path = cache / f"{profile_key(item)}.npz"
        if path.is_file():
            with np.load(path) as f:
                out.append({k: f[k] for k in f.files})
    return out


def unphysical(stratification: np.ndarray) -> np.ndarray:
    """Per profile: any node with B_⊥ < 0 or T outside :data:`TEMPERATURE_BOUNDS_K` ((n, 6, n_nodes) input)."""
    t = stratification[:, TARGET_NAMES.index("temperature")]
    b_perp = stratification[:, TARGET_NAMES.index("B_perp")]
    return ((t < TEMPERATURE_BOUNDS_K[0]) | (t > TEMPERATURE_BOUNDS_K[1]) | (b_perp < 0)).any(1)


def inversion_figures(records: list[dict]) -> dict:
    pred = np.stack([r["targets"] for r in records])
    truth = np.stack([r["truth"] for r in records])
    node = {lt: int(np.argmin(np.abs(LOG_TAU_NODES - lt))) for lt in (-1.0, 0.0)}

    def rmse(name, lt):
        k = TARGET_NAMES.index(name)
        return float(np.sqrt(np.mean((pred[:, k, node[lt]] - truth[:, k, node[lt]]) ** 2)))

    return {"temperature_rmse_K_logtau-1": rmse("temperature", -1.0),
            "temperature_rmse_K_logtau0": rmse("temperature", 0.0),
            "v_los_rmse_km_s_logtau-1": rmse("v_los", -1.0), "B_los_rmse_G_logtau-1": rmse("B_los", -1.0),
            "fraction_unphysical": float(unphysical(pred).mean()),
            "fraction_converged": float(np.mean([bool(r["converged"]) for r in records])),
            "chi2_reduced_median": float(np.median([float(r["chi2_reduced"]) for r in records])),
            "iterations_median": float(np.median([int(r["iterations"]) for r in records])),
            "lightweaver_calls_median": float(np.median([int(r["lightweaver_calls"]) for r in records])),
            "seconds_per_profile_median": float(np.median([float(r["seconds"]) for r in records]))}


def targets_met(entry: dict, regime: str) -> dict:
    b = REGIME_TARGETS["B_los_rmse_G_logtau-1"]
    limits = {**{k: v for k, v in REGIME_TARGETS.items() if not isinstance(v, dict)},
              "B_los_rmse_G_logtau-1": b.get(regime, b["default"])}
    return {k: bool(entry[k] <= v) for k, v in limits.items()}


def write_results(records: list[dict], args, heldout: Path, cache: Path, n_selected: int) -> dict:
    stokes = np.stack([r["stokes"] for r in records]).astype(np.float32)
    truth = np.stack([r["truth"] for r in records])
    regime = np.array([str(r["regime"]) for r in records])
    weights = Path(args.weights)
    strong = Path(args.strong_weights) if args.strong_weights else None
    found = weights.is_file() and (strong is None or strong.is_file())
    routed = (str(weights), str(strong), args.route_threshold) if strong is not None else None
    cnn = per_regime(routed or str(weights), stokes, truth, regime) if found else None
    cnn_seconds = None
    if cnn is not None:
        inverter = (RoutedStratifiedInverter(weights, strong, threshold_gauss=args.route_threshold) if routed
                    else StratifiedInverter(weights))
        observed = torch.from_numpy(stokes)
        cnn_seconds = statistics.median(repeat_seconds(lambda: inverter.predict(observed), args.repeats)) / len(stokes)
    inv_seconds = float(np.median([float(r["seconds"]) for r in records]))
    per_call = float(np.median([float(r["lightweaver_seconds"]) / max(int(r["lightweaver_calls"]), 1)
                                for r in records]))
    _, _, metadata = noisy_profile({"file": heldout / str(records[0]["chunk_file"]), "index": 0})
    out = {"description": __doc__.splitlines()[0], "heldout": str(heldout.relative_to(ROOT)
                                                                  if heldout.is_relative_to(ROOT) else heldout),
           "set_metadata": metadata, "cache": str(cache), "settings": settings(),
           "initialisation": "one start: ME LM inversion (B, gamma, chi, v_LOS) and the continuum via "
                             "Eddington-Barbier/Planck (T); microturbulence 1 km/s, stray light 0.02, c = 1",
           "n_requested_per_regime": args.per_regime, "n_selected": n_selected, "n_inverted": len(records),
           "complete": len(records) >= n_selected, "log_tau_nodes": LOG_TAU_NODES.tolist(),
           "truth_fraction_outside_T_bounds": float(unphysical(truth).mean()),
           "per_regime": {}, "speed": {
               "lightweaver_seconds_per_call_median": per_call,
               "inversion_seconds_per_profile_median": inv_seconds,
               "inversion_workers": int(records[0]["workers"]),
               "cnn_seconds_per_profile_median": cnn_seconds, "cnn_torch_threads": args.threads,
               "cnn_speedup": inv_seconds / cnn_seconds if cnn_seconds else None, "cnn_speedup_target": 1000.0,
               "cnn_speedup_target_met": bool(cnn_seconds and inv_seconds / cnn_seconds >= 1000.0)},
           "cnn_weights": str(weights.relative_to(ROOT) if weights.is_relative_to(ROOT) else weights),
           "cnn_strong_weights": (str(strong.relative_to(ROOT) if strong.is_relative_to(ROOT) else strong)
                                  if strong is not None else None),
           "cnn_route_threshold_gauss": args.route_threshold if strong is not None else None,
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_average": os.getloadavg()},
           "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    for name in sorted(set(regime.tolist())):
        sel = [r for r in records if str(r["regime"]) == name]
        entry = inversion_figures(sel)
        entry["targets_met"] = targets_met(entry, name)
        out["per_regime"][name] = {"n": len(sel), "node_inversion": entry,
                                   "stratified_cnn": cnn.get(name) if cnn else None,
                                   "truth_fraction_outside_T_bounds": float(unphysical(
                                       np.stack([r["truth"] for r in sel])).mean())}
    if cnn is not None:
        out["cnn_constrained"] = cnn["constrained"]
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(out, indent=1))
    tmp.replace(path)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--heldout", default=None,
                    help="chunk directory (default: regime_heldout, else stratified_heldout)")
    ap.add_argument("--regimes", nargs="+", default=["quiet", "plage", "umbra"])
    ap.add_argument("--per-regime", type=int, default=20)
    ap.add_argument("--max-profiles", type=int, default=None, help="cap on the profiles of this run (a smoke test)")
    ap.add_argument("--workers", type=int, default=1, help="Lightweaver processes for the Jacobian columns")
    ap.add_argument("--weights", default=str(ROOT / "weights/stokes/stratified_cnn.pt"))
    ap.add_argument("--strong-weights", default=None, help="with --weights, the routed CNN (the CLI's default: "
                    "--weights weights/stokes/stratified_cnn_field.pt --strong-weights weights/stokes/stratified_cnn_strong.pt)")
    ap.add_argument("--route-threshold", type=float, default=ROUTE_THRESHOLD_GAUSS)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the CNN timing")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--write-every", type=int, default=5)
    ap.add_argument("--cache", default=None)
    ap.add_argument("--out", default=str(ROOT / "bench/results/stokes_node_inversion.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    heldout = Path(args.heldout) if args.heldout else (DEFAULT_HELDOUT if chunk_files(DEFAULT_HELDOUT)
                                                       else FALLBACK_HELDOUT)
    cache = Path(args.cache) if args.cache else default_cache(heldout)
    cache.mkdir(parents=True, exist_ok=True)
    print(f"held-out {heldout}; cache {cache}", flush=True)
    done_now = 0
    with LightweaverForward(workers=args.workers) as forward:
        while True:
            selection = select(heldout, args.regimes, args.per_regime, args.max_profiles)
            pending = [s for s in selection if not (cache / f"{profile_key(s)}.npz").is_file()]
            if not pending:
                break
            item = pending[0]
            rec = invert_one(item, forward, cache)
            done_now += 1
            print(f"{profile_key(item)} {item['regime']}: {rec['seconds']:.0f} s, {rec['lightweaver_calls']} calls, "
                  f"chi2_red {float(rec['chi2_reduced']):.2f}, {rec['stop_reason']}; "
                  f"{len(selection) - len(pending) + 1}/{len(selection)} done", flush=True)
            if done_now % args.write_every == 0:
                write_results(load_cached(cache, selection), args, heldout, cache, len(selection))
    selection = select(heldout, args.regimes, args.per_regime, args.max_profiles)
    records = load_cached(cache, selection)
    if not records:
        raise SystemExit("nothing inverted")
    out = write_results(records, args, heldout, cache, len(selection))
    print(json.dumps({"per_regime": out["per_regime"], "speed": out["speed"]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
