"""blasé from a notebook: :func:`clone` a synthetic spectrum, :func:`transfer` the clone to an observation.

Thin wrappers of :func:`stellarnn.blase.fitting.clone_spectrum` and
:func:`stellarnn.blase.fitting.transfer_spectrum` that accept what astronomers hold and return result
objects with ``to_table()`` (an astropy ``QTable`` of the lines, with units) and ``plot(ax=)`` (draws into the
given axes, never selects a matplotlib backend).  Progress bars are off by default.

What the functions accept:

* clone source: a path or data entry (``.npz``/``.csv``, :func:`~stellarnn.blase.sources.load_clone_source`),
  a ``(wavelength, flux)`` pair (Angstrom, continuum-normalised), a specutils ``Spectrum1D`` (or any object
  with ``spectral_axis`` and ``flux``), or an object with ``wavelength`` and ``flux`` arrays (our
  :class:`~stellarnn.spectra.Spectrum`, :class:`~stellarnn.blase.sources.ObservedSpectrum`);
* observed spectrum: a path or data entry (FITS/``.npz``, :func:`~stellarnn.blase.sources.load_observed`), a
  Spectrum1D with uncertainty, an :class:`~stellarnn.blase.sources.ObservedSpectrum`, our ``Spectrum``
  (errors from ``ivar``), or ``(wavelength, flux, error)`` arrays (1-sigma errors; one segment).

Examples
--------
>>> import numpy as np
>>> from stellarnn import blase
>>> wavelength = np.arange(4999.0, 5011.0, 0.01)
>>> flux = np.exp(-0.8 * np.exp(-0.5 * ((wavelength - 5005.0) / 0.06) ** 2))
>>> cloned = blase.clone((wavelength, flux), epochs=100)
>>> print(f"{cloned.to_table()['centre'][0]:.2f}")
5005.00 Angstrom
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .fitting import CloneResult, TransferResult, clone_spectrum, transfer_spectrum
from .line_model import LineModel
from .sources import ObservedSpectrum, load_clone_source, load_observed


class UnsupportedSpectrumError(TypeError):
    """An input the blasé API cannot turn into a spectrum."""


def _pair(values, what: str) -> list[np.ndarray]:
    arrays = []
    for v in values:
        try:
            a = np.asarray(getattr(v, "value", v), dtype=np.float64)
        except (TypeError, ValueError):
            raise UnsupportedSpectrumError(f"{what}: tuple entries must be numeric arrays, got "
                                           f"{type(v).__name__}") from None
        arrays.append(a)
    if any(a.ndim != 1 for a in arrays) or len({a.size for a in arrays}) != 1:
        raise ValueError(f"{what}: arrays must be 1-D and of equal length, got shapes {[a.shape for a in arrays]}")
    return arrays


def _source_arrays(source) -> tuple[np.ndarray, np.ndarray, str]:
    """Wavelength [Å], flux and a name of a clone source (see the module docstring)."""
    if isinstance(source, (str, Path)):
        wavelength, flux = load_clone_source(source)
        return wavelength, flux, str(source)
    if isinstance(source, tuple) and len(source) in (2, 3):
        wavelength, flux = _pair(source[:2], "clone source")
        return wavelength, flux, "arrays"
    if hasattr(source, "spectral_axis") and hasattr(source, "flux"):
        import astropy.units as u

        try:
            wavelength = u.Quantity(source.spectral_axis).to_value(u.AA, equivalencies=u.spectral())
        except (u.UnitsError, TypeError) as exc:
            raise ValueError(f"clone source: spectral_axis cannot be converted to Angstrom ({exc})") from None
        flux = np.asarray(getattr(source.flux, "value", source.flux), dtype=np.float64)
        if flux.ndim != 1:
            raise ValueError(f"clone source: a Spectrum1D with flux of shape {flux.shape}; pass one 1-D spectrum")
        return np.asarray(wavelength, dtype=np.float64), flux, "Spectrum1D"
    if hasattr(source, "wavelength") and hasattr(source, "flux"):
        wavelength, flux = _pair((source.wavelength, source.flux), "clone source")
        return wavelength, flux, str(getattr(source, "name", "") or type(source).__name__)
    raise UnsupportedSpectrumError(
        f"cannot clone a {type(source).__name__}: pass a path, a (wavelength, flux) tuple, a Spectrum1D or an "
        "object with wavelength and flux")


def _observed(observed) -> ObservedSpectrum:
    """An :class:`ObservedSpectrum` from what :func:`transfer` accepts (see the module docstring)."""
    if isinstance(observed, ObservedSpectrum):
        return observed
    if isinstance(observed, (str, Path)) or hasattr(observed, "spectral_axis"):
        return load_observed(observed, min_pixels_per_segment=10)
    if isinstance(observed, tuple):
        if len(observed) != 3:
            raise ValueError("observed arrays must be (wavelength, flux, error): blasé weights pixels by 1/error^2")
        wavelength, flux, error = _pair(observed, "observed spectrum")
        return ObservedSpectrum(wavelength, flux, error, np.zeros(wavelength.size, int), np.array([1]),
                                name="arrays", metadata={"format": "arrays", "wavelength_unit": "Angstrom"})
    if hasattr(observed, "wavelength") and hasattr(observed, "flux") and hasattr(observed, "ivar"):
        wavelength, flux, ivar = _pair((observed.wavelength, observed.flux, observed.ivar), "observed spectrum")
        error = np.where(ivar > 0, 1 / np.sqrt(np.where(ivar > 0, ivar, 1.0)), np.nan)
        return ObservedSpectrum(wavelength, flux, error, np.zeros(wavelength.size, int), np.array([1]),
                                name=type(observed).__name__, metadata={"format": "Spectrum"})
    raise UnsupportedSpectrumError(
        f"cannot transfer to a {type(observed).__name__}: pass a path, (wavelength, flux, error) arrays, a "
        "Spectrum1D with uncertainty, a Spectrum or an ObservedSpectrum")


def line_qtable(model: LineModel):
    """The lines of a :class:`LineModel` as a ``QTable``: ``centre``, ``fwhm``, ``equivalent_width``,
    ``amplitude``, ``sigma``, ``gamma`` [Å] and ``depth`` (dimensionless), one row per line sorted by centre
    (values of :meth:`LineModel.line_table`)."""
    import astropy.units as u
    from astropy.table import QTable

    lines = model.line_table()
    order = np.argsort(lines["centre_angstrom"])
    table = QTable()
    for column, key in (("centre", "centre_angstrom"), ("depth", "depth"), ("fwhm", "fwhm_angstrom"),
                        ("equivalent_width", "equivalent_width_angstrom"), ("amplitude", "amplitude_angstrom"),
                        ("sigma", "sigma_angstrom"), ("gamma", "gamma_angstrom")):
        values = np.asarray(lines[key], dtype=np.float64)[order]
        table[column] = values if key == "depth" else values * u.AA
    return table


@dataclass
class Clone:
    """A cloned line model with its source spectrum (result of :func:`clone`).

    Attributes
    ----------
    result : CloneResult
        The fit (``model``, ``guesses``, ``history``, ``rms_residual``...).
    wavelength, flux : array
        The source spectrum [Å, continuum = 1].
    name : str
    """

    result: CloneResult
    wavelength: np.ndarray
    flux: np.ndarray
    name: str = ""

    @property
    def model(self) -> LineModel:
        return self.result.model

    @property
    def n_lines(self) -> int:
        return self.result.model.n_lines

    @property
    def rms_residual(self) -> float:
        """rms of source − clone over the fitted pixels (continuum units)."""
        return self.result.rms_residual

    def model_flux(self, wavelength=None) -> np.ndarray:
        """The clone's spectrum on ``wavelength`` [Å] (default: the source's pixels)."""
        import torch

        grid = self.wavelength if wavelength is None else np.asarray(wavelength, dtype=np.float64)
        with torch.inference_mode():
            return self.model(torch.from_numpy(grid)).double().numpy()

    def to_table(self):
        """The cloned lines as a ``QTable`` with units (:func:`line_qtable`)."""
        table = line_qtable(self.model)
        table.meta.update(source=self.name, rms_residual=self.rms_residual)
        return table

    def plot(self, ax=None):
        """Source (black) and clone (red) against wavelength [Å] in ``ax`` (a new figure when None); returns
        the Axes."""
        from ..figures import axes_for

        _, ax = axes_for(ax, figsize=(10, 3.5))
        ax.plot(self.wavelength, self.flux, color="k", lw=0.7, label="source")
        ax.plot(self.wavelength, self.model_flux(), color="tab:red", lw=0.7, label=f"clone ({self.n_lines} lines)")
        ax.set_xlabel("wavelength [Å]")
        ax.set_ylabel("normalised flux")
        ax.legend(loc="lower left", fontsize=8)
        return ax

    def transfer(self, observed, **options) -> "Transfer":
        """:func:`transfer` of this clone to ``observed``."""
        return transfer(self, observed, **options)


@dataclass
class Transfer:
    """A clone transferred to an observed spectrum (result of :func:`transfer`).

    Attributes
    ----------
    result : TransferResult
        The fit (``model``, ``rv_km_s``, ``vsini_km_s``, ``resolution``, rms residuals...).
    observed : ObservedSpectrum
    """

    result: TransferResult
    observed: ObservedSpectrum

    @property
    def rv(self):
        """Radial velocity (astropy Quantity, km/s)."""
        import astropy.units as u

        return self.result.rv_km_s * u.km / u.s

    @property
    def vsini(self):
        """Projected rotational velocity (astropy Quantity, km/s)."""
        import astropy.units as u

        return self.result.vsini_km_s * u.km / u.s

    def model_flux(self) -> np.ndarray:
        """The fitted model on the observed pixels (continuum included, flux units of the data)."""
        import torch

        from .extrinsic import scale_to_segments

        spec = self.observed
        x_scaled = torch.from_numpy(scale_to_segments(spec.wavelength, spec.segment)).float()
        with torch.inference_mode():
            flux = self.result.model(torch.from_numpy(spec.wavelength), x_scaled,
                                     torch.from_numpy(spec.segment.astype(np.int64)))
        return flux.double().numpy()

    def to_table(self):
        """The transferred stellar lines (rest-frame centres; amplitudes and widths as fitted) as a ``QTable``
        with units; ``meta`` holds ``rv`` and ``vsini`` [km/s], ``resolution`` and both rms residuals."""
        table = line_qtable(self.result.model.stellar)
        r = self.result
        table.meta.update(rv_km_s=r.rv_km_s, vsini_km_s=r.vsini_km_s, resolution=r.resolution,
                          baseline_rms=r.baseline_rms, transfer_rms=r.transfer_rms,
                          n_telluric_lines=r.n_telluric_lines, observed=self.observed.name)
        return table

    def plot(self, ax=None):
        """Observed (black) and transferred model (red) against wavelength [Å] in ``ax``; returns the Axes."""
        from ..figures import axes_for

        _, ax = axes_for(ax, figsize=(10, 3.5))
        spec = self.observed
        ax.plot(spec.wavelength, spec.flux, color="k", lw=0.7, label="observed")
        ax.plot(spec.wavelength, self.model_flux(), color="tab:red", lw=0.7,
                label=f"transfer (RV {self.result.rv_km_s:.2f} km/s, vsini {self.result.vsini_km_s:.1f} km/s)")
        ax.set_xlabel("wavelength [Å]")
        ax.set_ylabel("flux")
        ax.legend(loc="lower left", fontsize=8)
        return ax


def clone(source, *, wavelength_min: float | None = None, wavelength_max: float | None = None,
          progress: bool = False, **options) -> Clone:
    """Clone a continuum-normalised synthetic spectrum into a line model (blasé §3).

    Parameters
    ----------
    source : path, (wavelength, flux) tuple, Spectrum1D, or an object with ``wavelength`` and ``flux``
        The synthetic spectrum [Å, continuum = 1] (see the module docstring).
    wavelength_min, wavelength_max : float, optional
        Cut the source to this range [Å].
    progress : bool
        Show the trainer's progress bar (off by default).
    **options
        Passed to :func:`stellarnn.blase.fitting.clone_spectrum` (``epochs``, ``lr``, ``prominence``,
        ``profile``, ``form``...).

    Returns
    -------
    Clone

    Raises
    ------
    TypeError
        (:class:`UnsupportedSpectrumError`) an input type that is not a spectrum.
    """
    wavelength, flux, name = _source_arrays(source)
    from .sources import cut_wavelength_range

    wavelength, flux = cut_wavelength_range(wavelength, flux, wavelength_min, wavelength_max, name or "the source")
    result = clone_spectrum(wavelength, flux, progress=progress, **options)
    return Clone(result, wavelength, flux, name)


def transfer(clone_or_model, observed, *, progress: bool = False, **options) -> Transfer:
    """Transfer a clone to an observed spectrum: RV, vsini, resolution, continuum, line strengths (blasé §4).

    Parameters
    ----------
    clone_or_model : Clone or LineModel
        The result of :func:`clone` (or a cloned :class:`LineModel`, e.g. read back from a checkpoint).
    observed : path, (wavelength, flux, error) tuple, Spectrum1D, Spectrum or ObservedSpectrum
        The observation (see the module docstring).
    progress : bool
        Show the trainer's progress bars (off by default).
    **options
        Passed to :func:`stellarnn.blase.fitting.transfer_spectrum` (``epochs``, ``baseline_epochs``,
        ``tellurics``, ``rv_grid_km_s``, ``resolution_guess``...).

    Returns
    -------
    Transfer
    """
    if isinstance(clone_or_model, Clone):
        model = clone_or_model.model
    elif isinstance(clone_or_model, LineModel):
        model = clone_or_model
    else:
        raise UnsupportedSpectrumError(f"transfer needs a Clone or a LineModel, got {type(clone_or_model).__name__}")
    spec = _observed(observed)
    return Transfer(transfer_spectrum(model, spec, progress=progress, **options), spec)
