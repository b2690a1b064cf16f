"""Multilinear interpolation on a regular (rectilinear) grid with holes.

The baseline of iNNterpol and the layer-by-layer interpolator of :class:`AtmosphereGrid`.
Axis-agnostic: any number of axes, any number of values per node.

Holes: a node is either *present* or *missing*.  A query needs every corner of its cell
that carries a non-zero weight; if one is missing the query is **out of grid** and either
raises :class:`OutOfGridError` or (``fallback="nearest_cell"``) is evaluated with the
multilinear polynomial of the *nearest complete cell* (the cell, all of whose corners
exist, closest to the query in scaled axis units).  That is a linear extrapolation from
the nearest complete cell; its weights may leave [0, 1].  Queries outside an axis range
are handled in the same way.  Every result comes with the distance (scaled units, one
typical grid step = 1) to the nearest present node, the out-of-grid indicator.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from .grid_distance import NearestModelDistance


class OutOfGridError(ValueError):
    """A requested point lies outside the grid or in a cell with a missing model."""


@dataclass
class InterpolationInfo:
    """What happened to each query.

    Attributes
    ----------
    in_complete_cell : (n,) bool
        True when the query lies inside the grid in a cell whose needed corners all exist.
    used_fallback : (n,) bool
        True when the nearest-complete-cell fallback was used (extrapolation).
    grid_distance : (n,) float
        Distance to the nearest present grid node in scaled axis units.
    """

    in_complete_cell: np.ndarray
    used_fallback: np.ndarray
    grid_distance: np.ndarray


def typical_steps(axes: list[np.ndarray]) -> np.ndarray:
    """Median node spacing of each axis (the unit of the scaled axes)."""
    return np.array([float(np.median(np.diff(a))) if len(a) > 1 else 1.0 for a in axes])


class MultilinearInterpolator:
    """Multilinear interpolation of node values on a rectilinear grid with missing nodes.

    Parameters
    ----------
    axes : list of 1D arrays
        Strictly increasing node coordinates of each axis (d axes).
    values : array ``(*shape, F)``
        Values at the nodes (shape = lengths of the axes); may contain NaN in present nodes
        (propagated to the result, e.g. deep layers of shorter models).
    present : bool array ``(*shape)``, optional
        Which nodes exist (default: nodes whose values are not all NaN).
    chunk : int
        Queries handled per vectorised block (memory: chunk * 2**d * F floats).
    """

    def __init__(self, axes, values, present=None, chunk: int = 4096):
        self.axes = [np.asarray(a, dtype=float) for a in axes]
        for i, a in enumerate(self.axes):
            if a.ndim != 1 or len(a) < 2 or not np.all(np.diff(a) > 0):
                raise ValueError(f"axis {i} must be 1D, strictly increasing, with at least 2 nodes")
        self.shape = tuple(len(a) for a in self.axes)
        values = np.asarray(values, dtype=float)
        if values.shape[:len(self.shape)] != self.shape:
            raise ValueError(f"values shape {values.shape} does not start with the grid shape {self.shape}")
        self.n_features = int(np.prod(values.shape[len(self.shape):], dtype=int))
        self.feature_shape = values.shape[len(self.shape):]
        self.values = values.reshape(int(np.prod(self.shape)), self.n_features)
        if present is None:
            present = ~np.isnan(self.values).all(axis=1).reshape(self.shape)
        self.present = np.asarray(present, dtype=bool).reshape(self.shape)
        if not self.present.any():
            raise ValueError("the grid has no present node")
        self.ndim = len(self.shape)
        self.chunk = int(chunk)
        self.steps = typical_steps(self.axes)
        self._offsets = np.array(list(itertools.product((0, 1), repeat=self.ndim)), dtype=int)  # (2^d, d)
        self._strides = np.array([int(np.prod(self.shape[i + 1:])) for i in range(self.ndim)], dtype=int)
        # complete cells: every corner present
        cells = np.ones(tuple(s - 1 for s in self.shape), dtype=bool)
        for off in self._offsets:
            sl = tuple(slice(o, o + s - 1) for o, s in zip(off, self.shape))
            cells &= self.present[sl]
        self.complete_cells = cells
        self._cell_lo = np.argwhere(cells)  # (n_cells, d) lower-corner indices
        nodes = np.argwhere(self.present)
        coords = np.stack([self.axes[k][nodes[:, k]] for k in range(self.ndim)], axis=1)
        self._node_distance = NearestModelDistance(coords / self.steps)

    # ------------------------------------------------------------------
    def _locate(self, points):
        lo = np.empty(points.shape, dtype=int)
        frac = np.empty(points.shape)
        inside = np.ones(len(points), dtype=bool)
        for k, a in enumerate(self.axes):
            x = points[:, k]
            i = np.clip(np.searchsorted(a, x, side="right") - 1, 0, len(a) - 2)
            lo[:, k] = i
            frac[:, k] = (x - a[i]) / (a[i + 1] - a[i])
            inside &= (x >= a[0]) & (x <= a[-1])
        return lo, frac, inside

    def _corner_weights(self, frac):
        # (n, 2^d): prod_k (frac_k if offset_k else 1 - frac_k)
        f = frac[:, None, :]
        w = np.where(self._offsets[None, :, :] == 1, f, 1.0 - f)
        return w.prod(axis=-1)

    def _needed_corners_present(self, lo, weights):
        idx = (lo[:, None, :] + self._offsets[None]) @ self._strides  # (n, 2^d)
        present = self.present.reshape(-1)[idx]
        return (present | (weights == 0)).all(axis=1), idx

    def _nearest_complete_cell(self, points):
        if len(self._cell_lo) == 0:
            raise OutOfGridError("the grid has no complete cell to fall back on")
        lo_c = np.stack([self.axes[k][self._cell_lo[:, k]] for k in range(self.ndim)], 1) / self.steps
        hi_c = np.stack([self.axes[k][self._cell_lo[:, k] + 1] for k in range(self.ndim)], 1) / self.steps
        p = points / self.steps
        best = np.empty(len(points), dtype=int)
        for s in range(0, len(points), 512):
            q = p[s:s + 512, None, :]
            d2 = ((np.clip(q, lo_c[None], hi_c[None]) - q) ** 2).sum(-1)
            best[s:s + 512] = d2.argmin(axis=1)
        return self._cell_lo[best]

    def grid_distance(self, points) -> np.ndarray:
        """Distance from each point (n, d) to the nearest present node, in scaled axis units."""
        points = self._check_points(points)
        return self._node_distance(points / self.steps)

    def _check_points(self, points):
        points = np.asarray(points, dtype=float)
        if points.ndim == 1 and self.ndim > 1 and points.shape[0] == self.ndim:
            points = points[None]
        if points.ndim != 2 or points.shape[1] != self.ndim:
            raise ValueError(f"points must have shape (n, {self.ndim}), got {points.shape}")
        if len(points) == 0:
            raise ValueError("no points to interpolate")
        if not np.isfinite(points).all():
            raise ValueError("points contain NaN or infinite coordinates")
        return points

    def __call__(self, points, fallback: str | None = None):
        """Interpolate at ``points`` (n, d).

        Parameters
        ----------
        fallback : {None, "nearest_cell"}
            None: raise :class:`OutOfGridError` for any query outside the grid or in an
            incomplete cell.  "nearest_cell": evaluate those with the nearest complete cell.

        Returns
        -------
        values : (n, *feature_shape)
        info : InterpolationInfo
        """
        if fallback not in (None, "nearest_cell"):
            raise ValueError(f"fallback must be None or 'nearest_cell', got {fallback!r}")
        points = self._check_points(points)
        n = len(points)
        lo, frac, inside = self._locate(points)
        weights = self._corner_weights(frac)
        ok, idx = self._needed_corners_present(lo, weights)
        good = ok & inside
        used_fallback = ~good
        if used_fallback.any():
            if fallback is None:
                bad = np.flatnonzero(~good)
                examples = ", ".join(str(tuple(np.round(points[i], 4))) for i in bad[:3])
                why = "outside the axis ranges" if not inside[bad[0]] else "in a grid cell with a missing model"
                raise OutOfGridError(
                    f"{len(bad)} of {n} points are out of grid (e.g. {examples} is {why}); "
                    "axis ranges: " + ", ".join(f"[{a[0]:g}, {a[-1]:g}]" for a in self.axes)
                    + ". Pass fallback='nearest_cell' to extrapolate from the nearest complete cell.")
            b = np.flatnonzero(used_fallback)
            lo_b = self._nearest_complete_cell(points[b])
            a_lo = np.stack([self.axes[k][lo_b[:, k]] for k in range(self.ndim)], 1)
            a_hi = np.stack([self.axes[k][lo_b[:, k] + 1] for k in range(self.ndim)], 1)
            frac_b = (points[b] - a_lo) / (a_hi - a_lo)
            lo[b] = lo_b
            weights[b] = self._corner_weights(frac_b)
            idx[b] = (lo_b[:, None, :] + self._offsets[None]) @ self._strides
        out = np.empty((n, self.n_features))
        for s in range(0, n, self.chunk):
            sl = slice(s, s + self.chunk)
            w = weights[sl]
            corner_values = self.values[idx[sl]]  # (m, 2^d, F)
            # a zero weight must not turn a NaN of an unused corner into NaN
            contrib = np.where(w[..., None] == 0, 0.0, corner_values * w[..., None])
            out[sl] = contrib.sum(axis=1)
        info = InterpolationInfo(in_complete_cell=good, used_fallback=used_fallback,
                                 grid_distance=self._node_distance(points / self.steps))
        return out.reshape((n,) + self.feature_shape), info
