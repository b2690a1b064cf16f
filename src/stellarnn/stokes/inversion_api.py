"""Milne-Eddington inversion from a notebook: :func:`invert`.

``stellarnn.stokes.invert(data, method="lm"|"cnn")`` takes a Hinode SP file or folder (level-1 slit files or
a Stokes cube of floats or integer counts, :func:`~stellarnn.stokes.hinode_io.read_sp_map`), an
:class:`~stellarnn.stokes.hinode_io.SPMap`, or a ``(wavelengths, stokes)`` pair (Å; continuum units,
``(4, n_λ)``, ``(n, 4, n_λ)`` or a map ``(n_x, n_y, 4, n_λ)``), and returns a :class:`StokesInversion`:
``to_table()`` gives an astropy ``QTable`` with units (``B`` [G], ``gamma`` inclination [deg], ``chi``
azimuth [deg], ``v_los`` [km/s], ``doppler_width`` [mÅ], ...), ``maps()`` the 2-D parameter maps of a raster,
``plot(ax=)``, ``plot_maps(fig=)`` and ``plot_profile(i, fig=)`` the figures (never selecting a matplotlib
backend).  A thin wrapper of :func:`~stellarnn.stokes.lm_inversion.invert_lm` and
:class:`~stellarnn.stokes.me_cnn.MEInverter`, doing what ``stellarnn stokes invert`` does (profiles with
non-finite values are skipped and get NaN; the LM fit runs on the data's own grid when it is evenly sampled,
else on the nominal SP grid after resampling; the CNN resamples to the grid it was trained on).

Examples
--------
>>> import torch
>>> from stellarnn import stokes
>>> from stellarnn.stokes.milne_eddington import MilneEddington, hinode_sp_wavelengths
>>> params = torch.tensor([[1200.0, 60.0, 30.0, 1.0, 30.0, 10.0, 0.3, 0.3, 0.7]], dtype=torch.float64)
>>> profiles = MilneEddington().synthesize(params).numpy()          # (1, 4, 112), continuum units
>>> table = stokes.invert((hinode_sp_wavelengths(), profiles), method="lm").to_table()
>>> print(f"{table['B'][0]:.0f}, {table['gamma'][0]:.1f}")
1200 G, 60.0 deg
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .hinode_io import SPMap, read_sp_map
from .milne_eddington import PARAMETER_NAMES, PARAMETER_UNITS

METHODS = ("lm", "cnn")
#: astropy unit strings of the ME parameters (PARAMETER_UNITS: "mA" is mÅ, "Ic" continuum units)
ASTROPY_UNITS = {"G": "G", "deg": "deg", "km/s": "km / s", "mA": "mAngstrom", "": "", "Ic": ""}
#: what each parameter is, for the table's column descriptions
DESCRIPTIONS = {"B": "field strength", "gamma": "inclination to the line of sight", "chi": "azimuth",
                "v_los": "line-of-sight velocity (positive: redshift)", "doppler_width": "Doppler width",
                "eta0": "line-to-continuum opacity ratio", "damping": "damping parameter",
                "S0": "source function at tau_c = 0", "S1": "source function gradient"}


class UnsupportedStokesInputError(TypeError):
    """An input :func:`invert` cannot turn into Stokes profiles."""


def _profiles(data, normalisation: str, continuum_counts) -> tuple[np.ndarray, np.ndarray, tuple, str]:
    """Profiles (n, 4, n_λ), wavelengths (Å), the leading shape (() one, (n,) list, (n_x, n_y) map), a name."""
    if isinstance(data, (str, Path)):
        data = read_sp_map(data, continuum_counts=continuum_counts, normalisation=normalisation)
        name = "file"
    else:
        name = type(data).__name__
    if isinstance(data, SPMap):
        stokes, wavelengths = np.asarray(data.stokes, dtype=np.float64), np.asarray(data.wavelengths, np.float64)
    elif isinstance(data, tuple) and len(data) == 2:
        try:
            wavelengths, stokes = (np.asarray(getattr(a, "value", a), dtype=np.float64) for a in data)
        except (TypeError, ValueError):
            raise UnsupportedStokesInputError("a (wavelengths, stokes) pair must hold two numeric arrays") from None
        name = "arrays"
    else:
        raise UnsupportedStokesInputError(
            f"cannot invert a {type(data).__name__}: pass a Hinode SP file or folder, an SPMap, or a "
            "(wavelengths, stokes) pair")
    if wavelengths.ndim != 1 or stokes.ndim < 2 or stokes.ndim > 4 or stokes.shape[-2:] != (4, wavelengths.size):
        raise ValueError(f"Stokes profiles must have shape (..., 4, {wavelengths.size}) for {wavelengths.size} "
                         f"wavelengths, with at most two leading axes; got {stokes.shape}")
    lead = stokes.shape[:-2]
    return stokes.reshape(-1, 4, wavelengths.size), wavelengths, lead, name


def _astropy_unit(name: str):
    import astropy.units as u

    units = dict(zip(PARAMETER_NAMES, PARAMETER_UNITS))
    return u.Unit(ASTROPY_UNITS[units[name.removeprefix("e_")]])


@dataclass
class StokesInversion:
    """Milne-Eddington parameters of every profile (result of :func:`invert`).

    Attributes
    ----------
    parameters : dict of str -> array (n,)
        The nine ME parameters (:data:`~stellarnn.stokes.milne_eddington.PARAMETER_NAMES`, χ in [0, 180)), their
        1-sigma errors ``e_<name>`` and, for LM, ``chi2_reduced`` and ``iterations``; NaN (iterations -1) for
        skipped profiles.
    stokes : array (n, 4, n_λ)
        The inverted profiles (continuum units).
    wavelengths : array (n_λ,)
        Their wavelengths [Å].
    shape : tuple
        Leading shape of the input: () one profile, (n,) a list, (n_x, n_y) a raster.
    method : str
    notes : list of str
        What was done to the data (resampling, skipped profiles, normalisation).
    """

    parameters: dict
    stokes: np.ndarray
    wavelengths: np.ndarray
    shape: tuple
    method: str
    notes: list = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.stokes.shape[0])

    def to_table(self):
        """One row per profile as an astropy ``QTable`` with units; a raster adds ``x``, ``y`` pixel columns.

        Columns: ``B`` [G], ``gamma`` [deg], ``chi`` [deg], ``v_los`` [km/s], ``doppler_width`` [mÅ], ``eta0``,
        ``damping``, ``S0``, ``S1`` (continuum units), each followed by its error ``e_<name>``, then (LM)
        ``chi2_reduced`` and ``iterations``.  ``meta``: method and notes.
        """
        from astropy.table import QTable

        table = QTable()
        if len(self.shape) == 2:
            x, y = np.unravel_index(np.arange(len(self)), self.shape)
            table["x"], table["y"] = x, y
        for name in PARAMETER_NAMES:
            for key in (name, f"e_{name}"):
                if key in self.parameters:
                    table[key] = np.asarray(self.parameters[key], dtype=np.float64) * _astropy_unit(key)
                    table[key].info.description = ("error of " if key != name else "") + DESCRIPTIONS[name]
        for key in ("chi2_reduced", "iterations"):
            if key in self.parameters:
                table[key] = np.asarray(self.parameters[key])
        table.meta.update(method=self.method, notes=list(self.notes))
        return table

    def maps(self) -> dict[str, np.ndarray]:
        """The parameters as (n_x, n_y) maps (a raster input only)."""
        if len(self.shape) != 2:
            raise ValueError(f"maps need a raster (n_x, n_y) input; this inversion has shape {self.shape}")
        return {k: np.asarray(v).reshape(self.shape) for k, v in self.parameters.items()}

    def plot(self, name: str = "B", ax=None):
        """One parameter: an image of a raster, else its value (with error bars) against the profile index.

        Returns the Axes (a new figure when ``ax`` is None).
        """
        from ..figures import axes_for

        if name not in PARAMETER_NAMES:
            raise ValueError(f"name must be one of {PARAMETER_NAMES}, got {name!r}")
        label = f"{name} [{_astropy_unit(name).to_string()}]" if _astropy_unit(name).to_string() else name
        fig, ax = axes_for(ax, figsize=(5, 4))
        values = np.asarray(self.parameters[name], dtype=float)
        if len(self.shape) == 2:
            image = ax.imshow(values.reshape(self.shape).T, origin="lower", interpolation="nearest")
            fig.colorbar(image, ax=ax, label=label)
            ax.set_xlabel("slit position x [px]")
            ax.set_ylabel("along slit y [px]")
        else:
            errors = self.parameters.get(f"e_{name}")
            ax.errorbar(np.arange(values.size), values, yerr=errors, fmt="o", ms=3)
            ax.set_xlabel("profile")
            ax.set_ylabel(label)
        return ax

    def plot_maps(self, names=("B", "gamma", "chi", "v_los"), fig=None):
        """Maps of several parameters (:func:`stellarnn.stokes.plotting.plot_parameter_maps`); returns the Figure."""
        from .plotting import plot_parameter_maps

        units = {k: dict(zip(PARAMETER_NAMES, PARAMETER_UNITS)).get(k.removeprefix("e_"), "") for k in self.parameters}
        return plot_parameter_maps(self.maps(), units, tuple(names), title=f"ME inversion ({self.method})", fig=fig)

    def synthesize(self, index: int) -> np.ndarray:
        """The ME profiles (4, n_λ) of the fitted parameters of profile ``index`` (on the nominal SP grid when
        the data's grid is not evenly sampled)."""
        import torch

        from .milne_eddington import MilneEddington

        params = torch.tensor([[float(self.parameters[n][index]) for n in PARAMETER_NAMES]], dtype=torch.float64)
        try:
            model = MilneEddington(wavelengths=self.wavelengths)
        except ValueError:
            model = MilneEddington()
        return model.synthesize(params)[0].numpy()

    def plot_profile(self, index: int = 0, fig=None):
        """Observed I, Q, U, V of profile ``index`` with the fitted ME profiles
        (:func:`stellarnn.stokes.plotting.plot_stokes_profiles`); returns the Figure."""
        from .plotting import plot_stokes_profiles

        model = self.synthesize(index)
        models = {"ME fit": model} if model.shape[-1] == self.wavelengths.size else {}
        return plot_stokes_profiles(self.wavelengths, self.stokes[index], models,
                                    title=f"profile {index} ({self.method})", fig=fig)


def invert(data, method: str = "lm", *, weights=None, noise: float = 1e-3, n_starts: int = 4,
           normalisation: str = "quiet-sun", continuum_counts: float | None = None,
           progress: bool = False) -> StokesInversion:
    """Milne-Eddington parameters of Stokes profiles by Levenberg-Marquardt or by the ME-CNN.

    Parameters
    ----------
    data : path, SPMap or (wavelengths, stokes) tuple
        A Hinode SP level-1 file, a folder of them or a Stokes cube (floats or integer counts); an
        :class:`SPMap`; or wavelengths [Å] (n_λ,) with profiles in continuum units (4, n_λ), (n, 4, n_λ) or
        (n_x, n_y, 4, n_λ).
    method : {"lm", "cnn"}
        Multi-start Levenberg-Marquardt (:func:`~stellarnn.stokes.lm_inversion.invert_lm`) or the ME-CNN
        (:class:`~stellarnn.stokes.me_cnn.MEInverter`, mean and 1-sigma of each parameter).
    weights : path, optional
        ME-CNN checkpoint (default: the shipped ``stokes/me_cnn.pt``).
    noise : float
        LM: noise per pixel [continuum units] that defines chi^2 and the formal errors.
    n_starts : int
        LM: starting points per profile.
    normalisation, continuum_counts :
        For file input: how the data are put in continuum units (:func:`~stellarnn.stokes.hinode_io.read_sp_map`).
    progress : bool
        LM: show a progress bar.

    Returns
    -------
    StokesInversion

    Raises
    ------
    TypeError
        (:class:`UnsupportedStokesInputError`) an input that is not a path, an SPMap or a (wavelengths, stokes) pair.
    ValueError
        An unknown method, profiles of the wrong shape, or no finite profile.
    FileNotFoundError
        No ME-CNN checkpoint at ``weights``.
    """
    import torch

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    flat, wavelengths, lead, name = _profiles(data, normalisation, continuum_counts)
    good = np.isfinite(flat).all(axis=(1, 2))
    if not good.any():
        raise ValueError("no finite Stokes profiles in the input")
    notes = [] if good.all() else [f"{int((~good).sum())} profiles with non-finite values skipped (NaN)"]
    if isinstance(data, SPMap) and data.normalisation:
        notes.append(f"normalisation: {data.normalisation}")
    if method == "cnn":
        from ..data.shipped_weights import weights_dir
        from .me_cnn import MEInverter

        path = Path(weights) if weights is not None else weights_dir("stokes") / "me_cnn.pt"
        if not path.is_file():
            raise FileNotFoundError(f"ME-CNN weights {path} not found (train with `stellarnn stokes train`)")
        inverter = MEInverter(path)
        result = inverter.invert(torch.from_numpy(flat[good]).float(), wavelengths=wavelengths)
        if inverter.last_resampling:
            notes.append(f"resampled to the network's grid ({inverter.last_resampling['method']})")
    else:
        from .lm_inversion import invert_lm
        from .milne_eddington import MilneEddington
        from .wavelength_grid import resample_profiles

        lm_input = flat[good]
        try:  # the ME model on the data's own grid
            model = MilneEddington(wavelengths=wavelengths)
        except ValueError:  # an unevenly sampled grid (the PSF needs even steps): fit on the nominal grid
            model = MilneEddington()
            lm_input, report = resample_profiles(lm_input, wavelengths)
            notes.append(f"resampled to the nominal SP grid ({report['method']}) for the LM fit")
        result = invert_lm(torch.from_numpy(np.ascontiguousarray(lm_input)), model, sigma=noise, n_starts=n_starts,
                           progress=progress)
    parameters = {}
    for key, values in result.items():
        full = np.full(flat.shape[0], -1 if key == "iterations" else np.nan,  # -1 / NaN: skipped profiles
                       dtype=np.int64 if key == "iterations" else np.float64)
        full[good] = values
        parameters[key] = full
    return StokesInversion(parameters, flat, wavelengths, tuple(lead), method, notes)
