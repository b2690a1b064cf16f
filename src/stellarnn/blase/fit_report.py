"""What a blasé transfer changed, so a user can judge whether a better residual is physical.

:func:`transfer_report` gathers, for a :class:`~stellarnn.blase.fitting.TransferResult`:

* **stellar lines** — per line the clone's and the fitted amplitude, σ and γ, Δ ln a, Δ ln σ,
  Δ ln γ and a verdict: ``deepened`` / ``weakened`` (``|Δ ln a|`` > ``change_threshold``),
  ``broadened`` / ``narrowed`` (``|Δ ln σ|`` or ``|Δ ln γ|`` > the threshold, amplitude unchanged),
  ``unchanged``; shifted lines do not occur (the clone's centres are frozen in the transfer);
* **lines added** — the telluric lines per species and the fitted species scalings (band model),
  or the number of free telluric lines (``tellurics="free"``);
* **telluric contribution per band** — over the observed pixels in each band of
  :data:`~stellarnn.blase.telluric_bands.TELLURIC_BANDS`: pixels, minimum transmission, pixels
  below 0.99 and the absorbed equivalent width Σ (1 − T) Δλ (Å); and the same outside every band;
* **extrinsic parameters** — RV, v sin i and R with 1σ uncertainties from the curvature of the
  χ²/2 of the transfer loss with respect to (RV, ln v sin i, ln R) at the solution, the other
  parameters held fixed (conditional uncertainties: a lower bound on the marginal ones; Press et
  al., Numerical Recipes, §15.6); NaN for a parameter at its clamp bound or without positive
  curvature, and ``1/√H_ii`` each when the 3 × 3 curvature is not positive definite (the method used
  is stated);
* the baseline and transfer rms residuals.

:func:`write_fit_report` writes it as JSON (everything) or CSV (the line table), and
:func:`plot_fit_report` draws it as a figure: Δ ln a of every stellar line against wavelength over the
telluric transmission, and the per-band absorbed equivalent widths.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from ..constants import SPEED_OF_LIGHT_KM_S
from ..figures import new_figure
from .extrinsic import scale_to_segments
from .telluric_bands import TELLURIC_BANDS, band_edges

#: ``|Δ ln a|``, ``|Δ ln σ|``, ``|Δ ln γ|`` above which a stellar line counts as changed (≈ 10 %)
CHANGE_THRESHOLD = 0.1


def _components(model, spec):
    x = torch.from_numpy(scale_to_segments(spec.wavelength, spec.segment)).float()
    with torch.no_grad():
        parts = model(torch.from_numpy(spec.wavelength), x, torch.from_numpy(spec.segment), components=True)
    return {k: v.double().numpy() for k, v in parts.items()}


def extrinsic_uncertainties(model, spec, steps=(0.05, 0.01, 0.01)) -> dict:
    """1σ of RV [km/s], v sin i [km/s] and R from the Hessian of χ²/2 in (RV, ln v sin i, ln R).

    The Hessian is taken by central finite differences of χ²/2 (``steps`` in km/s, ln units, ln
    units); the model's parameters are restored afterwards.
    """
    good = spec.good_pixels()
    wl = torch.from_numpy(spec.wavelength[good])
    x = torch.from_numpy(scale_to_segments(spec.wavelength, spec.segment)[good]).float()
    seg = torch.from_numpy(spec.segment[good])
    flux = torch.from_numpy(spec.flux[good])
    inv = torch.from_numpy(1.0 / spec.error[good])
    params = (model.rv_param, model.ln_vsini, model.ln_resolution)
    saved = [p.detach().clone() for p in params]
    theta0 = np.array([float(p.detach()) for p in (model.rv_km_s, model.ln_vsini, model.ln_resolution)])
    h = np.asarray(steps, dtype=np.float64)

    @torch.no_grad()
    def half_chi2(theta) -> float:
        model.rv_param.fill_(theta[0] / model.rv_scale)
        model.ln_vsini.fill_(theta[1])
        model.ln_resolution.fill_(theta[2])
        return float(0.5 * (((model(wl, x, seg).double() - flux) * inv) ** 2).sum())

    def at(i=None, si=0, j=None, sj=0) -> float:
        t = theta0.copy()
        if i is not None:
            t[i] += si * h[i]
        if j is not None:
            t[j] += sj * h[j]
        return half_chi2(t)

    try:
        f0 = at()
        hess = np.zeros((3, 3))
        for i in range(3):
            hess[i, i] = (at(i, 1) - 2 * f0 + at(i, -1)) / h[i] ** 2
            for j in range(i + 1, 3):
                hess[i, j] = hess[j, i] = (at(i, 1, j, 1) - at(i, 1, j, -1) - at(i, -1, j, 1)
                                           + at(i, -1, j, -1)) / (4 * h[i] * h[j])
    finally:
        with torch.no_grad():
            for p, v in zip(params, saved):
                p.copy_(v)
    vsini, resolution = float(model.vsini_km_s.detach()), float(model.resolution.detach())
    at_bound = {"vsini": vsini >= model.vsini_max - 1e-6, "resolution": resolution <= model.resolution_min + 1e-6}
    # parameters at a bound of their clamp, or with no positive curvature, get no uncertainty (NaN)
    usable = (np.diag(hess) > 0) & ~np.array([False, at_bound["vsini"], at_bound["resolution"]])
    idx = np.where(usable)[0]
    sig, method = np.full(3, np.nan), "none: no positive curvature"
    if idx.size:
        sub = hess[np.ix_(idx, idx)]
        if np.all(np.linalg.eigvalsh(sub) > 0):
            sig[idx] = np.sqrt(np.diag(np.linalg.inv(sub)))
            method = "inverse curvature matrix"
        else:  # not positive definite (e.g. v sin i below the instrumental width): each one alone
            sig[idx] = 1.0 / np.sqrt(np.diag(sub))
            method = "1/sqrt(diagonal curvature): the curvature matrix is not positive definite"
    return {"rv_km_s": float(model.rv_km_s.detach()), "e_rv_km_s": float(sig[0]),
            "vsini_km_s": vsini, "e_vsini_km_s": float(vsini * sig[1]),
            "resolution": resolution, "e_resolution": float(resolution * sig[2]),
            "uncertainty_method": method, "at_bound": at_bound,
            "note": "conditional 1-sigma from the chi2 curvature, other parameters fixed"}


def transfer_report(result, spec, change_threshold: float = CHANGE_THRESHOLD, bands=TELLURIC_BANDS) -> dict:
    """The report of the module docstring for a transfer ``result`` fitted to ``spec``."""
    model = result.model
    s = model.stellar
    centres = s.centres().detach().double().numpy()
    d_ln_a = (s.ln_amplitude - model.clone_ln_amplitude).detach().double().numpy()
    d_ln_s = (s.ln_sigma - model.clone_ln_sigma).detach().double().numpy()
    d_ln_g = (s.ln_gamma - model.clone_ln_gamma).detach().double().numpy()
    verdict = np.full(centres.size, "unchanged", dtype=object)
    width = np.maximum(np.abs(d_ln_s), np.abs(d_ln_g)) > change_threshold
    broader = np.where(np.abs(d_ln_s) >= np.abs(d_ln_g), d_ln_s, d_ln_g) > 0
    verdict[width & broader] = "broadened"
    verdict[width & ~broader] = "narrowed"
    verdict[d_ln_a > change_threshold] = "deepened"
    verdict[d_ln_a < -change_threshold] = "weakened"
    lo, hi = spec.wavelength.min(), spec.wavelength.max()
    observed_frame = centres * (1.0 + float(model.rv_km_s.detach()) / SPEED_OF_LIGHT_KM_S)
    in_data = (observed_frame >= lo) & (observed_frame <= hi)
    lines = [{"centre_angstrom": float(c), "clone_amplitude_angstrom": float(math.exp(float(a0))),
              "amplitude_angstrom": float(math.exp(float(a))), "d_ln_amplitude": float(da),
              "d_ln_sigma": float(ds), "d_ln_gamma": float(dg), "verdict": str(v)}
             for c, a0, a, da, ds, dg, v in zip(centres[in_data], model.clone_ln_amplitude.numpy()[in_data],
                                                s.ln_amplitude.detach().numpy()[in_data], d_ln_a[in_data],
                                                d_ln_s[in_data], d_ln_g[in_data], verdict[in_data])]
    counts = {k: int(np.sum(verdict[in_data] == k)) for k in ("deepened", "weakened", "broadened", "narrowed",
                                                               "unchanged")}
    parts = _components(model, spec)
    trans = parts["telluric"]
    step = np.gradient(spec.wavelength)
    medium = "vacuum" if str(spec.metadata.get("medium", "")).startswith("vacuum") else "air"
    per_band, outside = [], np.ones(spec.wavelength.size, bool)
    for b_lo, b_hi, species, name in band_edges(bands, medium):
        sel = (spec.wavelength >= b_lo) & (spec.wavelength <= b_hi)
        outside &= ~sel
        if sel.any():
            per_band.append({"band": name, "species": species, "edges_angstrom": [b_lo, b_hi],
                             "n_pixels": int(sel.sum()), "minimum_transmission": float(trans[sel].min()),
                             "pixels_below_0.99": int((trans[sel] < 0.99).sum()),
                             "absorbed_equivalent_width_angstrom": float(np.sum((1 - trans[sel]) * step[sel]))})
    out_band = {"n_pixels": int(outside.sum()),
                "minimum_transmission": float(trans[outside].min()) if outside.any() else None,
                "pixels_below_0.99": int((trans[outside] < 0.99).sum()),
                "absorbed_equivalent_width_angstrom": float(np.sum((1 - trans[outside]) * step[outside]))}
    return {"spectrum": spec.name, "baseline_rms": result.baseline_rms, "transfer_rms": result.transfer_rms,
            "extrinsic": extrinsic_uncertainties(model, spec), "baseline_extrinsic": result.baseline_parameters,
            "stellar_lines": {"n_in_data": int(in_data.sum()), "counts": counts, "shifted": 0,
                              "change_threshold": change_threshold, "lines": lines},
            "tellurics": {"mode": result.telluric_mode, "n_lines_added": result.n_telluric_lines,
                          "lines_per_species": result.telluric_lines_per_species,
                          "species_scales": result.telluric_scales,
                          "n_residual_lines_outside_bands": result.n_residual_lines_outside_bands,
                          "per_band": per_band, "outside_bands": out_band}}


def write_fit_report(report: dict, path: str | Path) -> Path:
    """``.json``: the whole report; ``.csv``: the stellar-line table (one row per line)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(json.dumps(report, indent=2, default=float))
    elif path.suffix == ".csv":
        names = ["centre_angstrom", "clone_amplitude_angstrom", "amplitude_angstrom", "d_ln_amplitude",
                 "d_ln_sigma", "d_ln_gamma", "verdict"]
        rows = [",".join(names)] + [",".join(f"{row[n]:.8g}" if n != "verdict" else row[n] for n in names)
                                    for row in report["stellar_lines"]["lines"]]
        path.write_text("\n".join(rows) + "\n")
    else:
        raise ValueError(f"{path}: fit report must be .json or .csv")
    return path


def plot_fit_report(report: dict, spec, result, fig=None):
    """Δ ln a of the stellar lines over the telluric transmission, and per-band absorbed EW.

    ``fig``: an empty figure to draw into (``None``: a new one).  Returns the figure, not closed;
    write it with :func:`stellarnn.figures.save_figure`.
    """
    parts = _components(result.model, spec)
    lines = report["stellar_lines"]["lines"]
    fig, (top, bottom) = new_figure(fig, nrows=2, ncols=1, figsize=(11, 6), gridspec_kw={"height_ratios": [2, 1]})
    colours = {"deepened": "tab:red", "weakened": "tab:blue", "broadened": "tab:orange", "narrowed": "tab:purple",
               "unchanged": "0.6"}
    for verdict, colour in colours.items():
        sel = [r for r in lines if r["verdict"] == verdict]
        top.scatter([r["centre_angstrom"] for r in sel], [r["d_ln_amplitude"] for r in sel], s=8, color=colour,
                    label=f"{verdict} ({len(sel)})")
    top.axhline(0, color="k", lw=0.5)
    top.set_ylabel("stellar Δ ln a (transfer − clone)")
    ex = report["extrinsic"]
    top.set_title(f"{report['spectrum']}: RV {ex['rv_km_s']:.2f}±{ex['e_rv_km_s']:.2f} km/s, "
                  f"vsini {ex['vsini_km_s']:.1f}±{ex['e_vsini_km_s']:.1f} km/s, R {ex['resolution']:.0f}"
                  f"±{ex['e_resolution']:.0f}; rms {report['baseline_rms']:.4f} → {report['transfer_rms']:.4f}",
                  fontsize=9)
    top.legend(fontsize=7, loc="lower left")
    twin = top.twinx()
    order = np.argsort(spec.wavelength)
    twin.plot(spec.wavelength[order], parts["telluric"][order], color="tab:green", lw=0.6)
    twin.set_ylabel("telluric transmission", color="tab:green")
    bands = report["tellurics"]["per_band"]
    labels = [b["band"] for b in bands] + ["outside bands"]
    values = [b["absorbed_equivalent_width_angstrom"] for b in bands] + \
             [report["tellurics"]["outside_bands"]["absorbed_equivalent_width_angstrom"]]
    bottom.bar(range(len(values)), values, color=["tab:green"] * len(bands) + ["tab:red"])
    bottom.set_xticks(range(len(values)), labels, fontsize=8)
    bottom.set_ylabel("telluric EW [Å]")
    top.set_xlabel("wavelength [Å]")
    return fig
