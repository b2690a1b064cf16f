"""Tests of stellarnn.labels.predict: one way from data (paths, Spectrum, Spectrum1D, arrays) to a QTable."""
from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest

from stellarnn import predict_labels
from stellarnn.data import fetch
from stellarnn.labels.predict import UnsupportedInputError, as_spectra
from stellarnn.spectra import apogee_wavelength, read_apstar


@pytest.fixture(scope="module")
def star():
    return read_apstar(fetch("apstar-2M19485057")).combined


def _spectrum1d(spectrum):
    specutils = pytest.importorskip("specutils")
    from astropy.nddata import StdDevUncertainty

    cls = getattr(specutils, "Spectrum", None) or specutils.Spectrum1D
    sigma = np.where(spectrum.ivar > 0, 1 / np.sqrt(np.where(spectrum.ivar > 0, spectrum.ivar, 1)), np.inf)
    return cls(spectral_axis=spectrum.wavelength * u.AA, flux=spectrum.flux * u.Unit("1e-17 erg / (s cm2 AA)"),
               uncertainty=StdDevUncertainty(sigma), mask=_bad(spectrum),
               meta={"apogee_id": spectrum.meta.get("apogee_id")})


def _bad(spectrum):
    """Pixels the APOGEE bitmask marks bad: what a user's Spectrum1D carries as its mask."""
    from stellarnn.spectra.apogee_grid import APOGEE_BAD_PIXEL_MASK

    return (spectrum.bitmask & APOGEE_BAD_PIXEL_MASK) != 0


@pytest.mark.parametrize("pipeline", ["astronn", "apogeenet"])
def test_path_spectrum1d_and_arrays_give_the_same_labels(star, pipeline):
    path = fetch("apstar-2M19485057")
    kw = {"mc_passes": 8} if pipeline == "astronn" else {}
    t_path = predict_labels(path, pipeline=pipeline, **kw)
    t_s1d = predict_labels(_spectrum1d(star), pipeline=pipeline, **kw)
    arrays = as_spectra((star.wavelength, star.flux, np.where(_bad(star), 0.0, star.ivar)))[0]
    arrays.meta["apogee_id"] = star.meta.get("apogee_id")  # the same identity (its Monte-Carlo seed)
    t_arr = predict_labels(arrays, pipeline=pipeline, **kw)
    assert t_path["teff"].unit == u.K
    for name in ("teff", "logg", "fe_h"):
        a, b, c = (np.asarray(t[name].value if hasattr(t[name], "value") else t[name]) for t in (t_path, t_s1d, t_arr))
        np.testing.assert_allclose(b, a, rtol=1e-6)
        np.testing.assert_allclose(c, a, rtol=1e-6)
    assert 3500 < t_path["teff"][0].to_value(u.K) < 8000


def test_resampling_from_another_grid_marks_uncovered_pixels(star):
    grid = apogee_wavelength()
    w = np.linspace(15200.0, 16800.0, 5000)
    f = np.interp(w, grid, np.where(star.ivar > 0, star.flux, np.nan))
    s = as_spectra((w, np.nan_to_num(f, nan=1.0), np.where(np.isfinite(f), 1e4, 0.0)))[0]
    assert s.flux.shape == (8575,)
    assert np.all(s.ivar[grid < 15200] == 0) and np.all(s.ivar[grid > 16800] == 0)
    assert (s.ivar > 0).sum() > 5000


def test_unknown_inputs_raise_a_clear_type_error():
    with pytest.raises(UnsupportedInputError, match="cannot read a ndarray"):
        as_spectra(np.ones(8575))
    with pytest.raises(UnsupportedInputError, match="cannot read a dict"):
        as_spectra([{"flux": 1}])
    with pytest.raises(UnsupportedInputError, match="must be"):
        as_spectra((np.ones(10), np.ones(11), np.ones(11)))
    with pytest.raises(TypeError):
        predict_labels(42)
