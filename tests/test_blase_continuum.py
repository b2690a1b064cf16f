"""Tests for stellarnn.blase.continuum (upper-envelope spline continuum)."""
import numpy as np
import pytest

from stellarnn.blase.continuum import fit_continuum, normalise_continuum


def test_recovers_smooth_continuum_under_lines():
    wl = np.arange(8000.0, 8200.0, 0.01)
    cont = 2.0 - 0.004 * (wl - 8000) + 0.1 * np.sin((wl - 8000) / 60)
    rng = np.random.default_rng(1)
    lines = np.ones_like(wl)
    for c in rng.uniform(8001, 8199, 150):
        lines *= 1 - 0.5 * np.exp(-0.5 * ((wl - c) / 0.05) ** 2)
    fit = fit_continuum(wl, cont * lines, knot_spacing_angstrom=20)
    assert np.max(np.abs(fit / cont - 1)) < 3e-3
    norm = normalise_continuum(wl, cont * lines, knot_spacing_angstrom=20)
    assert np.median(norm) == pytest.approx(1.0, abs=2e-3)


def test_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        fit_continuum(np.arange(10.0), np.r_[np.ones(9), np.nan])
    with pytest.raises(ValueError, match="knot"):
        fit_continuum(np.arange(10.0), np.ones(10), knot_spacing_angstrom=0)
