"""The lattice look-up of :class:`~stellarnn.atmospheres.grid_distance.NearestModelDistance` in torch, on any device.

Same algorithm and the same float64 arithmetic as the numpy look-up (per axis: the nearest node value
by a binary search over the midpoints between node values, then the squared distance summed axis by
axis and its correctly rounded square root), so the distances are identical.  Queries whose nearest lattice point
is a hole (a missing or held-out model; about a fifth of a uniform box over the ATLAS9 axes) are answered, on a
GPU, by an exact brute-force search over all models on the device (squared differences summed axis by axis in
the same order as the KD tree, the minimum, then its square root), in blocks of ``hole_block`` queries; on the
CPU by the KD tree of the numpy object, as there.  A grid whose lattice is too large for the presence table
(``NearestModelDistance.present is None``) is answered by the CPU object entirely.
"""
from __future__ import annotations

import numpy as np
import torch

from .grid_distance import NearestModelDistance


class DeviceLatticeDistance:
    """Distance to the nearest model for float64 torch points on ``device``.

    Parameters
    ----------
    nearest : NearestModelDistance
        The CPU object (its axes, presence table and KD tree are used).
    device : str or torch.device
        Where the look-up runs (the points passed in are moved there).
    hole_search : {"auto", "brute", "tree"}
        Queries nearest a hole: ``"brute"`` (all models, on the device), ``"tree"`` (the CPU KD tree);
        ``"auto"``: brute on a GPU, tree on the CPU.
    hole_block : int
        Hole queries per block of the brute-force search (its memory: ``hole_block x n_models`` float64).
    """

    def __init__(self, nearest: NearestModelDistance, device, hole_search: str = "auto", hole_block: int = 16384):
        if hole_search not in ("auto", "brute", "tree"):
            raise ValueError(f"hole_search must be 'auto', 'brute' or 'tree', got {hole_search!r}")
        self.nearest = nearest
        self.device = torch.device(device)
        self.hole_search = hole_search if hole_search != "auto" else ("tree" if self.device.type == "cpu" else "brute")
        self.hole_block = max(1, int(hole_block))
        self.on_device = nearest.present is not None
        if self.hole_search == "brute":
            nodes = np.asarray(nearest.tree.data, dtype=np.float64)
            self._nodes = [torch.as_tensor(np.ascontiguousarray(nodes[:, k]), device=self.device)
                           for k in range(nodes.shape[1])]
        if self.on_device:
            self._axes = [torch.as_tensor(a, dtype=torch.float64, device=self.device) for a in nearest.axes]
            self._midpoints = [torch.as_tensor(m, dtype=torch.float64, device=self.device)
                               for m in nearest._midpoints]
            self._strides = [int(s) for s in nearest._strides]
            self._present = torch.as_tensor(nearest.present, device=self.device)

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        """Distances (n,) float64 on the device from finite ``points`` (n, d) in the nodes' units."""
        points = torch.as_tensor(points).to(self.device, torch.float64)
        if points.ndim != 2 or points.shape[1] != self.nearest.ndim:
            raise ValueError(f"points must have shape (n, {self.nearest.ndim}), got {tuple(points.shape)}")
        if not self.on_device:
            return torch.from_numpy(self.nearest(points.cpu().numpy())).to(self.device)
        n = points.shape[0]
        flat = torch.zeros(n, dtype=torch.int64, device=self.device)
        d2 = torch.zeros(n, dtype=torch.float64, device=self.device)
        for k, (axis, mid) in enumerate(zip(self._axes, self._midpoints)):
            column = points[:, k].contiguous()
            i = torch.searchsorted(mid, column)  # left side, as numpy's default: the nearest node value
            flat += i * self._strides[k]
            d2 += (column - axis[i]) ** 2
        if self.device.type == "cpu":  # torch's CPU sqrt (MKL VML) may be 1 ulp off; numpy's is correctly rounded
            dist = torch.from_numpy(np.sqrt(d2.numpy()))
        else:  # CUDA's double-precision sqrt is IEEE round-to-nearest (CUDA C++ Programming Guide, maths appendix)
            dist = torch.sqrt(d2)
        hole = ~self._present[flat]
        if bool(hole.any()):
            where = torch.nonzero(hole).squeeze(1)
            if self.hole_search == "brute":
                dist[where] = self._brute(points[where])
            else:
                tree = self.nearest.tree.query(points[where].cpu().numpy())[0]
                dist[where] = torch.from_numpy(np.asarray(tree, dtype=np.float64)).to(self.device)
        return dist

    def _brute(self, points: torch.Tensor) -> torch.Tensor:
        """Exact nearest-model distances (m,) by comparing with every model, ``hole_block`` queries at a time."""
        out = torch.empty(points.shape[0], dtype=torch.float64, device=self.device)
        for s in range(0, points.shape[0], self.hole_block):
            block = points[s:s + self.hole_block]
            d2 = None
            for k, node in enumerate(self._nodes):
                term = (block[:, k, None] - node[None, :]) ** 2
                d2 = term if d2 is None else d2.add_(term)
            best = d2.amin(dim=1)
            if self.device.type == "cpu":  # correctly rounded sqrt (see __call__)
                out[s:s + len(block)] = torch.from_numpy(np.sqrt(best.numpy()))
            else:
                out[s:s + len(block)] = torch.sqrt(best)
        return out

