"""AtmosphereGrid on the real ATLAS9 grid: loading, holes, layer-by-layer interpolation."""
import numpy as np
import pytest

from stellarnn.atmospheres import Atmosphere, AtmosphereGrid, OutOfGridError
from stellarnn.atmospheres.grid import STATUS_MISSING, STATUS_RESAMPLED, STATUS_SHORT, STATUS_STANDARD


@pytest.fixture(scope="module")
def grid():
    return AtmosphereGrid.load_atlas9()


def test_load_counts_and_axes(grid):
    assert grid.axis_names == ("teff", "logg", "m_h")
    assert grid.shape == (41, 11, 19)
    assert grid.models.shape == (41, 11, 19, 72, 7)
    counts = {s: int((grid.status == s).sum()) for s in (STATUS_MISSING, STATUS_STANDARD, STATUS_SHORT,
                                                         STATUS_RESAMPLED)}
    assert counts == {STATUS_MISSING: 3900, STATUS_STANDARD: 4203, STATUS_SHORT: 1, STATUS_RESAMPLED: 465}
    assert not grid.present[:, :, list(grid.axes["m_h"]).index(-4.0)].any()  # the empty [Fe/H] = -4 plane
    assert any("7 model(s) truncated" in n for n in grid.notes)


def test_resampled_models_are_monotone_and_finite_where_covered(grid):
    m = grid.models[grid.status == STATUS_RESAMPLED]
    rhox = m[..., 0]
    finite = np.isfinite(rhox)
    assert finite.sum(axis=1).min() >= 55
    d = np.diff(np.where(finite, np.log10(rhox), np.nan), axis=1)
    assert np.nanmin(d) > 0


def test_exclude_policy_turns_off_scale_models_into_holes():
    g = AtmosphereGrid.load_atlas9(off_scale="exclude")
    assert int(g.present.sum()) == 4203 + 1
    with pytest.raises(ValueError, match="off_scale"):
        AtmosphereGrid.load_atlas9(off_scale="keep")


def test_node_matches_the_file(grid, real_file):
    import h5py

    with h5py.File(real_file("atlas9-grid")) as fh:
        raw = fh["atmosphere"][5, 4, 13]
    atm = grid.node((5, 4, 13))
    assert (atm.teff, atm.logg, atm.m_h) == (4750.0, 2.0, 0.0)
    np.testing.assert_array_equal(atm.temperature, raw[:, 1])
    np.testing.assert_array_equal(atm.n_e, raw[:, 3])
    with pytest.raises(OutOfGridError):
        grid.node((40, 0, 0))


def test_interpolation_reproduces_nodes_and_is_loglinear_between_them(grid):
    node = grid.node((5, 4, 13))
    at_node = grid.interpolate_linear(teff=4750.0, logg=2.0, m_h=0.0)
    np.testing.assert_allclose(at_node.temperature, node.temperature, rtol=1e-12)
    assert at_node.grid_distance == 0.0
    a, b = grid.node((5, 4, 9)), grid.node((5, 4, 10))  # [M/H] -0.5 and -0.3
    mid = grid.interpolate_linear(teff=4750.0, logg=2.0, m_h=-0.4)
    np.testing.assert_allclose(mid.p_gas, np.sqrt(a.p_gas * b.p_gas), rtol=1e-10)
    np.testing.assert_allclose(mid.vturb, 0.5 * (a.vturb + b.vturb))


def test_milestone_point_and_batch(grid):
    atm = grid.interpolate_linear(teff=4750.0, logg=2.3, m_h=-0.4)
    assert isinstance(atm, Atmosphere) and not atm.batched and atm.n_layers == 72
    assert np.all(np.diff(atm.rhox) > 0) and np.all(np.diff(atm.temperature[20:]) > 0)
    assert 2000 < atm.temperature[0] < 3500 and 7000 < atm.temperature[-1] < 11000
    np.testing.assert_allclose(atm.log_tau_ross, -6.875 + 0.125 * np.arange(72))
    teff = np.array([4750.0, 5000.0, 6000.0])
    batch = grid.interpolate_linear(teff=teff, logg=2.3, m_h=np.array([-0.4, 0.0, -1.0]))
    assert batch.batched and batch.rhox.shape == (3, 72) and len(batch) == 3
    np.testing.assert_allclose(batch[0].temperature, atm.temperature)
    assert batch.n_atoms.shape == (3, 72) and batch.density.shape == (3, 72)


def test_holes_and_outside_raise_or_fall_back(grid):
    with pytest.raises(OutOfGridError, match="missing model"):
        grid.interpolate_linear(12000.0, 0.5, 0.0)
    with pytest.raises(OutOfGridError, match="outside"):
        grid.interpolate_linear(3000.0, 2.0, 0.0)
    with pytest.raises(OutOfGridError):
        grid.interpolate_linear(5000.0, 2.0, -4.2)  # the empty [Fe/H] = -4 plane
    atm = grid.interpolate_linear(np.array([12000.0, 5000.0]), 0.5, 0.0, fallback="nearest_cell")
    assert atm.notes and "1 point(s) extrapolated" in atm.notes[0]
    assert atm.grid_distance[0] > 1.0 and atm.grid_distance[1] == 0.0
    assert np.isfinite(atm[0].temperature).all()


@pytest.mark.parametrize("bad", [dict(teff=np.nan, logg=2.0, m_h=0.0), dict(teff=[], logg=2.0, m_h=0.0),
                                 dict(teff=np.ones((2, 2)), logg=2.0, m_h=0.0),
                                 dict(teff=[5000.0, 5100.0], logg=[2.0, 2.1, 2.2], m_h=0.0)])
def test_bad_input_is_a_clear_error(grid, bad):
    with pytest.raises(ValueError):
        grid.interpolate_linear(**bad)


def test_read_kurucz_through_the_grid_class(real_file):
    atm = AtmosphereGrid.read_kurucz(real_file("kurucz-sun"))
    assert atm.teff == 5777.0 and atm.n_layers == 72
