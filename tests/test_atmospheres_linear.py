"""Multilinear interpolation with holes on synthetic grids (exact for multilinear functions)."""
import numpy as np
import pytest

from stellarnn.atmospheres.linear import MultilinearInterpolator, OutOfGridError


def _grid(ndim=3):
    axes = [np.array([0.0, 1.0, 3.0, 4.0]), np.array([-1.0, 0.0, 0.5]), np.array([10.0, 20.0, 30.0, 40.0, 50.0])][:ndim]
    mesh = np.meshgrid(*axes, indexing="ij")
    f = 2.0 + sum((k + 1) * m for k, m in enumerate(mesh))  # linear in every axis
    values = np.stack([f, 3 * f], axis=-1)
    return axes, values


def test_exact_for_linear_functions_and_batched():
    axes, values = _grid()
    interp = MultilinearInterpolator(axes, values)
    rng = np.random.default_rng(1)
    pts = np.stack([rng.uniform(a[0], a[-1], 100) for a in axes], axis=1)
    out, info = interp(pts)
    expected = 2.0 + pts @ np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(out[:, 0], expected, rtol=1e-12)
    np.testing.assert_allclose(out[:, 1], 3 * expected, rtol=1e-12)
    assert info.in_complete_cell.all() and not info.used_fallback.any()


def test_holes_raise_and_fallback_extrapolates_exactly():
    axes, values = _grid()
    values = values.copy()
    values[1, 1, 2] = np.nan
    interp = MultilinearInterpolator(axes, values)
    assert not interp.present[1, 1, 2]
    with pytest.raises(OutOfGridError, match="missing model"):
        interp(np.array([[0.5, -0.5, 25.0]]))
    # a query exactly on an existing node next to the hole needs no missing corner
    on_node, _ = interp(np.array([[1.0, 0.0, 20.0]]))
    assert on_node[0, 0] == pytest.approx(2 + 1 + 0 + 60)
    out, info = interp(np.array([[0.5, -0.5, 25.0], [5.0, 0.0, 20.0]]), fallback="nearest_cell")
    assert info.used_fallback.all()
    np.testing.assert_allclose(out[:, 0], 2.0 + np.array([0.5 - 1 + 75, 5 + 0 + 60]), rtol=1e-12)
    assert info.grid_distance[1] == pytest.approx(1.0)  # one axis-0 step (median spacing 1) from (4, 0, 20)


def test_nan_layers_propagate_only_from_weighted_corners():
    axes, values = _grid(2)
    vals = np.repeat(values[..., :1], 3, axis=-1)
    vals[0, 0, 2] = np.nan  # a present model with a missing deep layer
    interp = MultilinearInterpolator(axes, vals)
    out, _ = interp(np.array([[0.5, -0.5], [1.0, 0.0]]))
    assert np.isnan(out[0, 2]) and np.isfinite(out[0, :2]).all()
    assert np.isfinite(out[1]).all()


def test_five_dimensional_grid():
    axes = [np.linspace(0, 1, 3)] * 5
    mesh = np.meshgrid(*axes, indexing="ij")
    f = sum(m for m in mesh)[..., None]
    out, _ = MultilinearInterpolator(axes, f)(np.full((1, 5), 0.3))
    assert out[0, 0] == pytest.approx(1.5)


def test_bad_input():
    axes, values = _grid()
    interp = MultilinearInterpolator(axes, values)
    with pytest.raises(ValueError, match="NaN"):
        interp(np.array([[np.nan, 0.0, 20.0]]))
    with pytest.raises(ValueError, match="shape"):
        interp(np.ones((2, 2)))
    with pytest.raises(ValueError, match="no points"):
        interp(np.empty((0, 3)))
    with pytest.raises(ValueError, match="fallback"):
        interp(np.array([[1.0, 0.0, 20.0]]), fallback="nearest")
    with pytest.raises(ValueError, match="increasing"):
        MultilinearInterpolator([np.array([0.0, 0.0, 1.0])], np.ones((3, 1)))
    with pytest.raises(ValueError, match="no present"):
        MultilinearInterpolator([np.array([0.0, 1.0])], np.full((2, 1), np.nan))
