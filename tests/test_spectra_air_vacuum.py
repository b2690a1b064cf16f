"""Tests of stellarnn.spectra.air_vacuum: the package's one air/vacuum convention (VALD's)."""
import numpy as np
import pytest

from stellarnn.spectra.air_vacuum import air_to_vacuum, vacuum_to_air


def test_known_lines():
    # H I Paschen 14: 8600.75 A vacuum, 8598.39 A air; Na D2: 5889.951 A air, 5891.583 A vacuum (NIST ASD)
    assert vacuum_to_air(8600.75) == pytest.approx(8598.39, abs=0.01)
    assert air_to_vacuum(5889.951) == pytest.approx(5891.583, abs=0.002)


def test_round_trip_and_the_ultraviolet_edge():
    wl = np.geomspace(2001.0, 25_000.0, 500)
    np.testing.assert_allclose(air_to_vacuum(vacuum_to_air(wl)), wl, rtol=0, atol=1e-8)
    n_minus_1 = air_to_vacuum(wl) / wl - 1
    assert np.all(np.diff(n_minus_1) < 0) and 2.7e-4 < n_minus_1[-1] < n_minus_1[0] < 3.3e-4  # normal dispersion
    np.testing.assert_array_equal(air_to_vacuum([1500.0, 1999.0]), [1500.0, 1999.0])  # vacuum below 2000 A
    np.testing.assert_array_equal(vacuum_to_air([1500.0]), [1500.0])


def test_the_line_lists_use_the_same_conversion():
    from stellarnn.synthesis import linelists

    assert linelists.air_to_vacuum is air_to_vacuum and linelists.vacuum_to_air is vacuum_to_air
