"""Audit of a model-atmosphere grid: the deck parameters of every slice and how smooth each slice is.

Before an emulator is blamed for missing a grid, the grid must be one family of models.  For every
slice of every axis (all models at one value of Teff, of log g or of [M/H]) this module reports

* the deck's own parameters that the grid file stores per model.  The ATLAS9 netCDF file
  (``teff``, ``logg``, ``feh``, ``layer``, ``column``, ``atmosphere``) holds only the DECK6 columns
  RHOX, T, P, XNE, ABROSS, ACCRAD, VTURB per layer: of the deck parameters it carries the
  micro-turbulence VTURB (its distinct values in the slice) and the number of layers; the
  abundance mixture, the convection (mixing length) and the opacity switches are *not* in the
  file and cannot be audited from it;
* a smoothness measure: each model with both neighbours along the axis present is compared, layer
  by layer on the common ATLAS9 tau scale, with the linear interpolation of its two neighbours in
  the axis value (the mean of the two where the spacing is even).  The difference in % of T, P_gas,
  n_e and kappa_Ross (``100 (10^(log x - log x_interp) - 1)``), rms over the layers, is one number
  per model and quantity; a slice is summarised by the median and the maximum over its models.

For the [M/H] axis each slice is also compared with the interpolation of every pair of slices that
brackets it within 4 nodes, and the best pair is reported (:func:`best_bracketing_pair`): a slice of a
smooth family follows some pair of its family closely even when its immediate neighbours belong to
another family.

A slice is flagged as a *break* when its deck VTURB differs from the axis' most common value, or
when its median rms in T exceeds ``break_factor`` (5) times the median over the slices of its
axis (and :data:`MIN_BREAK_PERCENT`) and is a local maximum along the axis (a discontinuous slice also raises its two neighbours,
by about half as much, because it is their neighbour: the local maximum is the culprit).
"""
from __future__ import annotations

import numpy as np

from .grid import COLUMNS, AtmosphereGrid

#: audited quantities: name -> column of :data:`stellarnn.atmospheres.grid.COLUMNS`
AUDIT_QUANTITIES = {"T": "temperature", "P": "p_gas", "n_e": "n_e", "kappa_Ross": "abross"}
BREAK_FACTOR = 5.0
#: a smoothness break must also exceed this (% rms in T): round-off never makes a break
MIN_BREAK_PERCENT = 0.05


def neighbour_deviation(grid: AtmosphereGrid, axis: int) -> dict:
    """Per-model rms % difference from the linear interpolation of its two neighbours along ``axis``.

    Parameters
    ----------
    grid : AtmosphereGrid
        Models on the common layer scale (:meth:`AtmosphereGrid.load_atlas9`); NaN layers are skipped.
    axis : int
        Index of the grid axis.

    Returns
    -------
    dict quantity name -> float array ``(*grid.shape)``: NaN where the model or one of its two
    neighbours is missing (and on the first and last node of the axis).
    """
    values = grid.axes[grid.axis_names[axis]]
    out = {}
    for name, column in AUDIT_QUANTITIES.items():
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.log10(grid.models[..., COLUMNS.index(column)])
        logs = np.moveaxis(logs, axis, 0)  # (n_axis, ..., L)
        res = np.full(logs.shape[:-1], np.nan)
        for i in range(1, len(values) - 1):
            w = (values[i] - values[i - 1]) / (values[i + 1] - values[i - 1])
            pred = (1 - w) * logs[i - 1] + w * logs[i + 1]
            pct = 100.0 * (10.0 ** (logs[i] - pred) - 1.0)
            finite = np.isfinite(pct)
            n = finite.sum(-1)
            with np.errstate(invalid="ignore"):
                rms = np.sqrt(np.where(finite, pct ** 2, 0.0).sum(-1) / n)
            # a model counts when at least half of its layers are comparable
            res[i] = np.where(n >= logs.shape[-1] // 2, rms, np.nan)
        out[name] = np.moveaxis(res, 0, axis)
    return out


def _pair_deviation(logs: np.ndarray, values: np.ndarray, i: int, j: int, k: int) -> np.ndarray:
    """Per-model rms % difference of slice ``i`` from the linear interpolation of slices ``j < i < k`` (axis 0)."""
    w = (values[i] - values[j]) / (values[k] - values[j])
    pct = 100.0 * (10.0 ** (logs[i] - ((1 - w) * logs[j] + w * logs[k])) - 1.0)
    finite = np.isfinite(pct)
    n = finite.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rms = np.sqrt(np.where(finite, pct ** 2, 0.0).sum(-1) / n)
    rms = rms[n >= logs.shape[-1] // 2]
    return rms[np.isfinite(rms)]


def best_bracketing_pair(grid: AtmosphereGrid, axis: int, i: int, max_span: int = 4) -> dict | None:
    """The pair of slices (j < i < k, k - j <= ``max_span`` nodes) whose interpolation slice ``i`` follows best.

    A slice that belongs to a smooth family matches *some* bracketing pair of the same family closely even
    when its immediate neighbours belong to another; a slice that matches no pair is the odd one out.

    Returns
    -------
    dict with ``pair`` (the two axis values), ``T`` and ``n_e`` (median over models of the rms % difference),
    or None when no pair brackets the slice.
    """
    values = grid.axes[grid.axis_names[axis]]
    with np.errstate(divide="ignore", invalid="ignore"):
        log_t = np.moveaxis(np.log10(grid.models[..., COLUMNS.index("temperature")]), axis, 0)
        log_ne = np.moveaxis(np.log10(grid.models[..., COLUMNS.index("n_e")]), axis, 0)
    best = None
    for j in range(max(0, i - max_span + 1), i):
        for k in range(i + 1, min(len(values), j + max_span + 1)):
            t = _pair_deviation(log_t, values, i, j, k)
            if t.size < 10:
                continue
            m = float(np.median(t))
            if best is None or m < best["T"]:
                ne = _pair_deviation(log_ne, values, i, j, k)
                best = {"pair": [float(values[j]), float(values[k])], "T": m, "n_e": float(np.median(ne)),
                        "n": int(t.size)}
    return best


def _slice_vturb(grid: AtmosphereGrid, axis: int, i: int) -> list[float]:
    """Distinct VTURB values [km/s] of the models in slice ``i`` of ``axis`` (rounded to 0.01)."""
    v = np.take(grid.models[..., COLUMNS.index("vturb")], i, axis=axis)
    v = v[np.isfinite(v)]
    return sorted({round(float(x) / 1e5, 2) for x in np.unique(np.round(v, -2))})


def audit_grid(grid: AtmosphereGrid | None = None, break_factor: float = BREAK_FACTOR) -> dict:
    """The audit of every slice of every axis (see the module docstring).

    Parameters
    ----------
    grid : AtmosphereGrid, optional
        Default: the ATLAS9 grid (:meth:`AtmosphereGrid.load_atlas9`).
    break_factor : float
        Smoothness outlier threshold (times the axis median of the slice medians).

    Returns
    -------
    dict with ``source``, ``file_holds`` (what the file records per model), ``axes``: axis name ->
    list of slice rows {value, n_models, n_72_layers, vturb_kms, rms_percent: {quantity: {median,
    max, n}}, break: [reasons]}, and ``breaks``: the flagged slices.
    """
    grid = grid or AtmosphereGrid.load_atlas9()
    present = grid.present
    n_layers = np.isfinite(grid.models[..., 0]).sum(-1)
    result = {"source": grid.source,
              "file_holds": "per model and layer: RHOX, T, P, XNE, ABROSS, ACCRAD, VTURB (no abundance mixture, "
                            "convection or opacity flags: these cannot be audited from the grid file)",
              "method": "per model: rms over layers of the % difference of T, P, n_e, kappa_Ross from the linear "
                        "interpolation of its two neighbours along the axis; per slice: median and max over models",
              "break_factor": break_factor, "axes": {}, "breaks": []}
    for k, axis_name in enumerate(grid.axis_names):
        dev = neighbour_deviation(grid, k)
        rows = []
        for i, value in enumerate(grid.axes[axis_name]):
            sl = (slice(None),) * k + (i,)
            row = {"value": float(value), "n_models": int(present[sl].sum()),
                   "n_72_layers": int((present[sl] & (n_layers[sl] == 72)).sum()),
                   "vturb_kms": _slice_vturb(grid, k, i), "rms_percent": {},
                   "best_bracketing_pair": best_bracketing_pair(grid, k, i) if axis_name == "m_h" else None,
                   "break": []}
            for q, d in dev.items():
                v = d[sl][np.isfinite(d[sl])]
                row["rms_percent"][q] = ({"median": float(np.median(v)), "max": float(v.max()), "n": int(v.size)}
                                         if v.size else {"median": None, "max": None, "n": 0})
            rows.append(row)
        vt = [tuple(r["vturb_kms"]) for r in rows if r["vturb_kms"]]
        common = max(set(vt), key=vt.count) if vt else ()
        med_t = np.array([r["rms_percent"]["T"]["median"] if r["rms_percent"]["T"]["median"] is not None
                          else np.nan for r in rows])
        axis_median = float(np.nanmedian(med_t)) if np.isfinite(med_t).any() else np.nan
        for i, r in enumerate(rows):
            if r["vturb_kms"] and not set(r["vturb_kms"]) & set(common):
                r["break"].append(f"VTURB {r['vturb_kms']} km/s, the axis' other slices {list(common)} km/s")
            m = med_t[i]
            lo = med_t[i - 1] if i > 0 else -np.inf
            hi = med_t[i + 1] if i + 1 < len(rows) else -np.inf
            if np.isfinite(m) and m > max(break_factor * axis_median, MIN_BREAK_PERCENT) \
                    and m >= np.nan_to_num(lo, nan=-np.inf) \
                    and m >= np.nan_to_num(hi, nan=-np.inf):
                r["break"].append(f"T deviates from its neighbours by {m:.2f} % rms (median), "
                                  f"{m / axis_median:.0f}x the axis median {axis_median:.3f} %")
            if r["break"]:
                result["breaks"].append({"axis": axis_name, "value": r["value"], "reasons": list(r["break"])})
        result["axes"][axis_name] = {"median_of_slice_T_rms_percent": axis_median, "slices": rows}
    if "m_h" in result["axes"] and "ATLAS9" in str(grid.source):
        fam = m_h_families(grid)
        result["m_h_families"] = fam
        if fam["interleaved"]:
            c, w = fam["median_percent"]["cross_family"], fam["median_percent"]["within_family"]
            result["axis_breaks"] = [{
                "axis": "m_h", "reason": f"two interleaved families of slices: adjacent slices of different families "
                                         f"differ by {c['T']:.2f} % in T, {c['n_e']:.1f} % in n_e (median), slices "
                                         f"within a family by {w['T']:.2f} % / {w['n_e']:.1f} %",
                "handled_by": "the family as an input of the emulator (stellarnn atmosphere train --families); "
                              "linear interpolation within one family"}]
    return result


#: the [M/H] axis is flagged as two interleaved families when adjacent slices of different families differ (median
#: rms % in T) by more than this many times slices bracketed within their family.  Differences grow with the span
#: of the pair, and the cross-family pairs of the ATLAS9 grid span 0.2-1.0 dex against 0.2-3.3 dex within a family,
#: so a larger cross-family difference cannot come from the span
INTERLEAVE_FACTOR = 2.0


def m_h_families(grid: AtmosphereGrid, family: np.ndarray | None = None,
                 interleave_factor: float = INTERLEAVE_FACTOR) -> dict:
    """How the [M/H] slices group into families, with the smoothness that shows it.

    Every slice with a neighbour on both sides *within its own family* is compared with the linear
    interpolation of those two slices (median over models of the rms % difference in T and n_e, as
    :func:`neighbour_deviation`), and every slice whose immediate neighbours along the axis belong to the other
    family is compared with them.  A grid that is one family has the two alike; the ATLAS9 grid of species
    does not: adjacent slices from the two families differ by ~1 % in T and ~13 % in n_e, slices within a family
    by 0.02-0.5 % in T (``bench/results/innterpol.json``, ``audit.m_h_families``).

    Parameters
    ----------
    grid : AtmosphereGrid
        The ATLAS9 grid (axes teff, logg, m_h).
    family : (n_m_h,) int, optional
        Family of each slice (default: :func:`stellarnn.atmospheres.grid.atlas9_m_h_families`).
    interleave_factor : float
        The axis is flagged as interleaved when the median cross-family difference in T exceeds this
        many times the median within-family one (:data:`INTERLEAVE_FACTOR`).

    Returns
    -------
    dict with ``families`` (family index -> name and its [M/H] values), ``within_family`` and ``cross_family``
    (one row per slice: value, the bracketing pair, median T and n_e rms %), the medians of both, and
    ``interleaved`` (bool).
    """
    from .grid import M_H_FAMILIES, atlas9_m_h_families

    k = grid.axis_names.index("m_h")
    values = np.asarray(grid.axes["m_h"], dtype=float)
    if family is None:
        feh, family = atlas9_m_h_families()
        if not np.allclose(feh, values):
            raise ValueError("family must be given for a grid whose [M/H] axis is not the ATLAS9 file's")
    family = np.asarray(family, dtype=int)
    n_models = np.moveaxis(grid.present, k, 0).reshape(len(values), -1).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_t = np.moveaxis(np.log10(grid.models[..., COLUMNS.index("temperature")]), k, 0)
        log_ne = np.moveaxis(np.log10(grid.models[..., COLUMNS.index("n_e")]), k, 0)
    filled = np.flatnonzero(n_models > 0)

    def row(i, j, m):
        t = _pair_deviation(log_t, values, i, j, m)
        ne = _pair_deviation(log_ne, values, i, j, m)
        if t.size < 10:
            return None
        return {"value": float(values[i]), "pair": [float(values[j]), float(values[m])],
                "T": float(np.median(t)), "n_e": float(np.median(ne)), "n": int(t.size)}

    within, cross = [], []
    for pos, i in enumerate(filled):
        same = filled[family[filled] == family[i]]
        lo, hi = same[same < i], same[same > i]
        if lo.size and hi.size and (r := row(i, lo[-1], hi[0])) is not None:
            within.append(r)
        if 0 < pos < len(filled) - 1:
            j, m = filled[pos - 1], filled[pos + 1]
            if (family[j] != family[i] or family[m] != family[i]) and (r := row(i, j, m)) is not None:
                cross.append(r)
    med = {name: {q: float(np.median([r[q] for r in rows])) if rows else None for q in ("T", "n_e")}
           for name, rows in (("within_family", within), ("cross_family", cross))}
    interleaved = bool(within and cross and med["cross_family"]["T"] > interleave_factor * med["within_family"]["T"])
    return {"families": {str(f): {"name": M_H_FAMILIES[f], "m_h": [float(v) for v in values[filled][family[filled] == f]]}
                         for f in sorted(set(family[filled].tolist()))},
            "method": "median over models of the rms % difference of a slice from the linear interpolation of its "
                      "nearest slices on both sides within its family (within_family), or of its immediate "
                      "neighbours along the axis where one of them is of the other family (cross_family)",
            "within_family": within, "cross_family": cross, "median_percent": med, "interleaved": interleaved}


def inconsistent_slices(audit: dict, axis: str = "m_h") -> list[float]:
    """Values of ``axis`` whose slices the audit flags (VTURB or smoothness break)."""
    return [b["value"] for b in audit["breaks"] if b["axis"] == axis]


def format_audit(audit: dict) -> str:
    """The audit as a text table: one row per slice (axis, value, models, VTURB, median/max rms % of T, P, n_e, kappa)."""
    qs = list(AUDIT_QUANTITIES)
    head = (f"{'axis':5s} {'value':>7s} {'models':>6s} {'72-lay':>6s} {'VTURB km/s':>10s} "
            + " ".join(f"{q + ' med/max %':>17s}" for q in qs) + "  best pair: T/n_e %  flag")
    lines = [f"Grid audit: {audit['source']}", audit["file_holds"], audit["method"], head]
    for axis, entry in audit["axes"].items():
        for r in entry["slices"]:
            cells = []
            for q in qs:
                s = r["rms_percent"][q]
                cells.append(f"{s['median']:8.3f}/{s['max']:8.2f}" if s["n"] else f"{'-':>17s}")
            vt = ",".join(f"{v:g}" for v in r["vturb_kms"]) or "-"
            bp = r.get("best_bracketing_pair")
            pair = (f"({bp['pair'][0]:g},{bp['pair'][1]:g}) {bp['T']:.3f}/{bp['n_e']:.1f}" if bp else "")
            lines.append(f"{axis:5s} {r['value']:7g} {r['n_models']:6d} {r['n_72_layers']:6d} {vt:>10s} "
                         + " ".join(cells) + f"  {pair:18s}" + ("  BREAK" if r["break"] else ""))
    fams = audit.get("m_h_families")
    if fams:
        for f, entry in fams["families"].items():
            lines.append(f"[M/H] family {f} ({entry['name']}): {entry['m_h']}")
        for b in audit.get("axis_breaks", []):
            lines.append(f"axis break: {b['axis']}: {b['reason']}")
    for b in audit["breaks"]:
        lines.append(f"break: {b['axis']} = {b['value']:g}: " + "; ".join(b["reasons"]))
    return "\n".join(lines)
