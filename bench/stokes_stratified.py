"""Benchmark: the stratified CNN on held-out Lightweaver profiles, with and without the physics term.

Held-out profiles: the chunk files in ``--heldout`` (built with a seed never used for training,
``stellarnn stokes build-set weights/stokes/stratified_heldout --seed 1``), with 1e-3 I_c white noise
(fixed seed). For every checkpoint given (default: the shipped ``stratified_cnn.pt``, trained without
the physics term, and ``stratified_cnn_weak_field.pt``, trained with it) the Pearson r and RMSE per log τ500 node of T, v_LOS,
B_LOS, B_⊥, sin 2χ and cos 2χ are reported, and the minimum r over log τ500 = −2.5 … 0 for T, v_LOS
and B_LOS against the target r ≥ 0.9 (the seed, Milić & Gafeira 2020-style CNNs, reports ~0.8).
Throughput: profiles per second of :class:`~stellarnn.stokes.stratified_cnn.StratifiedInverter`
(median over repeats at ``--threads``). A plot of r and RMSE against log τ500 is written next to
the JSON, and truth against prediction for three held-out profiles (``*_examples.png``).
Writes bench/results/stokes_stratified.json.

Usage: python bench/stokes_stratified.py [--heldout DIR] [--weights A.pt B.pt] [--threads 2]

``--unphysical`` measures only ``unphysical_outputs`` (issue 21, item 7) for each checkpoint and
merges it into the existing JSON (other keys kept): the fraction of held-out node values with
B_⊥ < 0 or T outside 3000–12000 K, per node and over all, and the fraction of profiles with any.

``--per-regime`` measures only ``per_regime`` (issue 21, items 6 and 7) for the first checkpoint
found among ``--weights`` (and every checkpoint found under ``per_regime_by_checkpoint``) on a held-out set built with regimes (``stellarnn stokes build-set DIR --seed 1
--regimes quiet network plage penumbra umbra --stray-light-max 0.2 --continuum-error 0.01``) and
merges it into ``--out``: for each regime, the number of profiles, the RMSE of T at log τ500 = −1 and
0, of v_LOS and B_LOS at log τ500 = −1 (with the mean B_LOS error and the median |B_LOS| of the truth), the fraction of profiles with an unphysical output, and (when
the checkpoint has the statistics) the fraction flagged out of distribution, next to the issue's targets.
``--routed WEAK STRONG`` adds the entry ``routed``: each profile inverted by WEAK, or by STRONG where WEAK finds
|B| > ``--route-threshold`` at log τ500 = −1 (:class:`~stellarnn.stokes.stratified_cnn.RoutedStratifiedInverter`,
the default of ``stellarnn stokes invert --method stratified``); it is then the headline ``per_regime``.
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

from stellarnn.stokes.lightweaver_driver import LOG_TAU_NODES, TARGET_NAMES, TARGET_UNITS, load_stratified_set
from stellarnn.stokes.stratified_cnn import (ROUTE_THRESHOLD_GAUSS, RoutedStratifiedInverter, StratifiedInverter,
                                             pearson_and_rmse)
from timing import repeat_seconds

ROOT = Path(__file__).resolve().parents[1]
NOISE = 1e-3
NOISE_SEED = 4242
SCORED = ("temperature", "v_los", "B_los")
SCORED_RANGE = (-2.5, 0.0)
TARGET_R = 0.9


def evaluate(weights: Path, stokes: np.ndarray, targets: np.ndarray, repeats: int) -> dict:
    inverter = StratifiedInverter(weights)
    observed = torch.from_numpy(stokes)
    pred = inverter.predict(observed).numpy()
    r, rmse = pearson_and_rmse(pred.astype(np.float64), targets.astype(np.float64))
    in_range = (LOG_TAU_NODES >= SCORED_RANGE[0] - 1e-9) & (LOG_TAU_NODES <= SCORED_RANGE[1] + 1e-9)
    times = repeat_seconds(lambda: inverter.predict(observed), repeats)
    min_r = {name: float(r[TARGET_NAMES.index(name)][in_range].min()) for name in SCORED}
    return {
        "weights": str(weights.relative_to(ROOT) if weights.is_relative_to(ROOT) else weights),
        "physics_weight": inverter.metrics.get("physics_weight"),
        "n_train": inverter.metrics.get("n_train"),
        "pearson_r": {name: r[k].tolist() for k, name in enumerate(TARGET_NAMES)},
        "rmse": {name: rmse[k].tolist() for k, name in enumerate(TARGET_NAMES)},
        "min_r_log_tau_-2.5_to_0": min_r,
        "target_r_met": {name: bool(v >= TARGET_R) for name, v in min_r.items()},
        "profiles_per_second_median": len(stokes) / statistics.median(times),
        "seconds_per_repeat": times,
    }


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(12, 6), sharex=True)
    for col, name in enumerate(SCORED):
        unit = TARGET_UNITS[TARGET_NAMES.index(name)]
        for res in results:
            label = f"physics weight {res['physics_weight']}"
            axes[0, col].plot(LOG_TAU_NODES, res["pearson_r"][name], marker="o", label=label)
            axes[1, col].plot(LOG_TAU_NODES, res["rmse"][name], marker="o", label=label)
        axes[0, col].axhline(TARGET_R, color="k", ls=":", lw=1)
        axes[0, col].axvspan(*SCORED_RANGE, color="0.9", zorder=0)
        axes[0, col].set_title(name)
        axes[0, col].set_ylim(0, 1.02)
        axes[1, col].set_xlabel(r"log $\tau_{500}$")
        axes[1, col].set_ylabel(f"RMSE [{unit}]")
    axes[0, 0].set_ylabel("Pearson r")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Stratified CNN on held-out Lightweaver profiles (1e-3 noise)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_examples(weights: Path, stokes: np.ndarray, targets: np.ndarray, path: Path, n: int = 3) -> None:
    """Truth and prediction of T, v_LOS and B_LOS against log τ500 for the first ``n`` held-out profiles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pred = StratifiedInverter(weights).predict(torch.from_numpy(stokes[:n])).numpy()
    fig, axes = plt.subplots(n, 3, figsize=(12, 2.6 * n), sharex=True, squeeze=False)
    for row in range(n):
        for col, name in enumerate(SCORED):
            k = TARGET_NAMES.index(name)
            ax = axes[row, col]
            ax.plot(LOG_TAU_NODES, targets[row, k], "k-o", ms=3, label="Lightweaver truth")
            ax.plot(LOG_TAU_NODES, pred[row, k], "C1--s", ms=3, label="stratified CNN")
            ax.axvspan(*SCORED_RANGE, color="0.92", zorder=0)
            ax.set_ylabel(f"{name} [{TARGET_UNITS[k]}]")
            if row == n - 1:
                ax.set_xlabel(r"log $\tau_{500}$")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"Held-out profiles (1e-3 noise): {weights.name}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def unphysical_outputs(weights: list[str], stokes: np.ndarray) -> dict:
    """Per checkpoint: fractions of unphysical answers (B_⊥ < 0 or T outside 3000–12000 K)."""
    out = {"definition": "B_perp < 0 or T outside 3000-12000 K (StratifiedInverter 'unphysical' flag)"}
    for w in weights:
        if not Path(w).is_file():
            continue
        inverter = StratifiedInverter(w)
        res = inverter.invert(torch.from_numpy(stokes))
        flag = res["unphysical"] > 0
        out[Path(w).name] = {"constrained": inverter.constrained, "fraction_of_node_values": float(flag.mean()),
                             "fraction_of_profiles_with_any": float(flag.any(1).mean()),
                             "fraction_per_node": flag.mean(0).round(4).tolist(),
                             "fraction_B_perp_negative": float((res["B_perp"] < 0).mean()),
                             "temperature_range_K": [float(res["temperature"].min()),
                                                     float(res["temperature"].max())]}
    return out


#: issue 21 targets per regime: RMSE at log τ500 = −1 (T, v_LOS, B_LOS) and 0 (T)
REGIME_TARGETS = {"temperature_rmse_K_logtau-1": 80.0, "temperature_rmse_K_logtau0": 50.0,
                  "v_los_rmse_km_s_logtau-1": 0.25, "B_los_rmse_G_logtau-1": {"quiet": 30.0, "default": 80.0},
                  "fraction_unphysical": 0.0}


def per_regime(weights, stokes: np.ndarray, targets: np.ndarray, regime: np.ndarray) -> dict:
    """RMSE per regime at log τ500 = −1 and 0, fraction unphysical and flagged OOD (see the module docstring).

    ``weights``: a checkpoint path, or a ``(weak, strong, threshold_gauss)`` triple for the routed inverter
    (:class:`~stellarnn.stokes.stratified_cnn.RoutedStratifiedInverter`; each regime then also gives the fraction of its
    profiles the strong network answered).
    """
    routed = isinstance(weights, tuple)
    inverter = RoutedStratifiedInverter(*weights) if routed else StratifiedInverter(weights)
    res = inverter.invert(torch.from_numpy(stokes))
    ood = inverter.out_of_distribution(torch.from_numpy(stokes))
    node = {lt: int(np.argmin(np.abs(LOG_TAU_NODES - lt))) for lt in (-1.0, 0.0)}

    def rmse(name, lt, sel):
        truth = targets[sel, TARGET_NAMES.index(name), node[lt]]
        return float(np.sqrt(np.mean((res[name][sel, node[lt]] - truth) ** 2)))

    def rel(w):
        return str(Path(w).resolve().relative_to(ROOT) if Path(w).resolve().is_relative_to(ROOT) else w)

    out = {"weights": ({"weak": rel(weights[0]), "strong": rel(weights[1]), "route_threshold_gauss": weights[2]}
                       if routed else rel(weights)),
           "constrained": inverter.constrained, "noise_ic": NOISE, "targets": REGIME_TARGETS,
           "ood_available": ood["available"],
           "ood_threshold": ({"weak": inverter.weak.ood_threshold, "strong": inverter.strong.ood_threshold}
                             if routed and ood["available"] else ood["threshold"])}
    for name in sorted(set(regime.tolist())):
        sel = regime == name
        b_target = REGIME_TARGETS["B_los_rmse_G_logtau-1"]
        entry = {"n": int(sel.sum()),
                 "temperature_rmse_K_logtau-1": rmse("temperature", -1.0, sel),
                 "temperature_rmse_K_logtau0": rmse("temperature", 0.0, sel),
                 "v_los_rmse_km_s_logtau-1": rmse("v_los", -1.0, sel),
                 "B_los_rmse_G_logtau-1": rmse("B_los", -1.0, sel),
                 "B_los_bias_G_logtau-1": float(np.mean(res["B_los"][sel, node[-1.0]]
                                                        - targets[sel, TARGET_NAMES.index("B_los"), node[-1.0]])),
                 "B_los_median_abs_truth_G_logtau-1": float(np.median(np.abs(
                     targets[sel, TARGET_NAMES.index("B_los"), node[-1.0]]))),
                 "fraction_unphysical": float((res["unphysical"][sel] > 0).any(1).mean()),
                 "fraction_ood_flagged": float(ood["flag"][sel].mean()) if ood["available"] else None,
                 **({"fraction_routed_strong": float(res["route"][sel].mean())} if routed else {})}
        limits = {"temperature_rmse_K_logtau-1": REGIME_TARGETS["temperature_rmse_K_logtau-1"],
                  "temperature_rmse_K_logtau0": REGIME_TARGETS["temperature_rmse_K_logtau0"],
                  "v_los_rmse_km_s_logtau-1": REGIME_TARGETS["v_los_rmse_km_s_logtau-1"],
                  "B_los_rmse_G_logtau-1": b_target.get(name, b_target["default"]),
                  "fraction_unphysical": REGIME_TARGETS["fraction_unphysical"]}
        entry["targets_met"] = {k: bool(entry[k] <= v) for k, v in limits.items()}
        out[name] = entry
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--heldout", default=str(ROOT / "weights/stokes/stratified_heldout"))
    ap.add_argument("--weights", nargs="+", default=[str(ROOT / "weights/stokes/stratified_cnn.pt"),
                                                     str(ROOT / "weights/stokes/stratified_cnn_weak_field.pt")])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "bench/results/stokes_stratified.json"))
    ap.add_argument("--unphysical", action="store_true", help="measure only unphysical_outputs and merge it "
                    "into --out")
    ap.add_argument("--per-regime", action="store_true", help="measure only per_regime (a held-out set built "
                    "with --regimes) and merge it into --out")
    ap.add_argument("--routed", nargs=2, metavar=("WEAK", "STRONG"), help="--per-regime: also the routed inverter "
                    "of these two checkpoints (entry 'routed' of per_regime_by_checkpoint)")
    ap.add_argument("--route-threshold", type=float, default=ROUTE_THRESHOLD_GAUSS,
                    help="--routed: |B| at log tau -1 [G] above which the strong network answers")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    data = load_stratified_set(args.heldout)
    rng = np.random.default_rng(NOISE_SEED)
    stokes = (data["stokes"] + rng.normal(0.0, NOISE, data["stokes"].shape)).astype(np.float32)
    if args.per_regime:
        found = [w for w in args.weights if Path(w).is_file()]
        if not found:
            raise SystemExit(f"no stratified-CNN weights found among {args.weights}")
        merged = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
        head = {"heldout": str(args.heldout), "n_heldout": int(len(stokes)), "set_metadata": data["metadata"][0]}
        by_checkpoint = {Path(w).name: {**head, **per_regime(w, stokes, data["targets"], data["regime"])}
                         for w in found}
        if args.routed:
            by_checkpoint["routed"] = {**head, **per_regime((*args.routed, args.route_threshold), stokes,
                                                            data["targets"], data["regime"])}
        merged["per_regime"] = by_checkpoint["routed" if args.routed else Path(found[0]).name]
        merged["per_regime_by_checkpoint"] = by_checkpoint
        Path(args.out).write_text(json.dumps(merged, indent=1))
        regimes = [r for r in ("quiet", "network", "plage", "penumbra", "umbra") if r in merged["per_regime"]]
        print("RMSE T(-1) [K], T(0) [K], v_LOS(-1) [km/s], B_LOS(-1) [G], fraction unphysical")
        for name, res in by_checkpoint.items():
            for r in regimes:
                e = res[r]
                print(f"{name:34s} {r:9s} n={e['n']:4d} " + " ".join(f"{e[k]:8.3g}" for k in (
                    "temperature_rmse_K_logtau-1", "temperature_rmse_K_logtau0", "v_los_rmse_km_s_logtau-1",
                    "B_los_rmse_G_logtau-1", "fraction_unphysical")))
        return 0
    if args.unphysical:
        merged = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
        merged["unphysical_outputs"] = unphysical_outputs(args.weights, stokes)
        Path(args.out).write_text(json.dumps(merged, indent=1))
        print(json.dumps(merged["unphysical_outputs"], indent=1))
        return 0
    results = [evaluate(Path(w), stokes, data["targets"], args.repeats) for w in args.weights if Path(w).is_file()]
    missing = [w for w in args.weights if not Path(w).is_file()]
    if not results:
        raise SystemExit(f"no stratified-CNN weights found among {args.weights}")
    out = {
        "description": __doc__.splitlines()[0],
        "heldout": str(Path(args.heldout).relative_to(ROOT) if Path(args.heldout).is_relative_to(ROOT) else args.heldout),
        "n_heldout": int(len(stokes)), "noise_ic": NOISE, "log_tau_nodes": LOG_TAU_NODES.tolist(),
        "target": f"Pearson r >= {TARGET_R} for {', '.join(SCORED)} over log tau {SCORED_RANGE[0]} ... {SCORED_RANGE[1]}",
        "models": results, "missing_weights": missing,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": args.threads,
                    "torch": torch.__version__, "load_average_start": load_before, "load_average_end": os.getloadavg()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    plot(results, path.with_suffix(".png"))
    examples = path.with_name(path.stem + "_examples.png")
    plot_examples(next(Path(w) for w in args.weights if Path(w).is_file()), stokes, data["targets"], examples)
    for res in results:
        print(f"{res['weights']}: min r over log tau -2.5..0 "
              + ", ".join(f"{k} {v:.3f}" for k, v in res["min_r_log_tau_-2.5_to_0"].items())
              + f"; {res['profiles_per_second_median']:.0f} profiles/s")
    print(f"wrote {path}, {path.with_suffix('.png')} and {examples}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
