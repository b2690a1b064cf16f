"""Tests for stellarnn.blase.line_finder on synthetic spectra built from known lines."""
import numpy as np
import pytest
import torch

from stellarnn.blase.line_finder import amplitudes_from_depths, find_lines, peak_profile_value, widths_from_fwhm
from stellarnn.blase.profiles import voigt, voigt_fwhm


def _spectrum(centres, amps, sigma=0.05, gamma=0.01):
    wl = np.arange(6000.0, 6010.0, 0.01)
    tau = np.zeros_like(wl)
    for c, a in zip(centres, amps):
        tau += a * voigt(torch.tensor(wl - c), torch.tensor(sigma, dtype=torch.float64),
                         torch.tensor(gamma, dtype=torch.float64)).numpy()
    return wl, np.exp(-tau)


def test_finds_known_lines_with_right_centres_and_amplitudes():
    centres = [6001.0, 6003.5, 6006.02, 6008.7]
    amps = [0.02, 0.01, 0.005, 0.03]
    wl, flux = _spectrum(centres, amps)
    g = find_lines(wl, flux, prominence=0.01, min_separation_pixels=4, profile="voigt", form="tau")
    assert len(g) == 4
    np.testing.assert_allclose(g.centres, centres, atol=0.006)
    # amplitude guesses from depth + measured width: within 25 % for isolated lines
    np.testing.assert_allclose(g.amplitudes, amps, rtol=0.25)
    assert np.all(g.sigmas > 0) and np.all(g.gammas > 0)


def test_prominence_threshold_and_separation():
    wl, flux = _spectrum([6001.0, 6005.0], [0.03, 0.002])
    strong_only = find_lines(wl, flux, prominence=0.05)
    both = find_lines(wl, flux, prominence=0.005)
    assert len(strong_only) == 1 and len(both) == 2
    # two dips 3 px apart merge into one with a 10 px minimum separation
    wl2, flux2 = _spectrum([6004.0, 6004.03], [0.01, 0.01], sigma=0.005, gamma=0.0005)
    assert len(find_lines(wl2, flux2, prominence=0.01, min_separation_pixels=1)) == 2
    assert len(find_lines(wl2, flux2, prominence=0.01, min_separation_pixels=10)) == 1


def test_widths_from_fwhm_inverts_olivero():
    fwhm = np.array([0.1, 0.3])
    s, g = widths_from_fwhm(fwhm, 0.3)
    back = voigt_fwhm(torch.tensor(s), torch.tensor(g)).numpy()
    np.testing.assert_allclose(back, fwhm, rtol=1e-4)


def test_amplitude_forms():
    v0 = peak_profile_value(np.array([0.05]), np.array([0.01]), "voigt")
    a_tau = amplitudes_from_depths(np.array([0.5]), v0, "tau")
    a_mul = amplitudes_from_depths(np.array([0.5]), v0, "multiplicative")
    assert np.exp(-a_tau * v0)[0] == pytest.approx(0.5)
    assert (1 - a_mul * v0)[0] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="form"):
        amplitudes_from_depths(np.array([0.5]), v0, "linear")


def test_flat_spectrum_gives_no_lines():
    g = find_lines(np.arange(100.0), np.ones(100))
    assert len(g) == 0 and g.centres.shape == (0,)


@pytest.mark.parametrize("wl,flux,msg", [
    (np.arange(10.0), np.r_[np.ones(9), np.nan], "NaN"),
    (np.arange(10.0), np.ones(9), "differ"),
    (np.arange(10.0)[::-1], np.ones(10), "increasing"),
    (np.zeros((2, 5)), np.ones((2, 5)), "1-D"),
    (np.array([]), np.array([]), "at least 3"),
])
def test_bad_input_raises(wl, flux, msg):
    with pytest.raises(ValueError, match=msg):
        find_lines(wl, flux)


def test_bad_settings_raise():
    wl, flux = _spectrum([6001.0], [0.02])
    with pytest.raises(ValueError, match="prominence"):
        find_lines(wl, flux, prominence=0)
    with pytest.raises(ValueError, match="profile"):
        find_lines(wl, flux, profile="lorentz")
