import numpy as np
import pytest
from astropy.io import fits

from stellarnn.spectra import Spectrum, SpectrumFileError, read_spectrum, write_spectrum_csv


def test_csv_round_trip(tmp_path):
    wl = np.linspace(5000, 5010, 50)
    s = Spectrum(wl, np.linspace(1, 2, 50), np.full(50, 4.0), np.arange(50) % 2)
    path = write_spectrum_csv(tmp_path / "s.csv", s)
    back = read_spectrum(path)
    np.testing.assert_allclose(back.wavelength, wl)
    np.testing.assert_allclose(back.flux, s.flux)
    np.testing.assert_allclose(back.ivar, 4.0)
    np.testing.assert_array_equal(back.bitmask, s.bitmask)


def test_fits_log_linear_image(tmp_path):
    hdu = fits.PrimaryHDU(np.ones(100))
    hdu.header.update(CRVAL1=4.179, CDELT1=6e-6, CRPIX1=1, CTYPE1="LOG-LINEAR")
    path = tmp_path / "img.fits"
    hdu.writeto(path)
    s = read_spectrum(path)
    assert s.wavelength[0] == pytest.approx(10 ** 4.179) and s.wavelength[1] == pytest.approx(10 ** (4.179 + 6e-6))
    assert s.meta["has_uncertainty"] is False


def test_fits_table(tmp_path):
    cols = [fits.Column(name="WAVE", format="D", array=np.linspace(6000, 6001, 10)),
            fits.Column(name="FLUX", format="D", array=np.ones(10)),
            fits.Column(name="IVAR", format="D", array=np.r_[np.zeros(2), np.ones(8)])]
    path = tmp_path / "tab.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(path)
    s = read_spectrum(path)
    assert len(s) == 10 and s.ivar[0] == 0 and s.ivar[5] == 1


def test_bad_inputs(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(SpectrumFileError, match="bad.csv: needs wavelength and flux"):
        read_spectrum(bad)
    with pytest.raises(SpectrumFileError, match="unknown extension"):
        read_spectrum(tmp_path / "x.xyz")
    nanflux = tmp_path / "nan.csv"
    nanflux.write_text("wavelength,flux\n1,nan\n2,nan\n")
    with pytest.raises(SpectrumFileError, match="no finite flux"):
        read_spectrum(nanflux)
