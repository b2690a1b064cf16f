import math

import numpy as np
import pytest

from stellarnn.spectra import apogee_wavelength, kept_pixel_index
from stellarnn.spectra.brackett_mask import (BRACKETT_MASK_DEFAULT, CORE_HALF_WIDTH, CORE_LINES, COOL_TEFF,
                                             WIDE_HALF_WIDTH, WIDE_LINES, brackett_mask, brackett_wavelength_vacuum)


def _pixels_in(centre, half_width):
    """apStar pixel indices i with |lambda_i - centre| <= half_width, from the log-lambda grid
    (log10 lambda_i = 4.179 + 6e-6 i) -- independent of the mask's own test of distances."""
    lo = (math.log10(centre - half_width) - 4.179) / 6e-6
    hi = (math.log10(centre + half_width) - 4.179) / 6e-6
    return set(range(math.ceil(lo), math.floor(hi) + 1))


def test_rydberg_wavelengths():
    assert abs(brackett_wavelength_vacuum(11) - 16811.1) < 0.1
    # Br gamma (4 -> 7), a well-known line: 21661.2 A in vacuum
    assert abs(brackett_wavelength_vacuum(7) - 21661.2) < 0.2
    wl = brackett_wavelength_vacuum(np.arange(11, 22))
    assert wl.shape == (11,) and np.all(np.diff(wl) < 0)  # the series converges to the blue
    assert 15130 < wl[-1] < 15140  # Br 21
    with pytest.raises(ValueError, match="integers > 4"):
        brackett_wavelength_vacuum(4)
    with pytest.raises(ValueError, match="integers > 4"):
        brackett_wavelength_vacuum(11.5)


def test_mask_covers_the_expected_apstar_pixels():
    wl = apogee_wavelength()
    centres = {n: brackett_wavelength_vacuum(n) for n in CORE_LINES}
    core = set().union(*(_pixels_in(centres[n], CORE_HALF_WIDTH) for n in CORE_LINES))
    wide = core | set().union(*(_pixels_in(centres[n], WIDE_HALF_WIDTH) for n in WIDE_LINES))
    hot, cool = brackett_mask(wl, 6500.0), brackett_mask(wl, 4500.0)
    assert set(np.flatnonzero(hot)) == core
    assert set(np.flatnonzero(cool)) == wide
    # counted: 26-29 pixels per +-3 A core (Br 11-20), 172-180 per +-20 A window (Br 11-13)
    assert hot.sum() == 277 and cool.sum() == 725
    # the 7514 pixels the networks read: the Br 12 window runs 34 pixels into the green chip's end gap
    kept = kept_pixel_index()
    assert hot[kept].sum() == 277 and cool[kept].sum() == 691
    # every masked pixel lies within its half width of a line centre
    d = np.min(np.abs(wl[:, None] - np.array(list(centres.values()))[None]), axis=1)
    assert d[hot].max() <= CORE_HALF_WIDTH and d[cool].max() <= WIDE_HALF_WIDTH
    assert not brackett_mask(wl, 7000.0)[(wl > 16811.2 + 3.3) & (wl < 16811.2 + 20)].any()
    assert brackett_mask(wl, 4000.0)[(wl > 16811.2 + 3.3) & (wl < 16811.2 + 19.8)].all()


def test_cool_and_hot_stars_differ_as_specified():
    wl = apogee_wavelength()
    m = brackett_mask(wl, np.array([3600.0, COOL_TEFF - 1, COOL_TEFF, 7500.0, np.nan]))
    assert m.shape == (5, wl.size)
    assert list(m.sum(axis=1)) == [725, 725, 277, 277, 725]  # NaN Teff: the wide (cool-star) windows
    np.testing.assert_array_equal(brackett_mask(wl, None), m[0])
    np.testing.assert_array_equal(brackett_mask(wl, 3600.0), m[0])
    assert (m[3] <= m[0]).all()  # the hot-star mask is inside the cool-star one
    # only Br 11-13 get wide windows: around Br 14 both masks are the same
    br14 = np.abs(wl - brackett_wavelength_vacuum(14)) < 25
    np.testing.assert_array_equal(m[0][br14], m[3][br14])
    assert BRACKETT_MASK_DEFAULT is False  # the shipped networks were trained without it


def test_bad_input():
    with pytest.raises(ValueError, match="finite 1-d"):
        brackett_mask(np.array([[16811.0]]))
    with pytest.raises(ValueError, match="finite 1-d"):
        brackett_mask(np.array([16811.0, np.nan]))
    with pytest.raises(ValueError, match="1-d array"):
        brackett_mask(apogee_wavelength(), np.full((2, 2), 5000.0))
