"""One call from stellar parameters to a model atmosphere: :func:`atmosphere`.

``stellarnn.atmosphere(teff, logg, m_h)`` returns a :class:`ModelAtmosphere` — an
:class:`~stellarnn.atmospheres.model.Atmosphere` with notebook conveniences: :meth:`~ModelAtmosphere.to_krz`
(SME/PySME), :meth:`~ModelAtmosphere.to_kurucz` (ATLAS9 deck), :meth:`~ModelAtmosphere.to_table` (an astropy
``QTable`` with units) and :meth:`~ModelAtmosphere.plot` (draws into a given ``ax``, never selects a
matplotlib backend).  It is a thin wrapper: the models come from the iNNterpol emulator
(:meth:`stellarnn.atmospheres.emulator.Innterpol.atmosphere`) or from multilinear interpolation of the ATLAS9
grid (:meth:`stellarnn.atmospheres.grid.AtmosphereGrid.interpolate_linear`), exactly as
``stellarnn atmosphere get`` makes them (same VTURB labelling of emulated models).

Examples
--------
>>> import stellarnn
>>> atm = stellarnn.atmosphere(5750.0, 4.5, 0.0)
>>> atm.n_layers, atm.to_table()["T"].unit
(71, Unit("K"))
>>> path = atm.to_krz("sun.krz")                               # doctest: +SKIP
"""
from __future__ import annotations

import functools
from dataclasses import fields
from pathlib import Path

import numpy as np

from .model import Atmosphere

METHODS = ("innterpol", "linear")

#: quantities :meth:`ModelAtmosphere.plot` can draw: Atmosphere field -> (axis label, log scale)
PLOT_QUANTITIES = {"temperature": ("T [K]", False), "rhox": ("RHOX [g cm$^{-2}$]", True),
                   "p_gas": ("P$_{gas}$ [dyn cm$^{-2}$]", True), "n_e": ("n$_e$ [cm$^{-3}$]", True)}


class ModelAtmosphere(Atmosphere):
    """A single model atmosphere (numpy arrays, finite layers) with writers, a table and a plot.

    Everything of :class:`~stellarnn.atmospheres.model.Atmosphere` works on it (``n_atoms``, ``density``,
    ``write_krz``...).  Units are cgs: ``rhox`` [g cm^-2], ``temperature`` [K], ``p_gas`` [dyn cm^-2],
    ``n_e`` [cm^-3], ``vturb`` [cm s^-1].
    """

    @classmethod
    def from_atmosphere(cls, atm: Atmosphere) -> "ModelAtmosphere":
        """The same model as a :class:`ModelAtmosphere` (numpy arrays; a single model, not a batch)."""
        atm = atm.numpy()
        if atm.batched:
            raise ValueError("ModelAtmosphere holds one atmosphere; index the batch first (atm[i])")
        atm = atm.finite_layers()
        return cls(**{f.name: getattr(atm, f.name) for f in fields(atm)})

    def to_krz(self, path, title: str | None = None) -> Path:
        """Write an SME ``.krz`` file PySME reads (:func:`stellarnn.atmospheres.krz.write_krz`); returns the path."""
        from .krz import write_krz

        return write_krz(self, path, title=title)

    def to_kurucz(self, path, title: str | None = None) -> Path:
        """Write an ATLAS9 ``.mod`` deck (:func:`stellarnn.atmospheres.kurucz.write_kurucz`); returns the path."""
        from .kurucz import write_kurucz

        return write_kurucz(self, path, title=title)

    def to_table(self):
        """The depth structure as an astropy ``QTable``, one row per layer, top to bottom.

        Columns: ``log_tau_ross`` (log10 Rosseland optical depth, dimensionless), ``RHOX`` [g cm^-2],
        ``T`` [K], ``P_gas`` [Ba = dyn cm^-2], ``n_e`` [cm^-3], and ``vturb`` [km s^-1] when the model has it.
        ``meta`` holds ``teff`` [K], ``logg``, ``m_h``, ``grid_distance`` (typical grid steps to the
        nearest grid model; None when unknown) and ``source``.
        """
        import astropy.units as u
        from astropy.table import QTable

        table = QTable()
        if self.log_tau_ross is not None:
            table["log_tau_ross"] = np.asarray(self.log_tau_ross, dtype=float)
        table["RHOX"] = np.asarray(self.rhox, dtype=float) * (u.g / u.cm ** 2)
        table["T"] = np.asarray(self.temperature, dtype=float) * u.K
        table["P_gas"] = (np.asarray(self.p_gas, dtype=float) * u.Ba)
        table["n_e"] = np.asarray(self.n_e, dtype=float) * u.cm ** -3
        if self.vturb is not None:
            table["vturb"] = (np.asarray(self.vturb, dtype=float) * (u.cm / u.s)).to(u.km / u.s)
        dist = self.grid_distance
        table.meta.update(teff=float(self.teff), logg=float(self.logg), m_h=float(self.m_h),
                          grid_distance=None if dist is None else float(dist), source=self.source)
        return table

    def plot(self, ax=None, quantity: str = "temperature", **line_kw):
        """Draw one quantity against log tau_Ross into ``ax`` (a new figure when None); returns the Axes.

        Parameters
        ----------
        ax : matplotlib Axes, optional
        quantity : {"temperature", "rhox", "p_gas", "n_e"}
        **line_kw
            Passed to ``ax.plot`` (``label`` defaults to the stellar parameters).
        """
        from ..figures import axes_for

        if quantity not in PLOT_QUANTITIES:
            raise ValueError(f"quantity must be one of {tuple(PLOT_QUANTITIES)}, got {quantity!r}")
        if self.log_tau_ross is None:
            raise ValueError("this atmosphere has no log tau_Ross scale to plot against")
        label, log = PLOT_QUANTITIES[quantity]
        _, ax = axes_for(ax, figsize=(5, 4))
        line_kw.setdefault("label", f"{float(self.teff):g} K, {float(self.logg):g}, {float(self.m_h):+g}")
        ax.plot(np.asarray(self.log_tau_ross), np.asarray(getattr(self, quantity)), **line_kw)
        ax.set_xlabel(r"log $\tau_{Ross}$")
        ax.set_ylabel(label)
        if log:
            ax.set_yscale("log")
        return ax

    def plot_overview(self, fig=None, title: str | None = None):
        """The four profiles in 2 x 2 panels (:func:`stellarnn.atmospheres.plotting.plot_atmosphere`); returns
        the Figure (not closed)."""
        from .plotting import plot_atmosphere

        if title is None:
            title = f"Teff {float(self.teff):g} K, log g {float(self.logg):g}, [M/H] {float(self.m_h):+g}"
        return plot_atmosphere(self, title, fig=fig)


@functools.lru_cache(maxsize=4)
def _emulator(weights: str | None):
    from .emulator import Innterpol

    return Innterpol.load(weights)


@functools.lru_cache(maxsize=1)
def _atlas9_grid():
    from .grid import AtmosphereGrid

    return AtmosphereGrid.load_atlas9()


def _axis_values(name: str, value) -> np.ndarray:
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"{name} must be a number or an array of numbers, got {type(value).__name__}")
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number or an array of numbers, got {type(value).__name__}") from None
    if arr.ndim > 1:
        raise ValueError(f"{name} must be a scalar or 1-D, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinity")
    return arr


def atmosphere(teff, logg, m_h, method: str = "innterpol", *, weights=None, extrapolate: bool = False):
    """Model atmosphere(s) for effective temperature, surface gravity and metallicity.

    Parameters
    ----------
    teff : float or array (n,)
        Effective temperature [K].
    logg : float or array (n,)
        log10 surface gravity [cgs].
    m_h : float or array (n,)
        [M/H] [dex] (scaled-solar GS98 mixture).
    method : {"innterpol", "linear"}
        ``"innterpol"`` (default): the iNNterpol emulator (71 layers, log tau_Ross -6.875 ... +1.875; VTURB
        labelled with the grid decks' value at this [M/H], as ``stellarnn atmosphere get`` does).
        ``"linear"``: multilinear interpolation of the ATLAS9 grid (72 layers).
    weights : str or Path, optional
        Emulator checkpoint (``method="innterpol"``; default: the shipped weights).
    extrapolate : bool
        ``method="linear"``: extrapolate from the nearest complete cell instead of raising
        :class:`~stellarnn.atmospheres.linear.OutOfGridError` outside the grid.

    Returns
    -------
    ModelAtmosphere or list of ModelAtmosphere
        One model for scalar input; a list (one model per row, the inputs broadcast together) when any
        input is an array.  For large batches call the emulator directly
        (:meth:`stellarnn.atmospheres.emulator.Innterpol.atmosphere`), which returns one batched object.
        ``grid_distance`` says how far (in typical grid steps) each model is from the nearest grid model.

    Raises
    ------
    TypeError
        An input that is not a number or an array of numbers.
    ValueError
        An unknown method, NaN input, or inputs that do not broadcast.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    values = [_axis_values(n, v) for n, v in (("teff", teff), ("logg", logg), ("m_h", m_h))]
    scalar = all(v.ndim == 0 for v in values)
    try:
        t, g, m = (np.atleast_1d(v) for v in np.broadcast_arrays(*values))
    except ValueError as exc:
        raise ValueError(f"teff, logg and m_h must broadcast to one shape: {exc}") from None
    if t.size == 0:
        raise ValueError("no atmosphere requested (empty input)")
    if method == "innterpol":
        from .grid import deck_vturb

        emulator = _emulator(None if weights is None else str(weights))
        batch = emulator.atmosphere(t, g, m)
        models = []
        for i in range(t.size):
            one = ModelAtmosphere.from_atmosphere(batch[i])
            one.vturb = np.full(one.n_layers, deck_vturb(float(m[i]), exclude_m_h=emulator.excluded_m_h))
            models.append(one)
    else:
        batch = _atlas9_grid().interpolate_linear(t, g, m, fallback="nearest_cell" if extrapolate else None)
        models = [ModelAtmosphere.from_atmosphere(batch[i]) for i in range(t.size)]
    return models[0] if scalar else models
