"""``AtmosphereGrid``: a grid of model atmospheres on a common depth scale, and its readers.

The ATLAS9 grid (Castelli & Kurucz 2003, as packaged by species: ``stellarnn.data.fetch("atlas9-grid")``)
is an HDF5/netCDF4 file with datasets ``teff`` (41), ``logg`` (11), ``feh`` (19) and
``atmosphere`` (41, 11, 19, 72, 7) whose last axis is RHOX, T, P, XNE, ABROSS, ACCRAD, VTURB
(cgs).  What we found in it, and what :meth:`AtmosphereGrid.load_atlas9` does about it:

* **holes**: a (teff, logg, feh) node without a model is all-NaN (3900 of 8569 nodes; the
  whole [Fe/H] = -4.0 plane is empty). Such nodes are *missing*.
* **64-layer models** (454): the last 8 layers are NaN, and their 64 layers are *not* on the
  standard ATLAS9 scale (log tau_Ross from about -5.7 to +2.0).  One model (5250 K, log g 0,
  [Fe/H] +0.5) has 71 layers (last one NaN) on the standard scale.
* **spliced models** (7, all at 9750 K, log g 5): 64 good layers followed by 8 rows where RHOX
  drops back (rows of another model); we cut them at the break, which makes them 64-layer models.
* **off-scale 72-layer models** (4 more, at 3500–3750 K): their integrated tau_Ross departs by
  0.25–0.35 dex from the standard scale.
* standard models: 72 layers at log tau_Ross = -6.875 + 0.125 i (i = 0..71); our integration
  of ABROSS over RHOX reproduces that to a median 2e-4 dex.

Policy ``off_scale="resample"`` (default): 64-layer and off-scale models are *kept and
repaired*, resampled onto the standard scale by linear interpolation in log tau of the log10
quantities, with the layers their own tau range does not cover left NaN (no extrapolation:
typically the top 9 layers of a 64-layer model).  ``off_scale="exclude"``: they become
missing nodes.  The per-node status is in :attr:`AtmosphereGrid.status`.

Also noted: VTURB is 0 in every [Fe/H] = 0 model and 2 km/s elsewhere (as distributed); the grid
audit (:mod:`stellarnn.atmospheres.audit`) finds that slice discontinuous with its neighbours.
:func:`deck_vturb` gives the decks' VTURB at any [M/H] (what written model files carry).
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from .linear import MultilinearInterpolator, OutOfGridError
from .model import Atmosphere
from .tau import ATLAS9_LOG_TAU, cut_spliced_models, resample_log_tau, rosseland_optical_depth

#: columns of the grid's last axis (ATLAS9 DECK6 order) and our Atmosphere field names
COLUMNS = ("rhox", "temperature", "p_gas", "n_e", "abross", "accrad", "vturb")
#: columns interpolated as log10 (all strictly positive); VTURB (0 in some models) is linear
LOG_COLUMNS = (True, True, True, True, True, True, False)

STATUS_MISSING, STATUS_STANDARD, STATUS_SHORT, STATUS_RESAMPLED = 0, 1, 2, 3
STATUS_NAMES = {STATUS_MISSING: "missing", STATUS_STANDARD: "standard 72-layer",
                STATUS_SHORT: "standard scale, trailing layers missing",
                STATUS_RESAMPLED: "resampled onto the standard scale (64-layer or off-scale)"}
#: tolerance (dex) of |log tau_integrated - standard scale| for a model to count as on the scale
OFF_SCALE_TOLERANCE_DEX = 0.1

__all__ = ["AtmosphereGrid", "OutOfGridError", "COLUMNS"]


#: a [Fe/H] slice holding at least this many decks shorter than 72 layers belongs to the short-deck family
SHORT_DECK_MIN_MODELS = 5
#: names of the two ATLAS9 [M/H] families (index = the ``family`` input of emulators trained with it)
M_H_FAMILIES = ("72-layer decks", "short-deck slices")


@functools.lru_cache(maxsize=4)
def atlas9_m_h_families(path: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The family (0 or 1) of each [Fe/H] slice of the ATLAS9 grid, from the decks' layer counts.

    The species grid interleaves two ATLAS9 computations along [M/H] (:func:`stellarnn.atmospheres.audit.m_h_families`
    measures it): slices whose decks all have 72 layers (family 0: [Fe/H] = -2.5 ... +0.5 in 0.5 dex steps,
    +0.2, and 0.0) and slices that hold 60-65-layer decks among their 72-layer ones (family 1: -5 ... -3,
    -0.3 ... +0.3 in 0.1-0.2 dex steps, +1.0).  64 layers is the depth scale of Kurucz's (1993) ATLAS9 grids,
    72 that of Castelli & Kurucz (2003, IAU Symp. 210, A20); the file does not say which computation a
    slice comes from, so the families are named by what the file shows.  A slice is in family 1 when it holds
    at least :data:`SHORT_DECK_MIN_MODELS` shorter decks (one spliced or 71-layer model does not count).

    Parameters
    ----------
    path : optional ``ATLAS9_grid.nc`` (default: ``stellarnn.data.fetch("atlas9-grid")``).

    Returns
    -------
    feh : (19,) the [Fe/H] axis; family : (19,) int, 0 or 1 (empty slices: 0).
    """
    import h5py

    if path is None:
        from ..data import fetch

        path = str(fetch("atlas9-grid"))
    with h5py.File(path, "r") as fh:
        feh = fh["feh"][:].astype(float)
        rhox = fh["atmosphere"][:, :, :, :, 0].astype(float)
    n_layers = np.isfinite(rhox).sum(-1)  # (teff, logg, feh)
    short = ((n_layers > 0) & (n_layers < 72)).sum(axis=(0, 1))
    return feh, (short >= SHORT_DECK_MIN_MODELS).astype(int)


def m_h_family(m_h, path=None) -> np.ndarray:
    """Family (0 or 1, :func:`atlas9_m_h_families`) of the ATLAS9 slice at each [M/H] value (exact node values).

    Raises
    ------
    ValueError
        A value that is not a [Fe/H] node of the grid.
    """
    feh, family = atlas9_m_h_families(None if path is None else str(path))
    m = np.atleast_1d(np.asarray(m_h, dtype=float))
    idx = np.argmin(np.abs(m[:, None] - feh[None, :]), axis=1)
    off = np.abs(feh[idx] - m) > 1e-6
    if off.any():
        raise ValueError(f"[M/H] = {m[off][:5].tolist()} are not [Fe/H] nodes of the ATLAS9 grid {feh.tolist()}")
    return family[idx]


@functools.lru_cache(maxsize=4)
def _atlas9_vturb_by_m_h(path: str) -> tuple[np.ndarray, np.ndarray]:
    """[Fe/H] of the ATLAS9 grid's non-empty slices and the median VTURB [cm/s] of their models."""
    import h5py

    with h5py.File(path, "r") as fh:
        feh = fh["feh"][:].astype(float)
        vturb = fh["atmosphere"][:, :, :, 0, COLUMNS.index("vturb")].astype(float)  # top layer of every model
    keep, values = [], []
    for k in range(len(feh)):
        v = vturb[:, :, k][np.isfinite(vturb[:, :, k])]
        if v.size:
            keep.append(feh[k])
            values.append(float(np.median(v)))
    return np.array(keep), np.array(values)


def deck_vturb(m_h, path=None, exclude_m_h=()) -> float:
    """Micro-turbulence VTURB [cm s^-1] of the ATLAS9 grid's decks at [M/H].

    Each [Fe/H] slice of the grid has one VTURB (2 km/s, except 0 at [Fe/H] = 0); between slices it is
    interpolated linearly in [M/H], beyond the ends it is the end value.  A model interpolated (or emulated)
    from the grid's models is labelled with the VTURB of the decks it was made from.

    Parameters
    ----------
    m_h : float
        [M/H] [dex].
    path : optional ``ATLAS9_grid.nc`` (default: ``stellarnn.data.fetch("atlas9-grid")``).
    exclude_m_h : sequence of float
        Slices left out (an emulator trained without them).
    """
    if path is None:
        from ..data import fetch

        path = fetch("atlas9-grid")
    feh, vturb = _atlas9_vturb_by_m_h(str(path))
    keep = ~np.isin(np.round(feh, 6), np.round(np.asarray(exclude_m_h, dtype=float), 6))
    return float(np.interp(float(m_h), feh[keep], vturb[keep]))


class AtmosphereGrid:
    """Model atmospheres on a rectilinear grid of stellar parameters and a common layer scale.

    Parameters
    ----------
    axes : dict name -> 1D array
        Grid axes in order (ATLAS9: ``teff`` [K], ``logg`` [cgs], ``m_h`` [dex]).
    models : array ``(*shape, n_layers, 7)``
        Columns :data:`COLUMNS` in cgs; NaN for missing nodes and uncovered layers.
    status : int array ``(*shape)``
        Per-node status (see ``STATUS_NAMES``); 0 = missing.
    log_tau : array (n_layers,)
        The common log10 tau_Ross of the layers.
    source : str
    """

    def __init__(self, axes: dict, models: np.ndarray, status: np.ndarray, log_tau: np.ndarray,
                 source: str = ""):
        self.axes = {k: np.asarray(v, dtype=float) for k, v in axes.items()}
        self.axis_names = tuple(self.axes)
        self.shape = tuple(len(v) for v in self.axes.values())
        self.models = np.asarray(models, dtype=float)
        if self.models.shape[:len(self.shape)] != self.shape or self.models.shape[-1] != len(COLUMNS):
            raise ValueError(f"models {self.models.shape} do not match axes {self.shape} x layers x {len(COLUMNS)}")
        self.status = np.asarray(status, dtype=int)
        self.log_tau = np.asarray(log_tau, dtype=float)
        self.source = source
        self.notes: list[str] = []
        self._interpolator = None

    # ------------------------------------------------------------------ readers
    @classmethod
    def load_atlas9(cls, path: str | Path | None = None, off_scale: str = "resample") -> "AtmosphereGrid":
        """Load the ATLAS9 grid (fetched through the data layer unless ``path`` is given).

        Parameters
        ----------
        path : str or Path, optional
            The ``ATLAS9_grid.nc`` file; default ``stellarnn.data.fetch("atlas9-grid")``.
        off_scale : {"resample", "exclude"}
            What to do with the 64-layer and off-scale models (see the module docstring).
        """
        import h5py

        if off_scale not in ("resample", "exclude"):
            raise ValueError("off_scale must be 'resample' or 'exclude'")
        if path is None:
            from ..data import fetch

            path = fetch("atlas9-grid")
        with h5py.File(path, "r") as fh:
            teff, logg, feh = fh["teff"][:], fh["logg"][:], fh["feh"][:]
            cube = fh["atmosphere"][:].astype(float)
            names = fh["atmosphere"].attrs.get("column_names", b"")
        names = names.decode() if isinstance(names, bytes) else str(names)
        if names and names.split(",") != ["rhox", "temp", "pgas", "xne", "abross", "accrad", "vturb"]:
            raise ValueError(f"{path}: unexpected column order {names!r}")
        shape = cube.shape[:3]
        flat = cube.reshape(-1, cube.shape[3], cube.shape[4])
        # spliced models (RHOX stops increasing): keep the layers before the break
        spliced = cut_spliced_models(flat)
        n_finite = np.isfinite(flat[..., 0]).sum(-1)
        status = np.zeros(len(flat), dtype=int)
        present = n_finite > 0
        # integrated tau of every present model, compared with the standard scale
        safe = np.where(np.isfinite(flat), flat, 1.0)
        tau = rosseland_optical_depth(safe[..., 0], safe[..., 4])
        with np.errstate(invalid="ignore", divide="ignore"):
            log_tau = np.where(np.isfinite(flat[..., 0]), np.log10(np.abs(tau)), np.nan)
        dev = np.nanmax(np.abs(log_tau - ATLAS9_LOG_TAU[None, :]), axis=1, initial=0.0)
        on_scale = present & (dev < OFF_SCALE_TOLERANCE_DEX) & (n_finite >= 70)
        status[on_scale & (n_finite == 72)] = STATUS_STANDARD
        status[on_scale & (n_finite < 72)] = STATUS_SHORT
        repair = present & ~on_scale
        if off_scale == "resample" and repair.any():
            logs = np.where(np.array(LOG_COLUMNS), np.log10(np.where(flat[repair] > 0, flat[repair], np.nan)),
                            flat[repair])
            res = resample_log_tau(log_tau[repair], logs, ATLAS9_LOG_TAU)
            res[..., np.array(LOG_COLUMNS)] = 10.0 ** res[..., np.array(LOG_COLUMNS)]
            flat[repair] = res
            status[repair] = STATUS_RESAMPLED
        else:
            flat[repair] = np.nan
        grid = cls({"teff": teff, "logg": logg, "m_h": feh}, flat.reshape(cube.shape),
                   status.reshape(shape), ATLAS9_LOG_TAU, source=f"ATLAS9 grid {Path(path).name}")
        grid.notes = [f"{int(spliced.sum())} model(s) truncated where RHOX stops increasing (spliced rows)",
                      f"{int(repair.sum())} 64-layer/off-scale model(s) "
                      + ("resampled onto the standard tau scale" if off_scale == "resample" else "excluded")]
        return grid

    @staticmethod
    def read_kurucz(path) -> Atmosphere:
        """Read one Kurucz/ATLAS9 ``.mod`` deck (see :func:`stellarnn.atmospheres.kurucz.read_kurucz`)."""
        from .kurucz import read_kurucz

        return read_kurucz(path)

    def without_slices(self, axis: str, values) -> "AtmosphereGrid":
        """The grid with the slices ``axis == value`` removed (e.g. the ATLAS9 [M/H] = 0 slice, whose decks
        have VTURB = 0 while every other slice has 2 km/s: ``stellarnn atmosphere audit``); interpolation then
        bridges the gap between the neighbouring slices.  No values: the grid itself."""
        values = np.atleast_1d(np.asarray(values, dtype=float))
        if values.size == 0:
            return self
        if axis not in self.axes:
            raise ValueError(f"no axis {axis!r}; this grid's axes are {self.axis_names}")
        k = self.axis_names.index(axis)
        keep = ~np.isin(np.round(self.axes[axis], 6), np.round(values, 6))
        missing = [v for v in values if not np.any(np.isclose(self.axes[axis], v))]
        if missing:
            raise ValueError(f"axis {axis} has no slice at {missing}")
        axes = {n: (a[keep] if n == axis else a) for n, a in self.axes.items()}
        out = AtmosphereGrid(axes, np.compress(keep, self.models, axis=k), np.compress(keep, self.status, axis=k),
                             self.log_tau, self.source + f" without {axis} = {', '.join(f'{v:g}' for v in values)}")
        out.notes = list(self.notes) + [f"slices {axis} = {values.tolist()} removed"]
        return out

    # ------------------------------------------------------------------ access
    @property
    def present(self) -> np.ndarray:
        """Boolean ``(*shape)``: nodes that hold a model."""
        return self.status != STATUS_MISSING

    def summary(self) -> dict:
        """Counts of nodes per status."""
        return {STATUS_NAMES[s]: int((self.status == s).sum()) for s in STATUS_NAMES}

    def node(self, index: tuple[int, ...]) -> Atmosphere:
        """The model at a node (grid indices), finite layers only.

        Raises
        ------
        OutOfGridError
            The node has no model.
        """
        index = tuple(int(i) for i in index)
        if not self.present[index]:
            coords = {k: float(self.axes[k][i]) for k, i in zip(self.axis_names, index)}
            raise OutOfGridError(f"no model at {coords}")
        cols = self.models[index]
        params = [float(self.axes[k][i]) for k, i in zip(self.axis_names, index)]
        atm = Atmosphere(**{c: cols[:, j] for j, c in enumerate(COLUMNS)}, teff=params[0], logg=params[1],
                         m_h=params[2], log_tau_ross=self.log_tau.copy(), grid_distance=0.0,
                         source=f"{self.source} node {dict(zip(self.axis_names, params))}")
        return atm.finite_layers()

    # ------------------------------------------------------------------ interpolation
    def _linear(self) -> MultilinearInterpolator:
        if self._interpolator is None:
            logs = np.array(LOG_COLUMNS)
            with np.errstate(divide="ignore", invalid="ignore"):
                values = np.where(logs, np.log10(self.models), self.models)
            values[~self.present] = np.nan
            self._interpolator = MultilinearInterpolator(list(self.axes.values()), values, present=self.present)
        return self._interpolator

    def interpolate_linear(self, teff, logg, m_h, fallback: str | None = None, **other_axes) -> Atmosphere:
        """Multilinear interpolation in the grid axes, layer by layer on the common tau_Ross scale.

        RHOX, T, P_gas, n_e, ABROSS and ACCRAD are interpolated as log10, VTURB linearly.  Every
        corner model of the query's cell that carries weight must exist.

        Parameters
        ----------
        teff, logg, m_h : float or array (n,)
            Effective temperature [K], log g [cgs], [M/H] [dex]; arrays give a batch.
        fallback : {None, "nearest_cell"}
            None (default): raise :class:`OutOfGridError` when a point is outside the axis ranges or
            its cell has a missing corner.  "nearest_cell": extrapolate such points linearly from
            the nearest complete cell (all corners present) and report it in ``atm.notes``;
            ``atm.grid_distance`` says how far from the nearest model they are.
        other_axes : arrays
            Values for further axes of a grid that has them (none for ATLAS9).

        Returns
        -------
        Atmosphere
            Single (finite layers only) for scalar input; batched (n, n_layers) for arrays, with
            NaN in layers some corner model does not cover (resampled 64-layer models).
        """
        coords = {"teff": teff, "logg": logg, "m_h": m_h, **other_axes}
        if set(coords) != set(self.axis_names):
            raise ValueError(f"this grid's axes are {self.axis_names}; got {tuple(coords)}")
        arrays = [np.atleast_1d(np.asarray(coords[k], dtype=float)) for k in self.axis_names]
        scalar = all(np.ndim(coords[k]) == 0 for k in self.axis_names)
        try:
            arrays = np.broadcast_arrays(*arrays)
        except ValueError as exc:
            raise ValueError(f"teff, logg, m_h must broadcast to one shape: {exc}") from exc
        if any(a.ndim != 1 for a in arrays):
            raise ValueError("teff, logg, m_h must be scalars or 1D arrays")
        points = np.stack(arrays, axis=1)
        values, info = self._linear()(points, fallback=fallback)
        logs = np.array(LOG_COLUMNS)
        values[..., logs] = 10.0 ** values[..., logs]  # (n, L, 7)
        kw = {c: values[..., j] for j, c in enumerate(COLUMNS)}
        notes = []
        if info.used_fallback.any():
            notes.append(f"{int(info.used_fallback.sum())} point(s) extrapolated from the nearest complete cell")
        atm = Atmosphere(**kw, teff=points[:, 0], logg=points[:, 1], m_h=points[:, 2],
                         log_tau_ross=np.broadcast_to(self.log_tau, kw["rhox"].shape).copy(),
                         grid_distance=info.grid_distance, source=f"{self.source}, multilinear", notes=notes)
        return atm[0] if scalar else atm
