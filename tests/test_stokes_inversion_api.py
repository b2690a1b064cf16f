"""Tests of stellarnn.stokes.inversion_api (stokes.invert, StokesInversion): files, SPMap and arrays -> ME parameters
in a QTable with units."""
from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
import torch

import stellarnn
from stellarnn.stokes.hinode_io import SPMap, write_sp_level1
from stellarnn.stokes.inversion_api import StokesInversion, UnsupportedStokesInputError
from stellarnn.stokes.milne_eddington import PARAMETER_NAMES, MilneEddington, hinode_sp_wavelengths

#: known ME parameters (B G, gamma deg, chi deg, v_los km/s, Doppler width mÅ, eta0, damping, S0, S1)
TRUE = np.array([[1200.0, 60.0, 30.0, 1.0, 30.0, 10.0, 0.3, 0.3, 0.7],
                 [400.0, 120.0, 150.0, -2.0, 25.0, 5.0, 0.2, 0.2, 0.8]])


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def profiles():
    return MilneEddington().synthesize(torch.from_numpy(TRUE)).numpy()


def test_lm_recovers_the_synthesis_parameters(profiles):
    result = stellarnn.stokes.invert((hinode_sp_wavelengths(), profiles), method="lm")
    assert isinstance(result, StokesInversion) and len(result) == 2
    table = result.to_table()
    assert table["B"].unit == u.G and table["gamma"].unit == u.deg and table["chi"].unit == u.deg
    assert table["v_los"].unit == u.km / u.s and table["doppler_width"].unit == u.mAA
    assert table["B"].to_value(u.G) == pytest.approx(TRUE[:, 0], rel=1e-3)
    assert table["gamma"].to_value(u.deg) == pytest.approx(TRUE[:, 1], abs=0.1)
    assert table["chi"].to_value(u.deg) == pytest.approx(TRUE[:, 2], abs=0.1)
    assert table["v_los"].to_value(u.km / u.s) == pytest.approx(TRUE[:, 3], abs=1e-3)
    assert np.all(table["chi2_reduced"] < 1e-6)
    assert table["gamma"].info.description == "inclination to the line of sight"


def test_cnn_gives_the_parameters_with_uncertainties(profiles):
    result = stellarnn.stokes.invert((hinode_sp_wavelengths(), profiles[0]), method="cnn")
    table = result.to_table()
    assert len(table) == 1 and result.shape == ()
    assert table["B"][0].to_value(u.G) == pytest.approx(TRUE[0, 0], rel=0.05)
    assert table["v_los"][0].to_value(u.km / u.s) == pytest.approx(TRUE[0, 3], abs=0.2)
    assert 0 < table["e_B"][0].to_value(u.G) < 100


def test_a_raster_gives_maps_and_skips_non_finite_profiles(profiles):
    stokes = np.stack([profiles, profiles[::-1]])  # (2, 2, 4, 112) raster
    stokes[1, 1, 0, 5] = np.nan
    result = stellarnn.stokes.invert(SPMap(stokes, hinode_sp_wavelengths(), 1.0), method="cnn")
    maps = result.maps()
    assert maps["B"].shape == (2, 2) and np.isnan(maps["B"][1, 1])
    assert maps["B"][0, 0] == pytest.approx(TRUE[0, 0], rel=0.05)
    assert maps["B"][1, 0] == pytest.approx(TRUE[1, 0], rel=0.1)
    table = result.to_table()
    assert list(table["x"]) == [0, 0, 1, 1] and list(table["y"]) == [0, 1, 0, 1]
    assert "1 profiles with non-finite values skipped" in result.notes[0]


def test_a_level1_file_path_is_read_and_inverted(profiles, tmp_path):
    path = write_sp_level1(tmp_path / "slit.fits", profiles * 4000.0)  # counts; continuum 4000 * S0+S1
    result = stellarnn.stokes.invert(path, method="cnn", continuum_counts=4000.0)
    assert result.shape == (1, 2)
    assert result.to_table()["B"].to_value(u.G) == pytest.approx(TRUE[:, 0], rel=0.1)


def test_plots_draw_into_the_given_axes(profiles):
    import matplotlib.pyplot as plt

    result = stellarnn.stokes.invert((hinode_sp_wavelengths(), profiles), method="lm", n_starts=2)
    fig, ax = plt.subplots()
    assert result.plot("B", ax=ax) is ax
    assert ax.get_ylabel() == "B [G]"
    figure = result.plot_profile(0)
    fitted = figure.axes[0].get_lines()[1].get_ydata()
    assert fitted == pytest.approx(profiles[0, 0], abs=1e-6)
    plt.close(fig)
    plt.close(figure)
    with pytest.raises(ValueError, match="raster"):
        result.maps()


@pytest.mark.parametrize("bad", [[1.0, 2.0], np.zeros((4, 112)), ("wavelengths", "stokes"), 3.5])
def test_unknown_inputs_raise_type_error(bad):
    assert issubclass(UnsupportedStokesInputError, TypeError)
    with pytest.raises(UnsupportedStokesInputError, match="cannot invert a|two numeric arrays"):
        stellarnn.stokes.invert(bad)


def test_bad_shapes_and_method_raise_value_error(profiles):
    with pytest.raises(ValueError, match="shape"):
        stellarnn.stokes.invert((hinode_sp_wavelengths()[:100], profiles))
    with pytest.raises(ValueError, match="method"):
        stellarnn.stokes.invert((hinode_sp_wavelengths(), profiles), method="svm")
    assert set(PARAMETER_NAMES) <= set(stellarnn.stokes.invert((hinode_sp_wavelengths(), profiles[:1]),
                                                               method="cnn").parameters)
