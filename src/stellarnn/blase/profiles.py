"""Line profiles in torch: Gaussian, Lorentzian, pseudo-Voigt and an exact Voigt (the shared Faddeeva
function of :mod:`stellarnn.numerics.faddeeva`).

All profiles are area-normalised in the abscissa unit (here Angstrom): ``∫ V(x) dx = 1``, so a line
of amplitude ``a`` (Angstrom) times the profile is dimensionless. Widths are the Gaussian standard
deviation ``sigma`` and the Lorentzian half width at half maximum ``gamma`` (same unit as ``x``).

References
----------
Thompson, Cox & Hastings 1987, J. Appl. Cryst. 20, 79 (pseudo-Voigt FWHM and mixing ratio);
Ida, Ando & Toraya 2000, J. Appl. Cryst. 33, 1311 (accuracy of that approximation, ~1 %);
Weideman 1994, SIAM J. Numer. Anal. 31, 1497 (rational expansion of the Faddeeva function);
Olivero & Longbothum 1977, JQSRT 17, 233 (Voigt FWHM approximation, 0.02 %);
Gully-Santiago & Morley 2022, ApJ 941, 200 (blasé: line model with ln amplitude, ln sigma, ln gamma).
"""
from __future__ import annotations

import math

import torch

from ..constants import FWHM_PER_SIGMA
from ..numerics.faddeeva import faddeeva_parts

SQRT_2PI = math.sqrt(2.0 * math.pi)
SQRT_PI = math.sqrt(math.pi)

# Thompson et al. 1987 coefficients for the combined FWHM and the Lorentzian fraction eta.
_TCH_FWHM_COEFFS = (1.0, 2.69269, 2.42843, 4.47163, 0.07842, 1.0)
_TCH_ETA_COEFFS = (1.36603, -0.47719, 0.11116)


def gaussian(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Area-normalised Gaussian ``exp(-x²/2σ²) / (σ√(2π))`` (per unit of ``x``)."""
    return torch.exp(-0.5 * (x / sigma) ** 2) / (sigma * SQRT_2PI)


def lorentzian(x: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Area-normalised Lorentzian ``γ / (π (x² + γ²))`` with half width at half maximum ``γ``."""
    return gamma / (math.pi * (x * x + gamma * gamma))


def pseudo_voigt_fwhm_eta(sigma: torch.Tensor, gamma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Combined FWHM ``f`` and Lorentzian fraction ``η`` of the Thompson et al. (1987) pseudo-Voigt.

    ``f_G = 2√(2 ln 2) σ``, ``f_L = 2γ``,
    ``f = (f_G⁵ + 2.69269 f_G⁴f_L + 2.42843 f_G³f_L² + 4.47163 f_G²f_L³ + 0.07842 f_G f_L⁴ + f_L⁵)^(1/5)``,
    ``η = 1.36603 r − 0.47719 r² + 0.11116 r³`` with ``r = f_L / f``.
    """
    f_g = FWHM_PER_SIGMA * sigma
    f_l = 2.0 * gamma
    c = _TCH_FWHM_COEFFS
    f5 = (c[0] * f_g ** 5 + c[1] * f_g ** 4 * f_l + c[2] * f_g ** 3 * f_l ** 2 + c[3] * f_g ** 2 * f_l ** 3
          + c[4] * f_g * f_l ** 4 + c[5] * f_l ** 5)
    fwhm = f5 ** 0.2
    r = f_l / fwhm
    e = _TCH_ETA_COEFFS
    eta = e[0] * r + e[1] * r * r + e[2] * r ** 3
    return fwhm, eta


def pseudo_voigt_from_fwhm_eta(x: torch.Tensor, fwhm: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
    """``η L(x; f/2) + (1 − η) G(x; f/2.3548)`` from a precomputed combined FWHM ``f`` and fraction ``η``."""
    return eta * lorentzian(x, 0.5 * fwhm) + (1.0 - eta) * gaussian(x, fwhm / FWHM_PER_SIGMA)


def pseudo_voigt(x: torch.Tensor, sigma: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Thompson et al. (1987) pseudo-Voigt ``η L(x; f/2) + (1 − η) G(x; f/2.3548)``, area-normalised.

    Both components share the combined FWHM ``f`` of :func:`pseudo_voigt_fwhm_eta` (this is the
    published approximation; its peak and wings agree with the exact Voigt to about 1 % of the peak,
    Ida et al. 2000).
    """
    fwhm, eta = pseudo_voigt_fwhm_eta(sigma, gamma)
    return pseudo_voigt_from_fwhm_eta(x, fwhm, eta)


def voigt(x: torch.Tensor, sigma: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Exact, area-normalised Voigt profile ``Re w((x + iγ)/(σ√2)) / (σ√(2π))``.

    w is the shared Faddeeva function (:func:`stellarnn.numerics.faddeeva.faddeeva_parts`).
    """
    scale = sigma * math.sqrt(2.0)
    u, _ = faddeeva_parts(x / scale, gamma / scale)
    return u / (sigma * SQRT_2PI)


def voigt_fwhm(sigma: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Voigt FWHM, Olivero & Longbothum (1977): ``0.5346 f_L + √(0.2166 f_L² + f_G²)`` (±0.02 %)."""
    f_g = FWHM_PER_SIGMA * sigma
    f_l = 2.0 * gamma
    return 0.5346 * f_l + torch.sqrt(0.2166 * f_l * f_l + f_g * f_g)


PROFILES = {"pseudo_voigt": pseudo_voigt, "voigt": voigt}
