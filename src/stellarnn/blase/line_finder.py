"""Find absorption lines in a continuum-normalised high-resolution spectrum and guess their shapes.

Following blasé (Gully-Santiago & Morley 2022, ApJ 941, 200, section 3.1): a peak finder on
``1 − flux`` with a prominence threshold (0.005–0.03 in the paper) and a minimum separation
(4 pixels), then per line a first guess of centre, amplitude, Gaussian σ and Lorentzian γ.

Units: wavelengths, σ, γ and amplitudes in Angstrom; flux dimensionless (continuum = 1).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.signal import find_peaks, peak_widths

from ..constants import FWHM_PER_SIGMA
from .profiles import pseudo_voigt, voigt

FORMS = ("tau", "multiplicative")


@dataclass
class LineGuesses:
    """First guesses for a set of lines (arrays of equal length, Angstrom unless stated)."""

    centres: np.ndarray
    amplitudes: np.ndarray
    sigmas: np.ndarray
    gammas: np.ndarray
    depths: np.ndarray  # dimensionless, 1 - flux at the line's pixel
    prominences: np.ndarray  # dimensionless

    def __len__(self) -> int:
        return len(self.centres)

    def select(self, keep: np.ndarray) -> "LineGuesses":
        """A subset (boolean mask or index array)."""
        return LineGuesses(*(np.asarray(getattr(self, f))[keep] for f in
                             ("centres", "amplitudes", "sigmas", "gammas", "depths", "prominences")))


def check_spectrum(wavelength, flux, name: str = "spectrum") -> tuple[np.ndarray, np.ndarray]:
    """Validate a 1-D spectrum: equal lengths, finite, strictly increasing wavelength.

    Raises
    ------
    ValueError
        Empty, wrong shape, non-finite values or non-increasing wavelengths.
    """
    wavelength = np.asarray(wavelength, dtype=np.float64)
    flux = np.asarray(flux, dtype=np.float64)
    if wavelength.ndim != 1 or flux.ndim != 1:
        raise ValueError(f"{name}: wavelength and flux must be 1-D, got shapes {wavelength.shape}, {flux.shape}")
    if wavelength.size < 3:
        raise ValueError(f"{name}: needs at least 3 pixels, got {wavelength.size}")
    if wavelength.shape != flux.shape:
        raise ValueError(f"{name}: wavelength {wavelength.shape} and flux {flux.shape} differ in length")
    if not np.all(np.isfinite(wavelength)):
        raise ValueError(f"{name}: wavelength has NaN/inf values")
    if not np.all(np.isfinite(flux)):
        raise ValueError(f"{name}: flux has {int((~np.isfinite(flux)).sum())} NaN/inf values (mask them first)")
    if not np.all(np.diff(wavelength) > 0):
        raise ValueError(f"{name}: wavelength must be strictly increasing")
    return wavelength, flux


def widths_from_fwhm(fwhm: np.ndarray, lorentz_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Split a Voigt FWHM into (σ, γ) with ``f_L = lorentz_fraction · FWHM``.

    Inverts Olivero & Longbothum (1977), ``f = 0.5346 f_L + √(0.2166 f_L² + f_G²)``, for ``f_G``.
    """
    if not 0.0 <= lorentz_fraction < 1.0:
        raise ValueError("lorentz_fraction must be in [0, 1)")
    f_l = lorentz_fraction * fwhm
    f_g = np.sqrt(np.clip((fwhm - 0.5346 * f_l) ** 2 - 0.2166 * f_l ** 2, 1e-30, None))
    return f_g / FWHM_PER_SIGMA, 0.5 * f_l + 1e-6 * fwhm  # γ > 0 keeps ln γ finite


def peak_profile_value(sigmas: np.ndarray, gammas: np.ndarray, profile: str) -> np.ndarray:
    """Profile value at line centre, V(0; σ, γ), in 1/Angstrom."""
    fn = {"pseudo_voigt": pseudo_voigt, "voigt": voigt}[profile]
    s = torch.as_tensor(sigmas, dtype=torch.float64)
    g = torch.as_tensor(gammas, dtype=torch.float64)
    return fn(torch.zeros_like(s), s, g).numpy()


def amplitudes_from_depths(depths: np.ndarray, peak_values: np.ndarray, form: str) -> np.ndarray:
    """Amplitude ``a`` (Angstrom) giving central depth ``d`` for a line of peak profile value V(0).

    Optical-depth form ``F = exp(−a V)``: ``a = −ln(1 − d)/V(0)``; multiplicative ``F = 1 − a V``: ``a = d/V(0)``.
    """
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    d = np.clip(depths, 1e-5, 0.999)
    return (-np.log1p(-d) if form == "tau" else d) / peak_values


def find_lines(wavelength, flux, prominence: float = 0.01, min_separation_pixels: int = 4,
               lorentz_fraction: float = 0.2, profile: str = "pseudo_voigt", form: str = "tau",
               min_fwhm_pixels: float = 1.0, max_fwhm_angstrom: float | None = None) -> LineGuesses:
    """Find absorption lines and first guesses of their parameters.

    Parameters
    ----------
    wavelength, flux : array (P,)
        Continuum-normalised spectrum (Angstrom; flux 1 at the continuum), wavelength increasing.
    prominence : float
        Minimum prominence of a dip in ``1 − flux`` (blasé uses 0.005–0.03).
    min_separation_pixels : int
        Minimum distance between two line centres, in pixels (blasé: 4).
    lorentz_fraction : float
        Fraction of the measured FWHM assigned to the Lorentzian FWHM ``2γ`` in the first guess.
    profile, form : str
        Profile (``"pseudo_voigt"`` or ``"voigt"``) and spectrum form (``"tau"``: ``exp(−Σ a V)``;
        ``"multiplicative"``: ``Π(1 − a V)``) the amplitudes are computed for.
    min_fwhm_pixels, max_fwhm_angstrom : float
        Bounds on the measured FWHM (blends can give huge widths).

    Returns
    -------
    LineGuesses
        Sorted by centre. ``depths`` are ``1 − flux`` at the peak pixel.
    """
    wavelength, flux = check_spectrum(wavelength, flux)
    if prominence <= 0:
        raise ValueError("prominence must be > 0")
    if min_separation_pixels < 1:
        raise ValueError("min_separation_pixels must be >= 1")
    if profile not in ("pseudo_voigt", "voigt"):
        raise ValueError(f"unknown profile {profile!r}")
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    absorption = 1.0 - flux
    peaks, props = find_peaks(absorption, prominence=prominence, distance=min_separation_pixels)
    if peaks.size == 0:
        empty = np.zeros(0)
        return LineGuesses(empty, empty, empty, empty, empty, empty)
    width_px, _, left, right = peak_widths(absorption, peaks, rel_height=0.5)
    pixel = np.arange(wavelength.size, dtype=np.float64)
    fwhm = np.interp(right, pixel, wavelength) - np.interp(left, pixel, wavelength)
    local_step = np.gradient(wavelength)[peaks]
    fwhm = np.maximum(fwhm, min_fwhm_pixels * local_step)
    if max_fwhm_angstrom is not None:
        fwhm = np.minimum(fwhm, max_fwhm_angstrom)
    sigmas, gammas = widths_from_fwhm(fwhm, lorentz_fraction)
    depths = absorption[peaks]
    amps = amplitudes_from_depths(depths, peak_profile_value(sigmas, gammas, profile), form)
    return LineGuesses(centres=wavelength[peaks].copy(), amplitudes=amps, sigmas=sigmas, gammas=gammas,
                       depths=depths, prominences=props["prominences"])
