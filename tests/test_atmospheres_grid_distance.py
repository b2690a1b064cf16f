"""Nearest-model distance: the lattice look-up agrees with a KD tree everywhere, holes and outside included."""
import numpy as np
import pytest
from scipy.spatial import cKDTree

from stellarnn.atmospheres.grid_distance import NearestModelDistance


def _lattice_with_holes(axes, hole_fraction, seed):
    rng = np.random.default_rng(seed)
    pts = np.stack([g.ravel() for g in np.meshgrid(*axes, indexing="ij")], 1)
    keep = rng.uniform(size=len(pts)) > hole_fraction
    return pts[keep]


@pytest.mark.parametrize("max_lattice", [10**7, 1])  # lattice shortcut, and the KD tree alone
def test_matches_kd_tree_inside_outside_and_near_holes(max_lattice):
    axes = [np.array([0.0, 1.0, 2.0, 3.0, 5.0, 7.0, 11.0]), np.arange(6) * 0.5, np.array([-3.0, -1.0, 0.0, 0.3, 1.0])]
    nodes = _lattice_with_holes(axes, 0.4, seed=1)
    dist = NearestModelDistance(nodes, max_lattice_points=max_lattice)
    assert (dist.present is None) == (max_lattice == 1)
    rng = np.random.default_rng(2)
    lo = np.array([a[0] for a in axes]) - 3
    hi = np.array([a[-1] for a in axes]) + 3
    pts = rng.uniform(lo, hi, size=(20000, 3))
    pts = np.concatenate([pts, nodes, nodes + 1e-9])  # and exactly on models
    expected = cKDTree(nodes).query(pts)[0]
    np.testing.assert_allclose(dist(pts), expected, rtol=1e-12, atol=1e-12)
    assert np.all(dist(nodes) == 0)


def test_holes_are_not_taken_as_models():
    nodes = np.array([[0.0, 0.0], [0.0, 2.0], [2.0, 0.0]])  # the lattice point (2, 2) is a hole
    dist = NearestModelDistance(nodes)
    np.testing.assert_allclose(dist([[2.0, 2.0], [1.9, 1.8]]), [2.0, np.hypot(1.9 - 2.0, 1.8)])


def test_five_axes_and_single_node_axes():
    rng = np.random.default_rng(3)
    axes = [np.arange(7.0), np.arange(4.0), np.array([0.0]), np.arange(3.0) * 2, np.arange(5.0)]
    nodes = _lattice_with_holes(axes, 0.7, seed=4)
    pts = rng.normal(2.0, 3.0, size=(5000, 5))
    np.testing.assert_allclose(NearestModelDistance(nodes)(pts), cKDTree(nodes).query(pts)[0], rtol=1e-12)


def test_non_finite_points_get_nan_not_an_error():
    nodes = np.array([[0.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    for limit in (10**7, 1):
        d = NearestModelDistance(nodes, max_lattice_points=limit)([[np.nan, 0.0], [2.0, 2.0], [np.inf, 1.0]])
        assert np.isnan(d[0]) and np.isnan(d[2]) and d[1] == 2.0


def test_refuses_bad_input():
    with pytest.raises(ValueError, match="non-empty"):
        NearestModelDistance(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="finite"):
        NearestModelDistance(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        NearestModelDistance(np.zeros((3, 2)))(np.zeros((4, 3)))

