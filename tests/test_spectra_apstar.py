import numpy as np
import pytest
from astropy.io import fits

from stellarnn.spectra import SpectrumFileError, apogee_wavelength, read_apstar, write_apstar


@pytest.fixture(scope="module")
def giant(real_file):
    return real_file("apstar-2M17335483")


def test_real_giant_header_and_visits(giant):
    a = read_apstar(giant)
    assert len(a.combined) == 8575
    assert a.header["nvisits"] == 3 and a.nvisits == 3
    assert a.header["snr"] == pytest.approx(154.155, abs=1e-3)
    assert a.header["rv_teff"] == pytest.approx(3676.877, abs=1e-3)
    assert a.header["rv_logg"] == pytest.approx(0.52659, abs=1e-4)
    assert [v.meta["row"] for v in a.visits] == [2, 3, 4]
    # chip gaps hold NaN in the real file: they become ivar = 0, flux 0
    assert a.combined.meta["n_bad_pixels"] == 784
    assert np.all(np.isfinite(a.combined.flux))
    assert np.all(a.combined.ivar[:10] == 0)
    assert a.combined.wavelength[0] == pytest.approx(10 ** 4.179)


def test_real_dwarf_single_visit(real_file):
    a = read_apstar(real_file("apstar-2M19485057"))
    assert a.nvisits == 1 and a.visits[0].meta["row"] == 0
    assert a.header["rv_logg"] == pytest.approx(5.0)
    assert 100 < a.combined.snr < 200


def test_strict_mode_raises_on_nan(giant):
    with pytest.raises(SpectrumFileError, match=r"HDU 1\].*NaN"):
        read_apstar(giant, on_bad_pixels="raise")


def _copy_with(tmp_path, giant, edit, name="edited.fits"):
    with fits.open(giant) as hdul:
        hdus = fits.HDUList([h.copy() for h in hdul])
    edit(hdus)
    out = tmp_path / name
    hdus.writeto(out)
    return out


def test_missing_hdu(tmp_path, giant):
    path = _copy_with(tmp_path, giant, lambda h: h.__delitem__(slice(2, None)))
    with pytest.raises(SpectrumFileError, match=r"edited.fits \[HDU 2\]: missing HDU"):
        read_apstar(path)


def test_a_float_hdu3_that_is_not_a_bitmask_is_refused(tmp_path, giant):
    """A model spectrum where the bitmask belongs (as in files that keep a fit on the apStar grid) would, cast to
    integers, mark pixels bad at random: refused, naming the HDU. Whole-number floats are a bitmask stored as float."""
    def model_in_hdu3(h):
        h[3].data = (h[1].data / np.nanmedian(h[1].data)).astype(np.float32)
    with pytest.raises(SpectrumFileError, match=r"\[HDU 3\]: holds float32 values that are not bit masks"):
        read_apstar(_copy_with(tmp_path, giant, model_in_hdu3))

    def float_bits(h):
        h[3].data = h[3].data.astype(np.float64)
    as_float = read_apstar(_copy_with(tmp_path, giant, float_bits, name="float_bits.fits"))
    np.testing.assert_array_equal(as_float.combined.bitmask, read_apstar(giant).combined.bitmask)


def test_wrong_pixel_count(tmp_path, giant):
    def edit(h):
        for i in (1, 2, 3):
            h[i].data = h[i].data[:, :8000]
    with pytest.raises(SpectrumFileError, match=r"\[HDU 1\]: has 8000 pixels per row, expected 8575"):
        read_apstar(_copy_with(tmp_path, giant, edit))


def test_all_nan_flux(tmp_path, giant):
    def edit(h):
        h[1].data[0, :] = np.nan
    with pytest.raises(SpectrumFileError, match=r"\[HDU 1\]: row 0: no finite flux"):
        read_apstar(_copy_with(tmp_path, giant, edit))


def test_non_positive_error(tmp_path, giant):
    def edit(h):
        h[2].data[0, :] = -1.0
    with pytest.raises(SpectrumFileError, match=r"\[HDU 2\]: row 0: no positive finite error"):
        read_apstar(_copy_with(tmp_path, giant, edit))


def test_truncated_and_non_fits(tmp_path, giant):
    data = giant.read_bytes()
    trunc = tmp_path / "trunc.fits"
    trunc.write_bytes(data[:200_000])
    with pytest.raises(SpectrumFileError, match="trunc.fits"):
        read_apstar(trunc)
    junk = tmp_path / "junk.fits"
    junk.write_text("this is not a FITS file\n" * 100)
    with pytest.raises(SpectrumFileError, match="junk.fits: not a readable FITS file"):
        read_apstar(junk)
    with pytest.raises(SpectrumFileError, match="does not exist"):
        read_apstar(tmp_path / "missing.fits")


def test_writer_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    flux = 1 + 0.01 * rng.standard_normal((5, 8575))
    err = np.full_like(flux, 0.01)
    mask = np.zeros(flux.shape, int)
    mask[3, 100] = 1 << 12
    out = write_apstar(tmp_path / "apStar-synthetic.fits", flux, err, mask,
                       header={"OBJID": "SYN-1", "SNR": 100.0, "NVISITS": 3, "TEFF": 4800.0})
    a = read_apstar(out)
    assert a.header["apogee_id"] == "SYN-1" and a.nvisits == 3
    np.testing.assert_allclose(a.visits[1].flux, flux[3])
    np.testing.assert_allclose(a.combined.ivar, 1e4)
    assert a.visits[1].bitmask[100] == 1 << 12
    np.testing.assert_allclose(a.combined.wavelength, apogee_wavelength())
    with fits.open(out) as h:
        assert len(h) == 8 and h[0].header["TEFF"] == 4800.0


def test_writer_rejects_wrong_shape(tmp_path):
    with pytest.raises(ValueError, match="8575"):
        write_apstar(tmp_path / "x.fits", np.ones(100), np.ones(100))
