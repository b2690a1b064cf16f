"""Tests for stellarnn.blase.telluric_bands: the Earth-atmosphere bands telluric lines are confined to."""
import numpy as np
import pytest

from stellarnn.blase.telluric_bands import TELLURIC_BANDS, assign_bands, band_edges


def test_documented_bands_and_assignment():
    names = {b.name: (b.low_angstrom, b.high_angstrom, b.species) for b in TELLURIC_BANDS}
    assert names["O2 A"] == (7590.0, 7700.0, "O2") and names["O2 B"] == (6860.0, 6950.0, "O2")
    for band in TELLURIC_BANDS:
        assert band.low_angstrom < band.high_angstrom
    index, species = assign_bands([7650.0, 8664.5, 8690.0, 9300.0, 6300.0, 16500.0])
    assert list(species) == ["O2", "", "", "H2O", "O2", "CH4"]
    assert index[1] == -1 and index[2] == -1  # Ca II 8664 and the 8690 Å line of issue 21: no tellurics


def test_vacuum_edges_are_shifted():
    air = band_edges()
    vac = band_edges(medium="vacuum")
    o2a_air = next(e for e in air if e[3] == "O2 A")
    o2a_vac = next(e for e in vac if e[3] == "O2 A")
    assert o2a_vac[0] - o2a_air[0] == pytest.approx(2.09, abs=0.03)  # n − 1 ≈ 2.75e-4 at 7600 Å
    index, _ = assign_bands(np.array([7591.0]), medium="vacuum")
    assert index[0] == -1  # 7591 Å vacuum is 7588.9 Å air: outside the A band
