"""Tests of stellarnn.spectra.aspcapstar: ASPCAP's normalised spectrum in the aspcapStar layout (DR17 data model),
written here from the real apStar of 2M17335483-2753043 (no registry package ships an aspcapStar file)."""
from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from stellarnn.data import fetch
from stellarnn.spectra import (SpectrumFileError, apogee_continuum, apogee_wavelength, read_apogee_file, read_apstar,
                               read_aspcapstar, read_aspcapstar_model, read_spectrum)
from stellarnn.spectra.apogee_grid import APOGEE_DLOG10_LAMBDA, APOGEE_LOG10_LAMBDA0, kept_pixel_index
from stellarnn.spectra.aspcapstar import is_aspcapstar


def write_aspcapstar_layout(path, flux, error, model, crval=APOGEE_LOG10_LAMBDA0, table_columns=None,
                            objid="2M17335483-2753043"):
    """HDU 1-3 float32 rows of 8575 pixels with the apStar WCS, HDU 4 a one-row results table."""
    def image(data):
        hdu = fits.ImageHDU(np.asarray(data, np.float32))
        hdu.header.update({"CRVAL1": crval, "CDELT1": APOGEE_DLOG10_LAMBDA, "CRPIX1": 1, "CTYPE1": "LOG-LINEAR",
                           "DC-FLAG": 1})
        return hdu

    columns = table_columns or {"APOGEE_ID": ["2M17335483-2753043"], "TEFF": [4321.0], "LOGG": [2.1],
                                "M_H": [-0.2], "PARAM": [np.arange(9.0)]}
    table = fits.BinTableHDU.from_columns(
        [fits.Column(name=k, format=(f"{len(v[0])}A" if isinstance(v[0], str) else
                                     f"{np.size(v[0])}D" if np.ndim(v[0]) else "D"), array=np.asarray(v))
         for k, v in columns.items()])
    primary = fits.PrimaryHDU()
    if objid:
        primary.header["OBJID"] = objid
    fits.HDUList([primary, image(flux), image(error), image(model), table]).writeto(path, overwrite=True)
    return path


@pytest.fixture(scope="module")
def real_star():
    return read_apstar(fetch("apstar-2M17335483"))


@pytest.fixture(scope="module")
def aspcap_file(real_star, tmp_path_factory):
    """The real combined spectrum divided by the DR17 continuum on the kept pixels, 0 elsewhere (ASPCAP's no-data
    value), with a few rejected pixels at 0 inside the chips."""
    s = real_star.combined
    norm = apogee_continuum(s.flux, s.error, s.bitmask)
    flux, error = np.zeros(8575), np.zeros(8575)
    kept = kept_pixel_index()
    ok = ~norm.not_normalised[0].numpy()
    flux[kept] = np.where(ok, norm.flux[0].numpy(), 0.0)
    error[kept] = np.where(ok, norm.error[0].numpy(), 0.0)
    flux[kept[100:105]] = 0.0  # rejected by ASPCAP
    model = np.where(flux > 0, np.convolve(flux, np.ones(3) / 3, mode="same"), 0.0)
    path = tmp_path_factory.mktemp("aspcap") / "aspcapStar-dr17-2M17335483-2753043.fits"
    return write_aspcapstar_layout(path, flux, error, model), flux, error, model


def test_read_the_aspcapstar_layout(aspcap_file):
    path, flux, error, model = aspcap_file
    with fits.open(path) as hdul:
        assert is_aspcapstar(hdul)
    star = read_aspcapstar(path)
    s = star.combined
    np.testing.assert_array_equal(s.wavelength, apogee_wavelength())
    usable = (flux != 0) & (error > 0)
    np.testing.assert_allclose(s.flux[usable], flux[usable].astype(np.float32), rtol=1e-7)
    np.testing.assert_allclose(s.ivar[usable], 1 / error[usable].astype(np.float32).astype(float) ** 2, rtol=1e-6)
    assert np.all(s.ivar[~usable] == 0) and s.meta["n_bad_pixels"] == int((~usable).sum())
    assert s.meta["format"] == "aspcapStar" and s.meta["continuum_normalised"] is True
    assert star.header["apogee_id"] == "2M17335483-2753043" and star.nvisits == 1
    assert star.header["aspcap_teff"] == 4321.0 and star.header["aspcap_m_h"] == -0.2
    assert "aspcap_param" not in star.header  # an array column is not a label
    np.testing.assert_allclose(read_aspcapstar_model(path), model.astype(np.float32))
    # every APOGEE entry point reads it
    assert read_apogee_file(path).combined.meta["format"] == "aspcapStar"
    np.testing.assert_array_equal(read_spectrum(path).flux, s.flux)
    with pytest.raises(SpectrumFileError, match="read_apogee_file"):  # read as an apStar, HDU 3 is no bitmask
        read_apstar(path)


def test_real_apstar_and_apvisit_are_not_aspcapstar():
    for name in ("apstar-2M17335483", "apstar-2M19485057", "apvisit-5095-55844-128"):
        with fits.open(fetch(name)) as hdul:
            assert not is_aspcapstar(hdul), name


def test_another_grid_is_refused(tmp_path):
    ones = np.ones(8575)
    path = write_aspcapstar_layout(tmp_path / "shifted.fits", ones, 0.01 * ones, ones, crval=4.18)
    with pytest.raises(SpectrumFileError, match="not the apStar grid"):
        read_aspcapstar(path)
    with pytest.raises(SpectrumFileError, match="not an aspcapStar"):
        read_aspcapstar(fetch("apstar-2M19485057"))
    # no identifier in the file: the one in the file's name
    anonymous = write_aspcapstar_layout(tmp_path / "aspcapStar-dr17-2M03174068-7748459.fits", ones, 0.01 * ones,
                                        ones, table_columns={"TEFF": [5000.0]}, objid=None)
    assert read_aspcapstar(anonymous).header["apogee_id"] == "2M03174068-7748459"


def test_labels_from_the_aspcapstar_match_the_apstar(real_star, aspcap_file):
    """Both networks re-normalise the already normalised flux with a continuum close to 1: the same star read from
    its apStar and from ASPCAP's normalised spectrum gets the same labels to well within their uncertainties."""
    from stellarnn import predict_labels

    path = aspcap_file[0]
    for pipeline, kw in (("astronn", {"mc_passes": 8}), ("apogeenet", {})):
        from_apstar = predict_labels(fetch("apstar-2M17335483"), pipeline=pipeline, **kw)
        from_aspcap = predict_labels(path, pipeline=pipeline, **kw)
        for name, tol in (("teff", 25.0), ("logg", 0.05), ("fe_h", 0.02)):
            a, b = (float(np.asarray(getattr(t[name], "value", t[name]))[0]) for t in (from_apstar, from_aspcap))
            assert abs(a - b) < tol, (pipeline, name, a, b)
