"""Tests of stellarnn.spectra.apogee_grid: the apStar pixel grid, chips and mask bits against real files."""
from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from stellarnn.spectra.apogee_grid import (APOGEE_BAD_PIXEL_MASK, APOGEE_CHIP_SLICES, APOGEE_N_KEPT, APOGEE_N_PIXELS,
                                           apogee_wavelength, decode_pixmask, kept_pixel_index)


def test_grid_matches_a_real_apstar_header(real_file):
    with fits.open(real_file("apstar-2M17335483")) as hdul:
        h = hdul[1].header
        assert hdul[1].data.shape[-1] == APOGEE_N_PIXELS
        expected = 10 ** (h["CRVAL1"] + h["CDELT1"] * np.arange(h["NAXIS1"]))
    np.testing.assert_allclose(apogee_wavelength(), expected, rtol=1e-12)
    assert apogee_wavelength()[0] == pytest.approx(15100.80, abs=0.01)
    assert apogee_wavelength()[-1] == pytest.approx(16999.81, abs=0.01)


def test_kept_pixels_are_the_three_chips_in_order():
    idx = kept_pixel_index()
    assert idx.size == APOGEE_N_KEPT == 7514
    assert np.all(np.diff(idx) > 0)
    assert [(s.stop - s.start) for s in APOGEE_CHIP_SLICES] == [3028, 2495, 1991]
    gaps = np.flatnonzero(np.diff(idx) > 1)
    assert idx[gaps].tolist() == [3273, 6079] and idx[gaps + 1].tolist() == [3585, 6344]


def test_pixmask_bits():
    assert decode_pixmask(0) == []
    assert decode_pixmask((1 << 0) | (1 << 12) | (1 << 13)) == ["BADPIX", "SIG_SKYLINE", "SIG_TELLURIC"]
    # the bits the DR17 continuum normalisation treats as bad: 0-7 and 12, not the telluric or persistence bits
    assert decode_pixmask(APOGEE_BAD_PIXEL_MASK) == ["BADPIX", "CRPIX", "SATPIX", "UNFIXABLE", "BADDARK", "BADFLAT",
                                                     "BADERR", "NOSKY", "SIG_SKYLINE"]
