"""Per-star Cramér-Rao bounds on the labels, per population; writes bench/results/crlb.json.

What any method can reach from the APOGEE pixels at a given S/N, star by star
(:mod:`stellarnn.synthesis.information`): Fisher matrix from the emulator's autograd Jacobian on the
7514 pixels the label pipelines keep, σ = 1/SNR per pixel, all emulator labels + RV free; medians per
population (:mod:`stellarnn.synthesis.populations`) at S/N 50, 100 and 200, and at S/N 100 also

* with a quadratic continuum per chip free (``with_continuum``),
* without the H I Brackett cores (``snr_100_brackett_masked``): the pixels that networks trained with
  ``--brackett-mask`` (the retrain of issue 19) never see, at each star's Teff
  (:mod:`stellarnn.spectra.brackett_mask`); their bound, not the one with every pixel, is what such a network
  can reach,
* with the emulator's own error added to σ in quadrature (``with_emulator_error``: per population, the
  per-pixel rms of emulator minus PySME over that population's held-out spectra of ``--error-grid``).

Label sets: the held-out labels of the APOGEE-like test grid (``grids/apogee_like_f0/test``: its labels are
deterministic in (seed, index), so the bounds need no spectra) are the main result (``by_population``);
the old uniform-box held-out grid (``grids/apogee/test``) is reported beside it (``by_population_box_test``).
Labels outside the emulator's training range are clipped to it (counted in ``n_clipped``).

``pysme_check``: the emulator's Jacobian against PySME central finite differences (same physics as the
emulator's training grids: ``--check-physics``), at a cool giant, a G dwarf and a 7000 K dwarf: the ratio
of the bounds on Teff, log g, [M/H] (emulator / PySME; target 0.7-1.5), and per label the norm of the
derivative in units of the noise at S/N 100 (sqrt(Σ_p (∂F_p/∂θ)² / σ²) for a unit change: how many σ a
change of 1 dex or 1 K moves the spectrum), PySME next to the emulator, so an element without lines in the
window (PySME's norm ~0) must show no sensitivity in the emulator either.  The PySME spectra are cached
(``--cache``), so the check resumes where it stopped.

Run: ``.venv/bin/python bench/crlb.py [--skip-pysme]`` (the PySME check costs about 130 syntheses).
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

from stellarnn.spectra.apogee_grid import kept_pixel_index
from stellarnn.synthesis.emulator import load_emulator
from stellarnn.synthesis.grid_builder import GridSpec, label_columns, load_grid, sample_labels
from stellarnn.synthesis.information import emulator_bounds, fisher_bounds, model_jacobian
from stellarnn.synthesis.label_priors import typical_broadening
from stellarnn.synthesis.populations import POPULATIONS, population_masks

ROOT = Path(__file__).resolve().parents[1]
SNRS = (50, 100, 200)
#: JSON names of the first three labels (the issue's keys)
KEY = {"teff": "teff", "logg": "logg", "m_h": "fe_h"}
#: the PySME check's stars: (name, Teff, log g, [M/H])
CHECK_STARS = (("cool_giant", 4500.0, 2.0, 0.0), ("g_dwarf", 5800.0, 4.4, 0.0), ("dwarf_7000K", 7000.0, 4.2, 0.0))
#: central-difference half steps per label kind
STEPS = {"teff": 50.0, "logg": 0.1, "m_h": 0.05, "v_micro": 0.1, "v_macro": 0.5, "v_sini": 1.0}
X_M_STEP = 0.05


def grid_labels(folder: Path, names: list[str]) -> np.ndarray:
    """Labels of a grid (from its spectra when built, else drawn from its spec: deterministic in seed, index)."""
    spec = GridSpec.from_json(json.loads((folder / "spec.json").read_text())["spec"])
    atm = spec.atmospheres()
    rows = [sample_labels(i, spec.seed, spec.prior, atm).as_dict() for i in range(spec.n)]
    return np.array([[r[k] for k in names] for r in rows])


def clip_to_emulator(emu, labels: np.ndarray) -> tuple[np.ndarray, int]:
    lo, hi = emu.label_min.numpy().astype(np.float64), emu.label_max.numpy().astype(np.float64)
    clipped = np.clip(labels, lo, hi)
    return clipped, int(np.any(clipped != labels, axis=1).sum())


def summarise(bounds, labels: np.ndarray, names: list[str]) -> dict:
    masks = population_masks(labels[:, 0], labels[:, 1], labels[:, 2])
    out = {}
    for pop in POPULATIONS:
        m = masks[pop]
        entry = {"n": int(m.sum())}
        if m.any():
            for j, n in enumerate(names):
                entry[KEY.get(n, n)] = float(np.median(bounds.sigma[m, j]))
            entry["rv_kms"] = float(np.median(bounds.column("rv")[m]))
        out[pop] = entry
    return out


def population_model_error(emu, grid: dict) -> dict[str, np.ndarray]:
    """Per population, per-pixel rms of emulator minus PySME flux over the population's held-out spectra."""
    pix = kept_pixel_index()
    with torch.inference_mode():
        pred = emu(torch.as_tensor(grid["labels"], dtype=torch.float32)).numpy()[:, pix]
    resid = np.nan_to_num(pred - grid["flux"][:, pix])
    lab = grid["labels"]
    masks = population_masks(lab[:, 0], lab[:, 1], lab[:, 2])
    return {p: np.sqrt(np.mean(resid[m] ** 2, axis=0)) for p, m in masks.items() if m.sum() >= 3}


def bounds_section(emu, labels: np.ndarray, names: list[str], model_error: dict | None) -> dict:
    labels, n_clipped = clip_to_emulator(emu, labels)
    out = {"n_stars": int(len(labels)), "n_clipped": n_clipped}
    per_snr = {s: summarise(emulator_bounds(emu, labels, names, float(s)), labels, names) for s in SNRS}
    cont = summarise(emulator_bounds(emu, labels, names, 100.0, continuum_degree=2), labels, names)
    masked = summarise(emulator_bounds(emu, labels, names, 100.0, brackett_masked=True), labels, names)
    result = {}
    for pop in POPULATIONS:
        result[pop] = {f"snr_{s}": per_snr[s][pop] for s in SNRS}
        result[pop]["snr_100_with_continuum"] = cont[pop]
        result[pop]["snr_100_brackett_masked"] = masked[pop]
    if model_error:
        masks = population_masks(labels[:, 0], labels[:, 1], labels[:, 2])
        for pop in POPULATIONS:
            m = masks[pop]
            if not m.any() or pop not in model_error:
                result[pop]["snr_100_with_emulator_error"] = {"n": int(m.sum()), "note": "no held-out spectra"}
                continue
            b = emulator_bounds(emu, labels[m], names, 100.0, model_error=model_error[pop])
            entry = {"n": int(m.sum()), "emulator_rms": float(np.sqrt(np.mean(model_error[pop] ** 2)))}
            for j, n in enumerate(names):
                entry[KEY.get(n, n)] = float(np.median(b.sigma[:, j]))
            result[pop]["snr_100_with_emulator_error"] = entry
    out["populations"] = result
    return out


# ------------------------------------------------------------------ PySME finite differences
def _pysme_spectrum(cache: Path, key: str, labels: dict, synth, inst) -> np.ndarray:
    path = cache / f"{key}.npy"
    if path.exists():
        return np.load(path)
    from stellarnn.synthesis.pysme_driver import StellarLabels

    x_m = {k[:-2].capitalize(): v for k, v in labels.items() if k.endswith("_m") and k != "m_h"}
    flux, _ = synth.synthesize(StellarLabels(labels["teff"], labels["logg"], labels["m_h"], labels["v_micro"], x_m,
                                             labels.get("v_macro", 0.0), labels.get("v_sini", 0.0)))
    out = inst.apply(flux)
    tmp = path.with_suffix(".part.npy")
    np.save(tmp, out)
    os.replace(tmp, path)
    return out


def pysme_check(emu, names: list[str], spec: GridSpec, cache: Path) -> dict:
    from stellarnn.synthesis.fitter import doppler_shift
    from stellarnn.synthesis.label_priors import microturbulence_apogee
    from stellarnn.synthesis.linelists import load_line_list
    from stellarnn.synthesis.pysme_driver import ApogeeInstrument, PySMESynthesizer

    cache.mkdir(parents=True, exist_ok=True)
    atm = spec.atmospheres()
    synth = PySMESynthesizer(spec.wmin, spec.wmax, load_line_list(spec.wmin, spec.wmax, spec.line_lists),
                             atmospheres=atm, resolution=spec.resolution, hydrogen_lines=spec.hydrogen_lines,
                             transfer_resolution=spec.transfer_resolution)
    inst = ApogeeInstrument(synth.wave, spec.lsf_entry)
    pix = kept_pixel_index()
    sigma = 1.0 / 100.0
    stars = {}
    for star, teff, logg, m_h in CHECK_STARS:
        base = {n: 0.0 for n in names}
        base.update(teff=teff, logg=logg, m_h=m_h, v_micro=float(microturbulence_apogee(logg)))
        # non-zero broadening keeps the central differences >= 0 km/s and off the zero slope at 0
        base.update({k: v for k, v in typical_broadening(teff, logg).items() if k in names})
        key = star  # the cache key carries the broadening (cached spectra of other bases stay apart)
        if "v_macro" in names:
            key = f"{star}_vmac{base['v_macro']:.2f}_vsini{base['v_sini']:.1f}"
        t0 = time.perf_counter()
        centre = _pysme_spectrum(cache, f"{key}_centre", base, synth, inst)
        jac = np.zeros((pix.size, len(names) + 1))
        for j, n in enumerate(names):
            h = STEPS.get(n, X_M_STEP)
            up = _pysme_spectrum(cache, f"{key}_{n}_up", {**base, n: base[n] + h}, synth, inst)
            down = _pysme_spectrum(cache, f"{key}_{n}_down", {**base, n: base[n] - h}, synth, inst)
            jac[:, j] = ((up - down) / (2 * h))[pix]
        c = torch.as_tensor(np.nan_to_num(centre, nan=1.0)[None], dtype=torch.float64)
        dv = 0.5  # km/s
        jac[:, -1] = ((doppler_shift(c, torch.tensor([dv], dtype=torch.float64))
                       - doppler_shift(c, torch.tensor([-dv], dtype=torch.float64))) / (2 * dv))[0].numpy()[pix]
        lab = np.array([[base[n] for n in names]])
        e_flux, e_jac = model_jacobian(emu, lab, pix)
        bp = fisher_bounds(jac[None], sigma, names + ["rv"])
        be = fisher_bounds(e_jac, sigma, names + ["rv"])
        norm_p = np.sqrt((jac ** 2).sum(0)) / sigma
        norm_e = np.sqrt((e_jac[0] ** 2).sum(0)) / sigma
        entry = {"labels": {n: base[n] for n in ("teff", "logg", "m_h", "v_micro", "v_macro", "v_sini") if n in base},
                 "bound_pysme": {KEY.get(n, n): float(bp.sigma[0, j]) for j, n in enumerate(names)},
                 "bound_emulator": {KEY.get(n, n): float(be.sigma[0, j]) for j, n in enumerate(names)},
                 "ratio_emulator_over_pysme": {KEY[n]: float(be.sigma[0, j] / bp.sigma[0, j])
                                               for j, n in enumerate(names) if n in KEY},
                 "sensitivity_sigma_per_unit_pysme": {n: float(norm_p[j]) for j, n in enumerate(names)},
                 "sensitivity_sigma_per_unit_emulator": {n: float(norm_e[j]) for j, n in enumerate(names)},
                 "emulator_minus_pysme_rms": float(np.sqrt(np.nanmean((e_flux[0] - centre[pix]) ** 2))),
                 "seconds": time.perf_counter() - t0}
        # an element "without lines in the window": PySME moves the spectrum by < 1 sigma for 0.1 dex at S/N 100
        weak = [n for j, n in enumerate(names) if n.endswith("_m") and n != "m_h" and 0.1 * norm_p[j] < 1.0]
        entry["elements_below_1sigma_per_0p1dex_pysme"] = weak
        entry["emulator_sigma_per_0p1dex_for_those"] = {n: float(0.1 * norm_e[names.index(n)]) for n in weak}
        stars[star] = entry
        print(f"pysme check {star}: ratio {entry['ratio_emulator_over_pysme']}", flush=True)
    ratios = [v for s in stars.values() for v in s["ratio_emulator_over_pysme"].values()]
    return {"physics": {k: v for k, v in spec.to_json().items() if k in ("hydrogen_lines", "transfer_resolution",
                                                                          "broadening_labels", "line_lists")},
            "steps": {**STEPS, "x_m": X_M_STEP, "rv_kms": 0.5}, "stars": stars,
            "all_ratios_within_0p7_1p5": bool(all(0.7 <= r <= 1.5 for r in ratios))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--emulator", default=str(ROOT / "weights" / "emulator" / "payne_apogee.pt"))
    ap.add_argument("--label-grid", default=str(ROOT / "grids" / "apogee_like_f0" / "test"),
                    help="held-out grid whose labels give the main result (by_population)")
    ap.add_argument("--box-grid", default=str(ROOT / "grids" / "apogee" / "test"))
    ap.add_argument("--error-grid", default=str(ROOT / "grids" / "apogee" / "test"),
                    help="held-out grid with spectra of the emulator's physics, for its per-population error")
    ap.add_argument("--check-physics", default=str(ROOT / "grids" / "apogee" / "train"),
                    help="grid folder whose spec.json gives the PySME physics of the check (the emulator's)")
    ap.add_argument("--cache", default=str(Path(os.environ.get("STELLARNN_CACHE", Path.home() / ".cache" / "stellarnn"))
                                           / "crlb_pysme"))
    ap.add_argument("--skip-pysme", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-o", "--output", default=str(ROOT / "bench" / "results" / "crlb.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    emu, payload = load_emulator(args.emulator)
    emu = emu.float().eval()
    names = list(payload["provenance"].get("label_names") or [])
    n_lab = emu.label_min.numel()
    if len(names) != n_lab:
        from stellarnn.synthesis.grid_builder import BROADENING_LABELS, LABEL_NAMES

        names = list((LABEL_NAMES + BROADENING_LABELS)[:n_lab])
    err_grid = load_grid(args.error_grid)
    model_error = population_model_error(emu, err_grid)
    result = {"bench": "crlb", "emulator": os.path.relpath(args.emulator, ROOT), "label_names": names,
              "pixels": "the 7514 apStar pixels the label pipelines keep", "sigma": "1/SNR per pixel (normalised flux)",
              "free_parameters": f"{n_lab} emulator labels + RV" + " (+ 9 continuum coefficients where stated)",
              "model_physics": "the emulator's training grids (see pysme_check.physics)",
              "host": platform.node(), "load_average_start": os.getloadavg()}
    out = Path(args.output)
    previous = json.loads(out.read_text()) if out.exists() else {}
    label_grid = Path(args.label_grid)
    result["by_population"] = bounds_section(emu, grid_labels(label_grid, names), names, model_error)["populations"]
    result["label_set"] = os.path.relpath(label_grid, ROOT)
    box = load_grid(args.box_grid)
    # the box grid has no broadening labels (synthesised with v_macro = v_sini = 0): label_columns fills them
    result["by_population_box_test"] = bounds_section(emu, label_columns(box, names), names, model_error)["populations"]
    if args.skip_pysme and "pysme_check" in previous:
        result["pysme_check"] = previous["pysme_check"]
    elif not args.skip_pysme:
        spec = GridSpec.from_json(json.loads((Path(args.check_physics) / "spec.json").read_text())["spec"])
        result["pysme_check"] = pysme_check(emu, names, spec, Path(args.cache))
    result["seconds"] = time.perf_counter() - t0
    result["load_average_end"] = os.getloadavg()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps({p: result["by_population"][p]["snr_100"] for p in POPULATIONS}, indent=1))


if __name__ == "__main__":
    main()
