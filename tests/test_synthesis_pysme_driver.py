"""PySME driver: real physics checked against real APOGEE spectra."""
import numpy as np
import pytest

from stellarnn.spectra import apogee_continuum, apogee_wavelength, kept_pixel_index, read_apstar
from stellarnn.synthesis.linelists import air_to_vacuum, load_line_list
from stellarnn.synthesis.pysme_driver import (ApogeeInstrument, PySMEDownloadError, PySMESynthesizer, StellarLabels,
                                              forbid_pysme_downloads, microturbulence_apogee)


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
    (15740.716, 15735, 15780),  # Mg I triplet (air, NIST)
    (15765.842, 15735, 15780),
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


def test_molecular_giant_matches_real_cool_giant(atmospheres, real_file):
    """CO/OH-rich window: a synthetic cool giant at the Doppler labels correlates with the real giant."""
    wl, real, hdr = _real("apstar-2M17335483", real_file)
    labels = StellarLabels(max(hdr["rv_teff"], 3550.0), max(hdr["rv_logg"], 0.5), hdr["rv_feh"])
    _, _, _, synth = _window(atmospheres, 15530, 15620, labels)
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
