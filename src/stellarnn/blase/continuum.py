"""Upper-envelope continuum estimate for noise-free synthetic spectra (before line finding).

An asymmetrically clipped least-squares cubic B-spline: fit all pixels, then repeatedly keep only
the pixels above ``fit − clip_low · rms`` (absorption lines fall below the continuum, so the fit
climbs to the upper envelope). The procedure is the usual "iterative rejection of points below the
fit" used by IRAF ``continuum`` (Tody 1986) and by blasé's examples before line finding.

Units: wavelength in Angstrom, flux in any unit (the returned continuum is in the same unit).
"""
from __future__ import annotations

import numpy as np
from scipy.interpolate import make_lsq_spline

from .line_finder import check_spectrum


def fit_continuum(wavelength, flux, knot_spacing_angstrom: float = 25.0, iterations: int = 12,
                  clip_low: float = 0.5, clip_high: float = 3.0) -> np.ndarray:
    """Continuum (same unit as ``flux``) at every pixel.

    Parameters
    ----------
    wavelength, flux : array (P,)
        Spectrum; wavelength strictly increasing (Angstrom).
    knot_spacing_angstrom : float
        Interior knot spacing of the cubic spline: larger than the widest line wings to bridge them.
    iterations : int
        Rejection passes.
    clip_low, clip_high : float
        Pixels more than ``clip_low`` rms below or ``clip_high`` rms above the fit are rejected.
    """
    wavelength, flux = check_spectrum(wavelength, flux)
    if knot_spacing_angstrom <= 0:
        raise ValueError("knot_spacing_angstrom must be > 0")
    span = wavelength[-1] - wavelength[0]
    n_interior = max(int(span / knot_spacing_angstrom) - 1, 0)
    interior = np.linspace(wavelength[0], wavelength[-1], n_interior + 2)[1:-1]
    knots = np.concatenate([[wavelength[0]] * 4, interior, [wavelength[-1]] * 4])
    keep = np.ones(wavelength.size, dtype=bool)
    fit = np.full_like(flux, np.median(flux))
    for _ in range(iterations):
        # drop knots whose span holds no kept pixel (Schoenberg-Whitney condition)
        k_use = _usable_knots(knots, wavelength[keep])
        spline = make_lsq_spline(wavelength[keep], flux[keep], k_use, k=3)
        fit = spline(wavelength)
        resid = flux - fit
        rms = np.sqrt(np.mean(resid[keep] ** 2))
        if rms == 0:
            break
        new_keep = (resid > -clip_low * rms) & (resid < clip_high * rms)
        if new_keep.sum() < 8 or np.array_equal(new_keep, keep):
            break
        keep = new_keep
    return fit


def _usable_knots(knots: np.ndarray, x: np.ndarray) -> np.ndarray:
    interior = knots[4:-4]
    if interior.size == 0:
        return knots
    counts = np.histogram(x, bins=np.concatenate([[knots[0]], interior, [knots[-1]]]))[0]
    ok = np.ones(interior.size, dtype=bool)
    # remove an interior knot when either adjacent interval holds fewer than 2 points
    for attempt in range(3):
        bad = np.where(counts < 2)[0]
        if bad.size == 0:
            break
        drop = np.clip(bad, 0, interior.size - 1)
        ok[drop] = False
        interior = interior[ok]
        ok = np.ones(interior.size, dtype=bool)
        counts = np.histogram(x, bins=np.concatenate([[knots[0]], interior, [knots[-1]]]))[0]
    return np.concatenate([[knots[0]] * 4, interior, [knots[-1]] * 4])


def normalise_continuum(wavelength, flux, **kwargs) -> np.ndarray:
    """``flux / fit_continuum(wavelength, flux, **kwargs)`` (dimensionless, continuum ≈ 1)."""
    cont = fit_continuum(wavelength, flux, **kwargs)
    if np.any(cont <= 0):
        raise ValueError("continuum fit is not positive everywhere; use a larger knot spacing")
    return np.asarray(flux, dtype=np.float64) / cont
