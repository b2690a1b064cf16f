"""ATLAS9 models resampled onto the 71-point tau_Ross scale."""
import h5py
import numpy as np
import pytest

from stellarnn.atmospheres.resample import QUANTITIES, TauSampledGrid, atlas9_tau_grid, resample_models


@pytest.fixture(scope="module")
def tau_grid():
    return atlas9_tau_grid()


def test_counts_and_shape(tau_grid):
    assert tau_grid.values.shape == (4208, 4, 71)
    assert QUANTITIES == ("log_rhox", "log_temperature", "log_p_gas", "log_n_e")
    assert "461 excluded" in tau_grid.notes[0]
    assert np.isfinite(tau_grid.values).all()
    cube, present = tau_grid.cube()
    assert cube.shape == (41, 11, 19, 4, 71) and present.sum() == 4208


def test_standard_models_barely_move(tau_grid, real_file):
    """Standard models already sit on the scale: resampling by the integrated tau changes them little."""
    with h5py.File(real_file("atlas9-grid")) as fh:
        raw = fh["atmosphere"][:]
    models = raw[tuple(tau_grid.node_index.T)][:, :71, :4]
    standard = np.isfinite(raw[tuple(tau_grid.node_index.T)][:, :, 0]).all(1)
    diff = np.abs(tau_grid.values[standard] - np.log10(models[standard]).transpose(0, 2, 1))
    assert np.median(diff[:, 1]) < 1e-4          # T
    assert np.percentile(diff.max(axis=2), 99, axis=0).max() < 0.03


def test_resample_models_excludes_short_models():
    rhox = np.logspace(-3, 2, 40)[None].repeat(2, 0)
    abross = np.full((2, 40), 1.0)
    abross[1] *= 1e3  # tau starts at 1e-0: does not reach log tau -6.875
    t = np.full((2, 40), 5000.0)
    out = resample_models(rhox, t, rhox * 1e4, rhox * 1e10, abross)
    assert out.shape == (2, 4, 71)
    assert np.isnan(out[1]).any()
    np.testing.assert_allclose(out[0, 1][np.isfinite(out[0, 1])], np.log10(5000.0))


def test_tau_sampled_grid_validation():
    axes = {"a": np.array([0.0, 1.0])}
    with pytest.raises(ValueError):
        TauSampledGrid(axes, np.array([[0], [1]]), np.full((2, 4, 71), np.nan))
    with pytest.raises(ValueError):
        TauSampledGrid(axes, np.array([[0], [1]]), np.ones((2, 71)))


def test_family_axis_keeps_models_and_splits(tau_grid):
    from stellarnn.atmospheres.grid import m_h_family
    from stellarnn.atmospheres.resample import add_family_axis
    from stellarnn.atmospheres.training import make_splits

    g4 = add_family_axis(tau_grid)
    assert g4.axis_names == ("teff", "logg", "m_h", "family")
    np.testing.assert_array_equal(g4.values, tau_grid.values)
    np.testing.assert_array_equal(g4.params[:, :3], tau_grid.params)
    np.testing.assert_array_equal(g4.params[:, 3], m_h_family(tau_grid.params[:, 2]))
    assert set(g4.params[g4.params[:, 2] == 0.1, 3]) == {1.0} and set(g4.params[g4.params[:, 2] == 0.2, 3]) == {0.0}
    a, b = make_splits(tau_grid), make_splits(g4)  # the held-out protocol does not change
    for name in ("train", "validation", "random", "teff_columns", "edge"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert add_family_axis(g4) is g4
