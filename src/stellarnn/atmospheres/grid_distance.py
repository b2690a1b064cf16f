"""Distance to the nearest model of a grid: the out-of-grid indicator of every atmosphere.

The models of a model-atmosphere grid lie on a rectilinear lattice (the product of each axis's
node values), with holes where a model is missing or held out.  The nearest lattice point to a
query is found axis by axis (the squared distance is a sum of one term per axis, each minimised
by the nearest node value on its own axis).  When that lattice point is a model, it is also the
nearest model, since every model is a lattice point: the distance is then exact at the cost of one
binary search per axis.  Queries whose nearest lattice point is a hole go to a KD tree over the
models (exact too).  For a query inside a cell whose corners are all models, the first case
always holds.
"""
from __future__ import annotations

import numpy as np

#: lattices with more points than this use the KD tree alone (the presence table would be too large)
MAX_LATTICE_POINTS = 20_000_000


def _as_points(points, ndim: int) -> np.ndarray:
    """``points`` as a float (n, ndim) array (one point may be given as (ndim,))."""
    points = np.asarray(points, dtype=float)
    if points.ndim == 1:
        points = points[None]
    if points.ndim != 2 or points.shape[1] != ndim:
        raise ValueError(f"points must have shape (n, {ndim}), got {points.shape}")
    return points


class NearestModelDistance:
    """Exact Euclidean distance from points to the nearest of ``nodes``.

    Parameters
    ----------
    nodes : (n_models, d) array
        Model coordinates, in the units the distance is wanted in (e.g. axis values divided by
        the typical grid step of each axis).
    max_lattice_points : int
        Above this many lattice points the lattice shortcut is not built; every query uses the tree.
    """

    def __init__(self, nodes, max_lattice_points: int = MAX_LATTICE_POINTS):
        from scipy.spatial import cKDTree

        nodes = np.asarray(nodes, dtype=float)
        if nodes.ndim != 2 or len(nodes) == 0:
            raise ValueError(f"nodes must be a non-empty (n_models, d) array, got shape {nodes.shape}")
        if not np.isfinite(nodes).all():
            raise ValueError("node coordinates must be finite")
        self.ndim = nodes.shape[1]
        self.tree = cKDTree(nodes)
        self.axes = [np.unique(nodes[:, k]) for k in range(self.ndim)]
        shape = tuple(len(a) for a in self.axes)
        self.present = None
        if float(np.prod([float(s) for s in shape])) <= max_lattice_points:
            self._midpoints = [(a[1:] + a[:-1]) / 2 for a in self.axes]
            self._strides = np.array([int(np.prod(shape[k + 1:])) for k in range(self.ndim)], dtype=np.int64)
            index = np.stack([np.searchsorted(a, nodes[:, k]) for k, a in enumerate(self.axes)], 1)
            self.present = np.zeros(int(np.prod(shape)), dtype=bool)
            self.present[index @ self._strides] = True

    def __call__(self, points) -> np.ndarray:
        """Distances (n,) from ``points`` (n, d) to their nearest model (NaN for a point with a NaN coordinate)."""
        points = _as_points(points, self.ndim)
        finite = np.isfinite(points).all(axis=1)
        if not finite.all():  # NaN/inf coordinates have no nearest model: NaN distance
            dist = np.full(len(points), np.nan)
            if finite.any():
                dist[finite] = self(points[finite])
            return dist
        if self.present is None:
            return self.tree.query(points)[0]
        flat = np.zeros(len(points), dtype=np.int64)
        d2 = np.zeros(len(points))
        for k, (axis, mid) in enumerate(zip(self.axes, self._midpoints)):
            i = np.searchsorted(mid, points[:, k])  # index of the nearest node value on this axis
            flat += i * self._strides[k]
            d2 += (points[:, k] - axis[i]) ** 2
        dist = np.sqrt(d2)
        hole = ~self.present[flat]
        if hole.any():
            dist[hole] = self.tree.query(points[hole])[0]
        return dist

