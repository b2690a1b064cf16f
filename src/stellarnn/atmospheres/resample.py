"""Grid models resampled onto the iNNterpol depth scale: the emulator's training data.

Every model of a grid is put on log tau_Ross = -6.875 ... +1.875 (step 0.125, 71 points;
Westendorp Plaza et al. 2023) by integrating its own ABROSS over RHOX
(:func:`stellarnn.atmospheres.tau.rosseland_optical_depth`) and interpolating log10 RHOX,
log10 T, log10 P_gas and log10 n_e linearly in log tau.  A model whose own tau range does not
cover the whole scale (the 64-layer ATLAS9 models start near log tau = -5.7) is *excluded*:
nothing is extrapolated beyond :data:`EDGE_TOLERANCE_DEX` (0.05 dex) at either end.  For ATLAS9 the raw decks are used (not the grid's repaired layer
scale), after cutting the spliced models where RHOX stops increasing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .tau import INNTERPOL_LOG_TAU, cut_spliced_models, resample_log_tau, rosseland_optical_depth

#: the emulated quantities, all log10 of cgs values, in this order
QUANTITIES = ("log_rhox", "log_temperature", "log_p_gas", "log_n_e")


@dataclass
class TauSampledGrid:
    """Models of a grid on one log tau_Ross scale.

    Attributes
    ----------
    axes : dict name -> 1D array
        The grid axes (e.g. teff, logg, m_h; or teff, logg, m_h, c_m, o_m).
    node_index : int array (n, d)
        Grid indices of each model.
    values : float array (n, 4, K)
        log10 of RHOX [g cm^-2], T [K], P_gas [dyn cm^-2], n_e [cm^-3] (:data:`QUANTITIES`).
    log_tau : (K,)
    notes : list of str
        What was excluded and why.
    """

    axes: dict
    node_index: np.ndarray
    values: np.ndarray
    log_tau: np.ndarray = field(default_factory=lambda: INNTERPOL_LOG_TAU.copy())
    notes: list = field(default_factory=list)

    def __post_init__(self):
        self.node_index = np.asarray(self.node_index, dtype=int)
        self.values = np.asarray(self.values, dtype=float)
        if self.values.ndim != 3 or self.values.shape[0] != len(self.node_index):
            raise ValueError(f"values must be (n_models, n_quantities, n_depth), got {self.values.shape}")
        if self.node_index.shape[1] != len(self.axes):
            raise ValueError("node_index must have one column per axis")
        if not np.isfinite(self.values).all():
            raise ValueError("a TauSampledGrid holds complete, finite models only")

    @property
    def axis_names(self) -> tuple:
        return tuple(self.axes)

    @property
    def params(self) -> np.ndarray:
        """Axis values of each model, (n, d)."""
        return np.stack([np.asarray(self.axes[k])[self.node_index[:, i]] for i, k in enumerate(self.axes)], axis=1)

    def __len__(self) -> int:
        return len(self.node_index)

    def subset(self, mask) -> "TauSampledGrid":
        return TauSampledGrid(self.axes, self.node_index[mask], self.values[mask], self.log_tau, list(self.notes))

    def cube(self) -> tuple[np.ndarray, np.ndarray]:
        """Values on the full grid: ``(*shape, 4, K)`` with NaN where no model, and the presence mask."""
        shape = tuple(len(a) for a in self.axes.values())
        out = np.full(shape + self.values.shape[1:], np.nan)
        present = np.zeros(shape, dtype=bool)
        idx = tuple(self.node_index.T)
        out[idx] = self.values
        present[idx] = True
        return out, present


#: a model may miss a target point by this much at its top/bottom (integration error; 0.4 of a step)
EDGE_TOLERANCE_DEX = 0.05


def resample_models(rhox, temperature, p_gas, n_e, abross, log_tau=INNTERPOL_LOG_TAU,
                    edge_tolerance_dex: float = EDGE_TOLERANCE_DEX):
    """Resample models (n, L) onto ``log_tau``; NaN layers at the end of a model are ignored.

    Points within ``edge_tolerance_dex`` outside a model's integrated tau range are linearly
    extrapolated (the integrated top layer lands within ~1e-3 dex of -6.875, not exactly on it).

    Returns
    -------
    values : (n, 4, K) log10 quantities, NaN where a model does not cover a point.
    """
    cols = np.stack([rhox, temperature, p_gas, n_e, abross], axis=-1).astype(float)
    finite = np.isfinite(cols).all(axis=-1)
    safe = np.where(finite[..., None], cols, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = rosseland_optical_depth(safe[..., 0], safe[..., 4])
        lt = np.where(finite, np.log10(tau), np.nan)
        logs = np.log10(np.where(finite[..., None], safe[..., :4], np.nan))
    res = resample_log_tau(lt, logs, log_tau, edge_tolerance_dex)  # (n, K, 4)
    return np.transpose(res, (0, 2, 1))


def add_family_axis(grid: TauSampledGrid, path=None) -> TauSampledGrid:
    """The ATLAS9 grid with a fourth axis ``family`` (0., 1.): the [M/H] family of each model's slice.

    The species grid interleaves two ATLAS9 computations along [M/H] (:func:`stellarnn.atmospheres.grid.atlas9_m_h_families`,
    :func:`stellarnn.atmospheres.audit.m_h_families`); with the family as an input an emulator learns two smooth
    families instead of a zig-zag between adjacent slices, and linear interpolation stays within one family.
    The models and their order are unchanged (the held-out splits are the same).

    Parameters
    ----------
    grid : TauSampledGrid with axes teff, logg, m_h (the ATLAS9 file's [Fe/H] nodes)
    path : optional ``ATLAS9_grid.nc`` whose layer counts define the families.
    """
    from .grid import m_h_family

    if "family" in grid.axes:
        return grid
    if "m_h" not in grid.axes:
        raise ValueError(f"a family axis needs an m_h axis; this grid has {grid.axis_names}")
    family = m_h_family(grid.params[:, grid.axis_names.index("m_h")], path)
    axes = dict(grid.axes, family=np.array([0.0, 1.0]))
    return TauSampledGrid(axes, np.column_stack([grid.node_index, family]), grid.values, grid.log_tau,
                          list(grid.notes) + ["axis 'family': 0 for [M/H] slices of 72-layer decks, 1 for the "
                                              "short-deck slices (stellarnn.atmospheres.grid.atlas9_m_h_families)"])


def atlas9_tau_grid(path=None, families: bool = False) -> TauSampledGrid:
    """The ATLAS9 grid resampled onto the 71-point iNNterpol scale (complete models only).

    Parameters
    ----------
    path : optional path of ``ATLAS9_grid.nc`` (default: ``stellarnn.data.fetch("atlas9-grid")``).
    families : bool
        Add the ``family`` axis (:func:`add_family_axis`).
    """
    import h5py

    if path is None:
        from ..data import fetch

        path = fetch("atlas9-grid")
    with h5py.File(path, "r") as fh:
        axes = {"teff": fh["teff"][:].astype(float), "logg": fh["logg"][:].astype(float),
                "m_h": fh["feh"][:].astype(float)}
        cube = fh["atmosphere"][:].astype(float)
    shape = cube.shape[:3]
    flat = cube.reshape(-1, cube.shape[3], cube.shape[4])
    spliced = cut_spliced_models(flat)
    present = np.isfinite(flat[:, 0, 0])
    idx = np.flatnonzero(present)
    m = flat[idx]
    values = resample_models(m[..., 0], m[..., 1], m[..., 2], m[..., 3], m[..., 4])
    complete = np.isfinite(values).all(axis=(1, 2))
    node_index = np.stack(np.unravel_index(idx[complete], shape), axis=1)
    notes = [f"{int(present.sum())} models in the file; {int((~complete).sum())} excluded because their own "
             f"tau_Ross range does not cover log tau {INNTERPOL_LOG_TAU[0]} .. {INNTERPOL_LOG_TAU[-1]}",
             f"{int(spliced.sum())} spliced model(s) cut where RHOX stops increasing"]
    grid = TauSampledGrid(axes, node_index, values[complete], INNTERPOL_LOG_TAU.copy(), notes)
    return add_family_axis(grid, path) if families else grid
