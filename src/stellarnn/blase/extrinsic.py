"""Extrinsic and instrumental models: Doppler shift, rotation, instrumental resolution, resampling, continuum.

All convolutions act on a grid uniform in ln λ, i.e. of constant velocity step ``dv`` (km/s), where
both the rotational and the instrumental kernels are wavelength independent. Kernels are
integrated analytically over each pixel, so they stay normalised and smooth in their parameters
even when narrower than a pixel.

References
----------
Gray 2005, *The Observation and Analysis of Stellar Photospheres*, 3rd ed., eq. 18.14 (rotational
broadening kernel with linear limb darkening ε);
Gully-Santiago & Morley 2022, ApJ 941, 200 (blasé extrinsic model: RV, vsini, instrument, continuum).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..constants import FWHM_PER_SIGMA, SPEED_OF_LIGHT_KM_S


def log_uniform_grid(wavelength_min: float, wavelength_max: float, velocity_step_km_s: float) -> np.ndarray:
    """Wavelengths (Angstrom) from ``wavelength_min`` to at least ``wavelength_max`` with
    ``λ_{k+1}/λ_k = exp(dv/c)``."""
    if not (0 < wavelength_min < wavelength_max):
        raise ValueError("need 0 < wavelength_min < wavelength_max")
    if velocity_step_km_s <= 0:
        raise ValueError("velocity_step_km_s must be > 0")
    dlnl = velocity_step_km_s / SPEED_OF_LIGHT_KM_S
    n = int(math.ceil(math.log(wavelength_max / wavelength_min) / dlnl)) + 1
    return wavelength_min * np.exp(dlnl * np.arange(n))


def doppler_factor(rv_km_s: torch.Tensor) -> torch.Tensor:
    """``1 + v/c``: observed = rest × factor (non-relativistic, as in blasé)."""
    return 1.0 + rv_km_s / SPEED_OF_LIGHT_KM_S


def _rotation_cdf(x: torch.Tensor, limb_darkening: float) -> torch.Tensor:
    """Cumulative of Gray's rotation kernel in ``x = Δv / vsini`` (0 at x ≤ −1, 1 at x ≥ 1).

    Kernel: ``G(x) = [2(1−ε)√(1−x²) + (πε/2)(1−x²)] / [π(1−ε/3)]`` (Gray 2005, eq. 18.14, per unit x).
    Antiderivatives: ``∫√(1−x²) = ½(x√(1−x²) + arcsin x)``, ``∫(1−x²) = x − x³/3``.
    """
    eps = limb_darkening
    x = torch.clamp(x, -1.0 + 1e-7, 1.0 - 1e-7)
    term_sqrt = 0.5 * (x * torch.sqrt(1.0 - x * x) + torch.asin(x))
    term_poly = x - x ** 3 / 3.0
    norm = math.pi * (1.0 - eps / 3.0)
    value = (2.0 * (1.0 - eps) * term_sqrt + 0.5 * math.pi * eps * term_poly) / norm
    return value + 0.5


def rotation_kernel(vsini_km_s: torch.Tensor, velocity_step_km_s: float, half_width_pixels: int,
                    limb_darkening: float = 0.6) -> torch.Tensor:
    """Pixel-integrated rotational broadening kernel (length ``2 h + 1``, sums to 1).

    Parameters
    ----------
    vsini_km_s : tensor scalar
        Projected rotational velocity (km/s), > 0.
    velocity_step_km_s : float
        Grid step (km/s).
    half_width_pixels : int
        Kernel half length ``h``; must cover ``vsini / dv``.
    limb_darkening : float
        Linear limb-darkening coefficient ε in [0, 1].
    """
    if not 0.0 <= limb_darkening <= 1.0:
        raise ValueError("limb_darkening must be in [0, 1]")
    vsini = torch.as_tensor(vsini_km_s)
    dtype = vsini.dtype if vsini.is_floating_point() else torch.float32
    k = torch.arange(-half_width_pixels, half_width_pixels + 1, dtype=dtype, device=vsini.device)
    upper = (k + 0.5) * velocity_step_km_s / vsini
    lower = (k - 0.5) * velocity_step_km_s / vsini
    w = _rotation_cdf(upper, limb_darkening) - _rotation_cdf(lower, limb_darkening)
    return w / w.sum()


def gaussian_kernel(resolution: torch.Tensor, velocity_step_km_s: float, half_width_pixels: int) -> torch.Tensor:
    """Pixel-integrated Gaussian instrumental kernel for resolving power ``R = λ/Δλ_FWHM``.

    FWHM in velocity ``c/R``; ``σ_v = c / (R · 2√(2 ln 2))``. Returns length ``2 h + 1``, sums to 1.
    """
    resolution = torch.as_tensor(resolution)
    dtype = resolution.dtype if resolution.is_floating_point() else torch.float32
    sigma_v = SPEED_OF_LIGHT_KM_S / (resolution * FWHM_PER_SIGMA)
    k = torch.arange(-half_width_pixels, half_width_pixels + 1, dtype=dtype, device=resolution.device)
    scale = sigma_v * math.sqrt(2.0)
    w = 0.5 * (torch.erf((k + 0.5) * velocity_step_km_s / scale) - torch.erf((k - 0.5) * velocity_step_km_s / scale))
    return w / w.sum()


def convolve_same(flux: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Convolve the last axis of ``flux`` with an odd-length, centred ``kernel`` by FFT.

    Edges are extended with the edge values (no darkening at the ends). Output has ``flux``'s shape.
    """
    if kernel.ndim != 1 or kernel.numel() % 2 != 1:
        raise ValueError("kernel must be 1-D with odd length")
    half = kernel.numel() // 2
    if half == 0:
        return flux * kernel[0]
    n = flux.shape[-1]
    left = flux[..., :1].expand(*flux.shape[:-1], half)
    right = flux[..., -1:].expand(*flux.shape[:-1], half)
    padded = torch.cat([left, flux, right], dim=-1)
    size = padded.shape[-1] + kernel.numel() - 1
    nfft = 1 << (size - 1).bit_length()
    spec = torch.fft.rfft(padded, nfft) * torch.fft.rfft(kernel.to(padded.dtype), nfft)
    full = torch.fft.irfft(spec, nfft)
    return full[..., 2 * half: 2 * half + n]


def resample_linear(grid_wavelength: torch.Tensor, grid_flux: torch.Tensor,
                    wavelength: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of ``grid_flux`` (last axis on ``grid_wavelength``) to ``wavelength``.

    Differentiable in ``grid_flux``; points outside the grid take the edge values.
    """
    grid_wavelength = grid_wavelength.double()
    wavelength = torch.as_tensor(wavelength, dtype=torch.float64, device=grid_wavelength.device)
    idx = torch.searchsorted(grid_wavelength, wavelength).clamp(1, grid_wavelength.numel() - 1)
    x0, x1 = grid_wavelength[idx - 1], grid_wavelength[idx]
    t = ((wavelength - x0) / (x1 - x0)).clamp(0.0, 1.0).to(grid_flux.dtype)
    y0, y1 = grid_flux[..., idx - 1], grid_flux[..., idx]
    return y0 + t * (y1 - y0)


def chebyshev_continuum(coefficients: torch.Tensor, x_scaled: torch.Tensor,
                        segment_index: torch.Tensor) -> torch.Tensor:
    """Smooth continuum ``Σ_k c_{s,k} T_k(x)`` for each pixel, with per-segment (e.g. echelle order)
    coefficients ``(n_segments, degree + 1)`` and ``x_scaled`` in [−1, 1] within each segment."""
    coeffs = coefficients[segment_index]  # (P, degree + 1)
    x = x_scaled.to(coeffs.dtype)
    t_prev, t_cur = torch.ones_like(x), x
    total = coeffs[:, 0] * t_prev
    if coeffs.shape[1] > 1:
        total = total + coeffs[:, 1] * t_cur
    for k in range(2, coeffs.shape[1]):  # recurrence over polynomial degree
        t_prev, t_cur = t_cur, 2.0 * x * t_cur - t_prev
        total = total + coeffs[:, k] * t_cur
    return total


def scale_to_segments(wavelength: np.ndarray, segment_index: np.ndarray) -> np.ndarray:
    """Map wavelengths to [−1, 1] within each segment (for :func:`chebyshev_continuum`)."""
    wavelength = np.asarray(wavelength, dtype=np.float64)
    segment_index = np.asarray(segment_index)
    n_seg = int(segment_index.max()) + 1
    lo = np.full(n_seg, np.inf)
    hi = np.full(n_seg, -np.inf)
    np.minimum.at(lo, segment_index, wavelength)
    np.maximum.at(hi, segment_index, wavelength)
    span = np.where(hi > lo, hi - lo, 1.0)
    return 2.0 * (wavelength - lo[segment_index]) / span[segment_index] - 1.0
