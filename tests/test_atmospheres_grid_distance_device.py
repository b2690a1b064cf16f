"""Tests of stellarnn.atmospheres.grid_distance_device: the out-of-grid distance on torch tensors, equal to the
CPU look-up (:class:`~stellarnn.atmospheres.grid_distance.NearestModelDistance`), holes of the lattice included.
The emulator's use of it: test_atmospheres_device."""
import numpy as np
import pytest
import torch

from stellarnn.atmospheres.grid_distance import NearestModelDistance
from stellarnn.atmospheres.grid_distance_device import DeviceLatticeDistance

#: node spacing of the lattice (Teff, log g, [M/H]), so that distances are in grid steps
STEPS = np.array([250.0, 0.5, 0.5])


@pytest.fixture(scope="module")
def lattice():
    """A 3-D lattice in grid steps with 30 % of its nodes missing (holes), and its CPU look-up."""
    rng = np.random.default_rng(3)
    axes = (np.arange(3500, 8001, 250.0), np.arange(0.0, 5.01, 0.5), np.arange(-2.0, 0.51, 0.5))
    nodes = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    nodes = nodes[rng.uniform(size=len(nodes)) > 0.3] / STEPS
    return nodes, NearestModelDistance(nodes)


def _points(n, seed):
    rng = np.random.default_rng(seed)  # inside and beyond the lattice on every axis
    pts = np.column_stack([rng.uniform(3000, 8600, n), rng.uniform(-0.6, 5.6, n), rng.uniform(-2.6, 1.0, n)])
    return pts / STEPS


def test_equal_to_the_cpu_look_up_at_nodes_holes_and_outside(lattice):
    nodes, near = lattice
    pts = _points(3000, seed=5)
    idx = [np.searchsorted(mid, pts[:, k]) for k, mid in enumerate(near._midpoints)]
    at_hole = ~near.present[sum(i * s for i, s in zip(idx, near._strides))]
    assert at_hole.sum() > 50 and (~at_hole).sum() > 50  # both branches of the look-up are exercised
    got = DeviceLatticeDistance(near, "cpu")(torch.from_numpy(pts))
    assert got.dtype == torch.float64
    np.testing.assert_array_equal(got.numpy(), near(pts))
    at_nodes = DeviceLatticeDistance(near, "cpu")(torch.from_numpy(nodes[:200]))
    np.testing.assert_array_equal(at_nodes.numpy(), 0.0)


def test_without_a_lattice_table_it_falls_back_to_the_tree(lattice):
    nodes, _ = lattice
    pts = _points(500, seed=2)
    tree_only = DeviceLatticeDistance(NearestModelDistance(nodes, max_lattice_points=0), "cpu")
    assert not tree_only.on_device
    np.testing.assert_array_equal(tree_only(torch.from_numpy(pts)).numpy(), NearestModelDistance(nodes)(pts))
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        tree_only(torch.zeros(4, 2, dtype=torch.float64))


@pytest.mark.parametrize("block", [7, 100000])
def test_brute_force_hole_search_equals_the_tree(lattice, block):
    _, near = lattice
    pts = torch.from_numpy(_points(2000, seed=11))
    tree = DeviceLatticeDistance(near, "cpu")
    brute = DeviceLatticeDistance(near, "cpu", hole_search="brute", hole_block=block)
    assert tree.hole_search == "tree" and brute.hole_search == "brute"
    np.testing.assert_array_equal(brute(pts).numpy(), tree(pts).numpy())
    np.testing.assert_array_equal(brute._brute(pts).numpy(), near.tree.query(pts.numpy())[0])
    with pytest.raises(ValueError, match="hole_search"):
        DeviceLatticeDistance(near, "cpu", hole_search="grid")
