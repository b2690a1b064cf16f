import numpy as np
import pytest
from astropy.io import fits

from stellarnn.spectra import SpectrumFileError, read_apvisit


@pytest.fixture(scope="module", params=["apvisit-5095-55844-128", "apvisit-9518-57729-104"])
def visit(request, real_file):
    return read_apvisit(real_file(request.param))


def test_layout(visit):
    assert visit.flux.shape == (3, 4096) and visit.wavelength.shape == (3, 4096)
    assert visit.lsf_coefficients.shape == (3, 26) and visit.wavelength_coefficients.shape == (3, 14)
    # chip 0 red, chip 2 blue; wavelength decreases along the pixels
    assert visit.wavelength[0].min() > visit.wavelength[2].max()
    assert np.all(np.diff(visit.wavelength, axis=1) < 0)
    s = visit.to_spectrum()
    assert len(s) == 3 * 4096 and np.all(np.diff(s.wavelength) > 0)


def test_lsf_kernel_normalised_and_resolution(visit):
    lsf = visit.lsf
    offsets = np.arange(-12, 13)
    k = lsf.kernel(1, np.array([10, 2048, 4080]), offsets)
    np.testing.assert_allclose(k.sum(axis=1), 1.0)
    assert np.all(k >= 0) and np.all(np.abs(offsets[k.argmax(axis=1)]) <= 1)
    for chip in range(3):
        r = lsf.resolution(chip, np.array([200, 2048, 3900]))
        assert np.all((r > 19_000) & (r < 30_000)), r  # APOGEE R ~ 22,500 (REFERENCE.md)


def test_lsf_in_wavelength_units(visit):
    lsf = visit.lsf
    dl = np.linspace(-2, 2, 401)
    k = lsf.kernel_in_wavelength(np.array([15300.0, 15850.0, 16200.0, 16800.0]), dl)
    np.testing.assert_allclose(k.sum(axis=1), 1.0)
    fwhm = np.array([np.ptp(dl[row >= row.max() / 2]) for row in k])
    r = np.array([15300.0, 15850.0, 16200.0, 16800.0]) / fwhm
    assert np.all((r > 19_000) & (r < 30_000)), r


def test_all_masked_chip(tmp_path, real_file):
    src = real_file("apvisit-5095-55844-128")
    with fits.open(src) as h:
        hdus = fits.HDUList([x.copy() for x in h])
    hdus[1].data[2] = np.nan
    out = tmp_path / "bad.fits"
    hdus.writeto(out)
    with pytest.raises(SpectrumFileError, match=r"bad.fits \[HDU 1\]: chip 2 has no usable pixel"):
        read_apvisit(out)


def test_missing_lsf_hdu(tmp_path, real_file):
    with fits.open(real_file("apvisit-5095-55844-128")) as h:
        hdus = fits.HDUList([x.copy() for x in h[:10]])
    out = tmp_path / "nolsf.fits"
    hdus.writeto(out)
    with pytest.raises(SpectrumFileError, match=r"\[HDU 10\]: missing HDU"):
        read_apvisit(out)
