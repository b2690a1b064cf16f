"""Evaluation of the emulator against linear interpolation on the held-out sets.

Linear baseline (issue 3, item 5): multilinear interpolation over the grid of the models the
network may see (train + validation), on the raw resampled quantities (log10 on the tau scale)
or on their SVD coefficients (the emulator's basis).  Held-out Teff columns and the edge plane
are removed from the axes, so (b) is interpolated across a double-width cell and (c) is
extrapolated from the nearest complete cell.  The randomly held-out models (a) are holes in the
grid: a query on a hole is interpolated linearly between its two neighbours along the first
axis (teff, then logg, then m_h) on which both exist, else extrapolated from the nearest complete
cell.  Errors are in dex for every quantity, and in % for T (``100 |10^dlogT - 1|``).

Per physical quantity (issue 23): T, P_gas, n_e and the Rosseland opacity kappa_Ross in % (rms and
max over models and depths).  kappa_Ross is not emulated: it is derived from the depth scale of each
profile, ``kappa = d tau / d RHOX = (tau / RHOX) d log tau / d log RHOX`` (finite differences,
:func:`numpy.gradient`), the same way for the truth and every prediction.  ``ratio_to_linear`` is the
emulator's rms in % divided by linear interpolation's (raw log quantities), per quantity.

Set (d) ``solar_columns``: the models of the Teff columns (b) at [M/H] within +-0.1 of solar -- held
out by the same protocol, reported on their own because solar metallicity is what most users ask for.
``exclude_m_h`` removes whole [M/H] slices (those the grid audit, :mod:`stellarnn.atmospheres.audit`,
flags as another family, e.g. VTURB = 0 at [M/H] = 0) from every set *and* from the models the linear
baseline may use, without changing which models the splits hold out.
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import torch

from .linear import MultilinearInterpolator
from .resample import QUANTITIES, TauSampledGrid

SETS = ("random", "teff_columns", "edge")
#: the sets of :func:`evaluate_checkpoint`: the protocol's three and (d)
EVALUATION_SETS = SETS + ("solar_columns",)
#: half-width [dex] of set (d) around [M/H] = 0
SOLAR_HALF_WIDTH_DEX = 0.1
#: physical quantities compared in % and their source (log quantity index, or "kappa" for the derived opacity)
PHYSICAL = {"T": 1, "P": 2, "n_e": 3, "kappa_Ross": "kappa"}


class LinearBaseline:
    """Multilinear interpolation of per-model features over the nodes in ``known``.

    Parameters
    ----------
    grid : TauSampledGrid
    known : bool (n_models,)
        Models the baseline may use.
    features : (n_models, ...)
        What to interpolate (log profiles or SVD coefficients).

    A grid with the ATLAS9 ``family`` axis (:func:`stellarnn.atmospheres.resample.add_family_axis`) is interpolated
    within each point's family over that family's models (no cell ever has both families at one [M/H]).
    """

    def __init__(self, grid: TauSampledGrid, known: np.ndarray, features: np.ndarray):
        self.family_axis = grid.axis_names.index("family") if "family" in grid.axis_names else None
        if self.family_axis is not None:  # one baseline per ATLAS9 [M/H] family: never across the two
            k = self.family_axis
            axes = {n: a for n, a in grid.axes.items() if n != "family"}
            fam = grid.params[:, k]
            self.by_family = {}
            for f in np.unique(fam[known]):
                sel = fam == f
                sub = TauSampledGrid(axes, np.delete(grid.node_index[sel], k, axis=1), grid.values[sel], grid.log_tau)
                self.by_family[float(f)] = LinearBaseline(sub, known[sel], features[sel])
            self.feature_shape = features.shape[1:]
            return
        params = grid.params[known]
        self.feature_shape = features.shape[1:]
        self.axes = [np.unique(params[:, k]) for k in range(params.shape[1])]
        shape = tuple(len(a) for a in self.axes)
        idx = tuple(np.searchsorted(a, params[:, k]) for k, a in enumerate(self.axes))
        cube = np.full(shape + (int(np.prod(self.feature_shape)),), np.nan)
        present = np.zeros(shape, dtype=bool)
        cube[idx] = features[known].reshape(int(known.sum()), -1)
        present[idx] = True
        self.cube, self.present = cube, present
        self.interpolator = MultilinearInterpolator(self.axes, cube, present)

    def _per_family(self, points: np.ndarray, method: str, out: np.ndarray) -> np.ndarray:
        """Fill ``out`` row by row with ``method`` of the family baseline each point belongs to."""
        fam = points[:, self.family_axis]
        for f, baseline in self.by_family.items():
            sel = fam == f
            if sel.any():
                out[sel] = getattr(baseline, method)(np.delete(points[sel], self.family_axis, axis=1))
        return out

    def in_complete_cell(self, points: np.ndarray) -> np.ndarray:
        """Whether each point lies in a grid cell whose corners are all models the baseline may use ("away from
        holes": multilinear interpolation needs no fallback there); within the point's family for a family grid."""
        points = np.atleast_2d(np.asarray(points, dtype=float))
        if self.family_axis is not None:
            return self._per_family(points, "in_complete_cell", np.zeros(len(points), dtype=bool))
        _, info = self.interpolator(points, fallback="nearest_cell")
        return ~np.asarray(info.used_fallback, dtype=bool)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        points = np.atleast_2d(np.asarray(points, dtype=float))
        if self.family_axis is not None:
            return self._per_family(points, "__call__", np.full((len(points),) + self.feature_shape, np.nan))
        out, info = self.interpolator(points, fallback="nearest_cell")
        todo = info.used_fallback.copy()
        for k, axis in enumerate(self.axes):  # holes: neighbours along one axis
            if not todo.any():
                break
            on_node = np.ones(len(points), dtype=bool)
            idx = np.zeros(points.shape, dtype=int)
            for j, a in enumerate(self.axes):
                pos = np.clip(np.searchsorted(a, points[:, j]), 0, len(a) - 1)
                on_node &= a[pos] == points[:, j]
                idx[:, j] = pos
            lo, hi = idx.copy(), idx.copy()
            lo[:, k] -= 1
            hi[:, k] += 1
            valid = todo & on_node & (lo[:, k] >= 0) & (hi[:, k] < len(axis))
            lo[:, k] = np.clip(lo[:, k], 0, len(axis) - 1)
            hi[:, k] = np.clip(hi[:, k], 0, len(axis) - 1)
            valid &= self.present[tuple(lo.T)] & self.present[tuple(hi.T)]
            if valid.any():
                x0, x1 = axis[lo[valid, k]], axis[hi[valid, k]]
                w = ((points[valid, k] - x0) / (x1 - x0))[:, None]
                out_flat = out.reshape(len(points), -1)
                out_flat[valid] = (1 - w) * self.cube[tuple(lo[valid].T)] + w * self.cube[tuple(hi[valid].T)]
                out = out_flat.reshape(out.shape)
                todo &= ~valid
        return out.reshape((len(points),) + self.feature_shape)


def error_table(pred: np.ndarray, truth: np.ndarray) -> dict:
    """rms and max ``|error|`` per quantity (dex), and T in % , over models and depths."""
    err = pred - truth
    out = {}
    for i, name in enumerate(QUANTITIES):
        e = err[:, i]
        out[name] = {"rms_dex": float(np.sqrt(np.mean(e ** 2))), "max_dex": float(np.max(np.abs(e)))}
    t_pct = 100 * np.abs(10.0 ** err[:, QUANTITIES.index("log_temperature")] - 1)
    out["temperature_percent"] = {"rms": float(np.sqrt(np.mean(t_pct ** 2))), "max": float(np.max(t_pct))}
    return out


def log_kappa_ross(log_profiles: np.ndarray, log_tau: np.ndarray) -> np.ndarray:
    """log10 kappa_Ross [cm^2 g^-1] of profiles on a tau scale: ``log10(tau / RHOX * dlog tau / dlog RHOX)``.

    NaN where RHOX does not increase with depth (central differences).

    Parameters
    ----------
    log_profiles : (n, 4, K) log10 RHOX, T, P_gas, n_e (:data:`QUANTITIES`)
    log_tau : (K,)
    """
    log_rhox = log_profiles[:, 0]
    d_rhox = np.gradient(log_rhox, axis=-1)
    d_tau = np.gradient(np.broadcast_to(log_tau, log_rhox.shape), axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = np.where(d_rhox > 0, d_tau / d_rhox, np.nan)  # RHOX not increasing: no positive opacity
        return log_tau[None, :] - log_rhox + np.log10(slope)


def percent_table(pred: np.ndarray, truth: np.ndarray, log_tau: np.ndarray) -> dict:
    """rms and max ``|error|`` in % of T, P_gas, n_e and kappa_Ross (:data:`PHYSICAL`) over models and depths.

    kappa_Ross: over the points where the prediction's RHOX increases with tau (elsewhere the derived
    opacity is not positive; their number is ``n_nonpositive``), with the median ``|error|`` as well.
    ``median_model_rms``: the median over models of each model's rms over depth (robust to the few
    models a method gets very wrong, e.g. holes linear interpolation must extrapolate far).
    """
    out = {}
    for name, src in PHYSICAL.items():
        if src == "kappa":
            d = log_kappa_ross(pred, log_tau) - log_kappa_ross(truth, log_tau)
        else:
            d = pred[:, src] - truth[:, src]
        pct = 100 * np.abs(10.0 ** d - 1)
        per_model = _rms_over_depth(pct)
        out[name] = {"rms": float(np.sqrt(np.nanmean(pct ** 2))), "max": float(np.nanmax(pct)),
                     "median_model_rms": float(np.nanmedian(per_model))}
        if src == "kappa":  # a predicted RHOX that does not increase with tau gives kappa <= 0: not a number here
            out[name]["n_nonpositive"] = int(np.isnan(d).sum())
            out[name]["median"] = float(np.nanmedian(pct))
    return out


def monotone_fraction(log_t: np.ndarray, log_tau: np.ndarray, deeper_than: float = -4.0) -> float:
    """Fraction of profiles whose T rises monotonically with depth below ``deeper_than`` (log tau)."""
    sel = log_tau >= deeper_than
    return float(np.mean((np.diff(log_t[:, sel], axis=1) > 0).all(axis=1)))


def evaluate_checkpoint(path=None, grid: TauSampledGrid | None = None, plot_dir=None,
                        exclude_m_h=()) -> dict:
    """Emulator vs linear interpolation (raw and SVD) on the held-out sets of its training splits.

    Parameters
    ----------
    path : checkpoint (default: the shipped weights)
    grid : TauSampledGrid, optional (default: the ATLAS9 grid)
    plot_dir : folder for the PNGs, or None
    exclude_m_h : sequence of float
        [M/H] slices left out of every set and of the linear baseline's models (the splits are made on
        the whole grid first, so the protocol is unchanged for the rest).

    Returns
    -------
    dict: ``sets.<name>`` for (a) ``random``, (b) ``teff_columns``, (c) ``edge``, (d) ``solar_columns`` with
    ``emulator``/``linear_raw``/``linear_svd``/``svd_reconstruction`` tables (dex), ``percent`` (T, P, n_e,
    kappa_Ross in % for the emulator and linear_raw) and ``ratio_to_linear`` (emulator rms / linear rms).
    On the ATLAS9 grid linear interpolation stays within each model's [M/H] family (the consistent grid:
    :func:`stellarnn.atmospheres.audit.m_h_families`), whatever the emulator's inputs; ``percent`` also holds
    ``linear_across_families``, multilinear interpolation over every slice, for reference.  Sets (b) and (d) also
    give ``by_teff_column``: T, P, n_e rms % per held-out Teff column and pooled without the coolest one, also for
    cubic-spline and PCHIP interpolation along Teff and the per-model best of all methods; every set
    gives ``away_from_holes``: the max and rms T error % over its models inside complete cells of training models,
    ``trimmed_1_percent`` (each method's rms without its own worst 1 % of models, and the ratio) and ``worst_models``
    (the models with the largest emulator error in P, with both methods' per-model errors).
    """
    from .emulator import Innterpol
    from .resample import add_family_axis, atlas9_tau_grid
    from .svd import SVDBasis
    from .training import make_splits

    emulator = Innterpol.load(path)
    grid = grid or atlas9_tau_grid()
    across = None
    if "m_h" in grid.axis_names and "family" not in grid.axis_names and _atlas9_m_h_nodes(grid):
        across = grid  # the ATLAS9 grid: linear interpolation within each [M/H] family is the consistent baseline
        grid = add_family_axis(grid)
    emulator_columns = [grid.axis_names.index(k) for k in emulator.axis_names]
    prov = emulator.checkpoint.get("provenance", {})
    seed = prov.get("splits", {}).get("seed", 0)
    splits = make_splits(grid, seed=seed)
    excluded = np.zeros(len(grid), dtype=bool)
    if "m_h" in grid.axis_names:
        for value in exclude_m_h:
            excluded |= np.isclose(grid.params[:, grid.axis_names.index("m_h")], float(value))
    known = (splits.train | splits.validation) & ~excluded
    basis = SVDBasis(emulator.basis.mean, emulator.basis.components)
    linear_raw = LinearBaseline(grid, known, grid.values)
    linear_svd = LinearBaseline(grid, known, basis.encode(grid.values))
    linear_across = LinearBaseline(across, known, across.values) if across is not None else None
    result = {"checkpoint": str(path or "shipped"), "n_components": basis.n_components,
              "splits": splits.description, "excluded_m_h": [float(v) for v in exclude_m_h],
              "n_excluded_models": int(excluded.sum()), "sets": {}}
    masks = {name: getattr(splits, name) for name in SETS}
    if "m_h" in grid.axis_names:
        solar = np.abs(grid.params[:, grid.axis_names.index("m_h")]) <= SOLAR_HALF_WIDTH_DEX + 1e-9
        masks["solar_columns"] = splits.teff_columns & solar
    predictions = {}
    for name, mask in masks.items():
        mask = mask & ~excluded
        if not mask.any():
            result["sets"][name] = {"n_models": 0}
            continue
        p, truth = grid.params[mask], grid.values[mask]
        with torch.inference_mode():
            emu = emulator.log_profiles(torch.as_tensor(p[:, emulator_columns], dtype=torch.float32)).double().numpy()
        lin = linear_raw(p)
        lin_svd = basis.decode(linear_svd(p))
        recon = basis.decode(basis.encode(truth))
        predictions[name] = (p, truth, emu, lin)
        pct = {"emulator": percent_table(emu, truth, grid.log_tau), "linear_raw": percent_table(lin, truth, grid.log_tau)}
        if linear_across is not None:
            pct["linear_across_families"] = percent_table(linear_across(across.params[mask]), truth, grid.log_tau)
        result["sets"][name] = {
            "n_models": int(mask.sum()),
            "m_h_values": sorted({float(v) for v in p[:, grid.axis_names.index("m_h")]}) if "m_h" in grid.axis_names else [],
            "percent": pct,
            "ratio_to_linear": {q: pct["emulator"][q]["rms"] / pct["linear_raw"][q]["rms"] for q in PHYSICAL},
            "ratio_to_linear_median_model": {q: pct["emulator"][q]["median_model_rms"]
                                             / pct["linear_raw"][q]["median_model_rms"] for q in PHYSICAL},
            "emulator": error_table(emu, truth), "linear_raw": error_table(lin, truth),
            "linear_svd": error_table(lin_svd, truth), "svd_reconstruction": error_table(recon, truth),
            "grid_distance_median": float(np.median(emulator.grid_distance(p[:, emulator_columns]))),
            "T_monotone_fraction_below_logtau_-4": {
                "truth": monotone_fraction(truth[:, 1], grid.log_tau), "emulator": monotone_fraction(emu[:, 1], grid.log_tau),
                "linear_raw": monotone_fraction(lin[:, 1], grid.log_tau)}}
        away = linear_raw.in_complete_cell(p)
        t_pct = 100.0 * np.abs(10.0 ** (emu[:, 1] - truth[:, 1]) - 1.0)
        result["sets"][name]["away_from_holes"] = {
            "definition": "held-out models inside a cell of the training lattice whose corners are all training models "
                          "(of their family), so that multilinear interpolation needs no fallback; none in the random "
                          "and edge sets, whose models are missing corners themselves or lie below the training log g",
            "n_models": int(away.sum()), "T_max_percent": float(t_pct[away].max()) if away.any() else None,
            "T_rms_percent": float(np.sqrt(np.mean(t_pct[away] ** 2))) if away.any() else None}
        result["sets"][name]["trimmed_1_percent"] = _trimmed_ratio(emu, lin, truth)
        result["sets"][name]["worst_models"] = _worst_models(p, grid.axis_names, emu, lin, truth)
        if "teff" in grid.axis_names and name in ("teff_columns", "solar_columns"):
            smooth = {f"teff_{kind}": teff_line_interpolation(grid, known, p, kind) for kind in ("spline", "pchip")}
            result["sets"][name]["by_teff_column"] = _by_teff_column(p[:, grid.axis_names.index("teff")], emu, lin,
                                                                     truth, grid.log_tau, smooth)
    if plot_dir is not None and all(name in predictions for name in SETS):
        result["plots"] = _plots(predictions, grid.log_tau, Path(plot_dir))
        if "teff" in grid.axis_names and "logg" in grid.axis_names and "m_h" in grid.axis_names:
            from ..figures import save_figure

            worst = result["sets"]["teff_columns"]["worst_models"][0]["params"]  # the line of the worst (b) model
            fig = plot_teff_line(grid, known, emulator, worst["logg"], worst["m_h"], worst.get("family", 0.0),
                                 linear=linear_raw)
            result["plots"].append(str(save_figure(fig, Path(plot_dir) / "innterpol_teff_line.png", dpi=100)))
    return result


def _rms_over_depth(pct: np.ndarray) -> np.ndarray:
    """Per-model rms over depth (last axis) of a % error array, NaN layers skipped."""
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a model with no finite layer gives NaN
        return np.sqrt(np.nanmean(pct ** 2, axis=-1))


def _per_model_rms_percent(pred: np.ndarray, truth: np.ndarray) -> dict:
    """Per-model rms over depth of the % error of T, P, n_e: ``{name: (n,) array}`` (as in :func:`percent_table`)."""
    return {name: _rms_over_depth(100 * np.abs(10.0 ** (pred[:, PHYSICAL[name]] - truth[:, PHYSICAL[name]]) - 1))
            for name in ("T", "P", "n_e")}


def _trimmed_ratio(emu: np.ndarray, lin: np.ndarray, truth: np.ndarray, trim: float = 1.0) -> dict:
    """rms % of T, P, n_e of each method over its models after dropping *its own* worst ``trim`` % of models (by
    that quantity's per-model rms), and the emulator / linear ratio: how much of a set's rms a few models carry,
    without choosing the models by one method's errors only."""
    e, li = _per_model_rms_percent(emu, truth), _per_model_rms_percent(lin, truth)
    out = {"definition": f"per method, rms over the models left after removing its own worst {trim:g} % (per-model "
                         "rms over depth) of the set", "emulator": {}, "linear_raw": {}, "ratio_to_linear": {}}
    for name in e:
        for method, per in (("emulator", e[name]), ("linear_raw", li[name])):
            keep = per <= np.nanpercentile(per, 100.0 - trim)
            out[method][name] = float(np.sqrt(np.nanmean(per[keep] ** 2)))
        out["ratio_to_linear"][name] = out["emulator"][name] / out["linear_raw"][name]
    return out


def _worst_models(params: np.ndarray, axis_names, emu: np.ndarray, lin: np.ndarray, truth: np.ndarray,
                  n: int = 8) -> list[dict]:
    """The ``n`` models with the largest emulator rms % in P (where the set's rms is most concentrated), with the
    per-model rms % of T, P, n_e of the emulator and of linear interpolation."""
    e, li = _per_model_rms_percent(emu, truth), _per_model_rms_percent(lin, truth)
    order = np.argsort(-np.nan_to_num(e["P"], nan=-1.0))[:n]
    return [{"params": {k: float(v) for k, v in zip(axis_names, params[j])},
             "emulator_rms_percent": {q: float(e[q][j]) for q in e},
             "linear_raw_rms_percent": {q: float(li[q][j]) for q in li}} for j in order]


def teff_line_interpolation(grid: TauSampledGrid, known: np.ndarray, points: np.ndarray, kind: str = "spline") -> np.ndarray:
    """Log profiles at ``points`` interpolated along Teff only, through the ``known`` models of each point's Teff line.

    A Teff line is the set of models that share every other axis value (log g, [M/H] and, on a family grid, the
    ATLAS9 family).  ``kind``: ``"spline"`` (:class:`scipy.interpolate.CubicSpline`, not-a-knot: the smoothest
    interpolant through the line's nodes) or ``"pchip"`` (:class:`scipy.interpolate.PchipInterpolator`: piecewise
    cubic that keeps the nodes' monotonicity, never overshooting a node where the line turns).  Both use only the
    models a baseline may see, like :class:`LinearBaseline`; a line with fewer than 3 known models gives NaN.

    Returns
    -------
    (n, Q, K) array of log quantities (NaN where the line is too short or a layer is missing).
    """
    from scipy.interpolate import CubicSpline, PchipInterpolator

    if kind not in ("spline", "pchip"):
        raise ValueError(f"kind must be 'spline' or 'pchip', got {kind!r}")
    points = np.atleast_2d(np.asarray(points, dtype=float))
    t = grid.axis_names.index("teff")
    others = [k for k in range(len(grid.axis_names)) if k != t]
    out = np.full((len(points),) + grid.values.shape[1:], np.nan)
    params = grid.params
    keys = {tuple(row) for row in points[:, others]}
    for key in keys:
        on_line = known & np.all(params[:, others] == np.asarray(key)[None, :], axis=1)
        rows = np.all(points[:, others] == np.asarray(key)[None, :], axis=1)
        if on_line.sum() < 3:
            continue
        order = np.argsort(params[on_line, t])
        x = params[on_line, t][order]
        y = grid.values[on_line][order].reshape(len(x), -1)
        finite = np.isfinite(y).all(axis=0)  # a layer missing from any node of the line stays NaN (scipy refuses NaN)
        if not finite.any():
            continue
        fit = (CubicSpline if kind == "spline" else PchipInterpolator)(x, y[:, finite], axis=0)
        flat = np.full((int(rows.sum()), y.shape[1]), np.nan)
        flat[:, finite] = fit(points[rows, t])
        out[rows] = flat.reshape((int(rows.sum()),) + grid.values.shape[1:])
    return out


def _by_teff_column(teff: np.ndarray, emu: np.ndarray, lin: np.ndarray, truth: np.ndarray, log_tau: np.ndarray,
                    smooth: dict | None = None) -> dict:
    """rms % of T, P, n_e (emulator, linear) per held-out Teff column, pooled over all columns but the coolest, and
    over all (``all``).

    ``smooth``: further interpolants along Teff (name -> (n, Q, K) log profiles, :func:`teff_line_interpolation`),
    each reported per column too, with ``best_of_all``: per model and quantity the smallest rms over the emulator,
    linear interpolation and these (an oracle that picks, model by model, whichever came closest).  Where even that
    oracle stays far above a target, the column's models are not determined by their Teff neighbours.
    """
    out = {}
    columns = np.unique(teff)
    groups = [(f"{c:g}", teff == c) for c in columns]
    if len(columns) > 1:
        groups.append((f"without_{columns[0]:g}", teff != columns[0]))
        groups.append(("all", np.ones(teff.shape, dtype=bool)))
    methods = {"emulator": emu, "linear_raw": lin, **(smooth or {})}
    per_model = {m: _per_model_rms_percent(v, truth) for m, v in methods.items()} if smooth else None
    for key, sel in groups:
        e, li = percent_table(emu[sel], truth[sel], log_tau), percent_table(lin[sel], truth[sel], log_tau)
        out[key] = {"n_models": int(sel.sum()),
                    **{q: {"emulator": e[q]["rms"], "linear_raw": li[q]["rms"], "ratio_to_linear": e[q]["rms"] / li[q]["rms"]}
                       for q in ("T", "P", "n_e")}}
        if smooth:
            for q in ("T", "P", "n_e"):
                for m in smooth:
                    out[key][q][m] = float(np.sqrt(np.nanmean(per_model[m][q][sel] ** 2)))
                best = np.nanmin(np.stack([per_model[m][q][sel] for m in methods]), axis=0)
                out[key][q]["best_of_all"] = float(np.sqrt(np.nanmean(best ** 2)))
                # rms over models of per-model rms = rms over models and depths (equal layer counts): comparable
                out[key][q]["best_of_all_ratio_to_linear"] = out[key][q]["best_of_all"] / float(
                    np.sqrt(np.nanmean(per_model["linear_raw"][q][sel] ** 2)))
    return out


def _atlas9_m_h_nodes(grid: TauSampledGrid) -> bool:
    """Whether the grid's [M/H] axis is the ATLAS9 file's [Fe/H] axis (so its families apply); a grid of its own
    whose few [M/H] values happen to be ATLAS9 nodes is not the ATLAS9 grid."""
    from .grid import atlas9_m_h_families

    axis = np.asarray(grid.axes["m_h"], dtype=float)
    if axis.size != 19:  # the file's axis length: no need to open it for other grids
        return False
    feh, _ = atlas9_m_h_families()
    return bool(np.allclose(axis, feh))


def _plots(predictions: dict, log_tau: np.ndarray, folder: Path) -> list[str]:
    """Write the two figures below into ``folder``; returns their paths."""
    from ..figures import save_figure

    return [str(save_figure(plot_edge_temperatures(predictions, log_tau), folder / "innterpol_edge_T.png", dpi=100)),
            str(save_figure(plot_temperature_error_vs_depth(predictions, log_tau),
                            folder / "innterpol_T_error_vs_depth.png", dpi=100))]


def plot_teff_line(grid: TauSampledGrid, known: np.ndarray, emulator, logg: float, m_h: float, family: float = 0.0,
                   teff_range=(3500.0, 5500.0), depths=(("log_p_gas", -6.0), ("log_temperature", -6.0),
                                                         ("log_n_e", 0.5)), fig=None, linear: "LinearBaseline | None" = None):
    """One Teff line of the grid (fixed log g, [M/H] and, where the grid has them, ATLAS9 family) at a few depths: the
    models the interpolants may use, the held-out ones, and linear, cubic-spline, PCHIP and emulator predictions.

    Shows where a held-out column cannot be recovered from its Teff neighbours (e.g. a kink between two nodes).

    Parameters
    ----------
    grid : TauSampledGrid
    known : bool (n_models,)
        Models the interpolants may use (train + validation).
    emulator : Innterpol
    logg, m_h : float
        The line (grid node values).
    family : float
        The ATLAS9 [M/H] family of the line (grids with a ``family`` axis only).
    teff_range : (float, float)
    depths : sequence of (quantity name of ``QUANTITIES``, log tau)
        One panel each, at the layer nearest that log tau.
    fig : matplotlib.figure.Figure or None
    linear : LinearBaseline, optional
        Linear interpolation over ``known`` on the raw log profiles, if the caller has built it already.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from ..figures import new_figure

    names = grid.axis_names
    t_axis = names.index("teff")
    line = np.isclose(grid.params[:, names.index("logg")], logg) & np.isclose(grid.params[:, names.index("m_h")], m_h)
    if "family" in names:
        line &= grid.params[:, names.index("family")] == family
    t_nodes = grid.params[line, t_axis]
    inside = (t_nodes >= teff_range[0]) & (t_nodes <= teff_range[1])
    if not line.any() or not inside.any():
        raise ValueError(f"no model of the grid on the line log g {logg:g}, [M/H] {m_h:+g} in {teff_range}")
    teff = np.linspace(teff_range[0], teff_range[1], 161)
    pts = np.repeat(grid.params[line][:1], len(teff), axis=0)
    pts[:, t_axis] = teff
    curves = {"linear": (linear or LinearBaseline(grid, known, grid.values))(pts),
              "cubic spline": teff_line_interpolation(grid, known, pts, "spline"),
              "PCHIP": teff_line_interpolation(grid, known, pts, "pchip")}
    cols = [names.index(k) for k in emulator.axis_names]
    with torch.inference_mode():
        curves["iNNterpol"] = emulator.log_profiles(torch.as_tensor(pts[:, cols], dtype=torch.float32)).double().numpy()
    fig, axes = new_figure(fig, nrows=1, ncols=len(depths), figsize=(4.5 * len(depths), 4), squeeze=False)
    styles = {"linear": "C3:", "cubic spline": "C2-.", "PCHIP": "C1--", "iNNterpol": "C0-"}
    rows = np.flatnonzero(line)
    for ax, (quantity, lt) in zip(axes.flat, depths):
        q, k = QUANTITIES.index(quantity), int(np.argmin(np.abs(grid.log_tau - lt)))
        for name, v in curves.items():
            ax.plot(teff, v[:, q, k], styles[name], label=name)
        used, held = rows[known[rows]], rows[~known[rows]]
        ax.plot(grid.params[used, t_axis], grid.values[used, q, k], "ko", label="models used")
        ax.plot(grid.params[held, t_axis], grid.values[held, q, k], "ks", mfc="none", ms=8, label="held out")
        on = rows[(grid.params[rows, t_axis] >= teff_range[0]) & (grid.params[rows, t_axis] <= teff_range[1])]
        lo, hi = np.nanmin(grid.values[on, q, k]), np.nanmax(grid.values[on, q, k])
        ax.set_ylim(lo - 0.25 * (hi - lo), hi + 0.25 * (hi - lo))  # the models, not a curve's excursion, set the scale
        ax.set_xlim(*teff_range)
        ax.set_xlabel("Teff [K]")
        ax.set_ylabel(f"{quantity} at log tau = {grid.log_tau[k]:.2f}")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(f"Teff line log g {logg:g}, [M/H] {m_h:+g}: held-out columns against their neighbours")
    return fig


def plot_edge_temperatures(predictions: dict, log_tau: np.ndarray, fig=None):
    """T(tau) of six held-out edge models (set c): ATLAS9, iNNterpol and linear interpolation.

    Parameters
    ----------
    predictions : dict
        ``{set name: (parameters, truth, emulator, linear)}`` as built by :func:`evaluate_checkpoint`
        (log profiles, T in column 1).
    log_tau : numpy.ndarray
    fig : matplotlib.figure.Figure or None
        An empty figure to draw into; ``None`` makes a new one.

    Returns
    -------
    matplotlib.figure.Figure
        Not closed; write it with :func:`stellarnn.figures.save_figure`.
    """
    from ..figures import new_figure

    p, truth, emu, lin = predictions["edge"]
    pick = np.linspace(0, len(p) - 1, min(6, len(p))).astype(int)
    fig, axes = new_figure(fig, nrows=2, ncols=3, figsize=(12, 7), sharex=True)
    for ax, i in zip(axes.flat, pick):
        ax.plot(log_tau, 10 ** truth[i, 1], "k-", label="ATLAS9")
        ax.plot(log_tau, 10 ** emu[i, 1], "C0--", label="iNNterpol")
        ax.plot(log_tau, 10 ** lin[i, 1], "C3:", label="linear (extrapolated)")
        ax.set_title(f"{p[i, 0]:.0f} K, log g {p[i, 1]:g}, [M/H] {p[i, 2]:+g}", fontsize=9)
        ax.set_ylabel("T [K]")
    for ax in axes[1]:
        ax.set_xlabel(r"log $\tau_{Ross}$")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("held-out edge set (c): T(tau)")
    return fig


def plot_temperature_error_vs_depth(predictions: dict, log_tau: np.ndarray, fig=None):
    """rms and max ``|ΔT|`` (%) against depth per held-out set, iNNterpol and linear interpolation.

    Parameters and return value as for :func:`plot_edge_temperatures` (one panel per set of :data:`SETS`).
    """
    from ..figures import new_figure

    fig, axes = new_figure(fig, nrows=1, ncols=3, figsize=(13, 4), sharey=True)
    for ax, name in zip(axes, SETS):
        p, truth, emu, lin = predictions[name]
        for arr, lab, c in ((emu, "iNNterpol", "C0"), (lin, "linear", "C3")):
            err = 100 * np.abs(10 ** (arr[:, 1] - truth[:, 1]) - 1)
            ax.plot(log_tau, np.sqrt((err ** 2).mean(0)), c, label=f"{lab} rms")
            ax.plot(log_tau, err.max(0), c, ls=":", label=f"{lab} max")
        ax.set_yscale("log")
        ax.set_title(name)
        ax.set_xlabel(r"log $\tau_{Ross}$")
    axes[0].set_ylabel("|ΔT| [%]")
    axes[0].legend(fontsize=8)
    return fig


def format_table(result: dict) -> str:
    """The error table as text (rms / max; dex, T also in %)."""
    lines = [f"iNNterpol ({result['n_components']} SVD components) vs linear interpolation; rms / max"]
    head = f"{'set':13s} {'method':12s} " + " ".join(f"{q:>17s}" for q in QUANTITIES) + f" {'T [%]':>15s}"
    lines.append(head)
    for name, res in result["sets"].items():
        if not res.get("n_models"):
            continue
        for method in ("emulator", "linear_raw", "linear_svd", "svd_reconstruction"):
            t = res[method]
            cells = " ".join(f"{t[q]['rms_dex']:8.4f}/{t[q]['max_dex']:8.4f}" for q in QUANTITIES)
            tp = t["temperature_percent"]
            lines.append(f"{name:13s} {method:12s} {cells} {tp['rms']:7.3f}/{tp['max']:7.3f}")
    lines.append("rms in % (emulator / linear) and ratio_to_linear per quantity"
                 + (f"; excluded [M/H] slices {result['excluded_m_h']}" if result.get("excluded_m_h") else ""))
    for name, res in result["sets"].items():
        if not res.get("n_models"):
            lines.append(f"{name:13s} no models")
            continue
        cells = "  ".join(f"{q} {res['percent']['emulator'][q]['rms']:.3f}/{res['percent']['linear_raw'][q]['rms']:.3f}"
                          f" ({res['ratio_to_linear'][q]:.2f}x)" for q in PHYSICAL)
        lines.append(f"{name:13s} n={res['n_models']:4d}  {cells}")
        med = "  ".join(f"{q} {res['ratio_to_linear_median_model'][q]:.2f}x" for q in PHYSICAL)
        lines.append(f"{'':13s} median per-model rms, ratio to linear: {med}")
    return "\n".join(lines)


def time_call(fn, repeats: int = 5, min_seconds: float = 0.2) -> float:
    """Median wall time of ``fn()`` over ``repeats`` timings (each looping until ``min_seconds``)."""
    times = []
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            dt = time.perf_counter() - t0
            if dt >= min_seconds:
                break
        times.append(dt / n)
    return float(np.median(times))
