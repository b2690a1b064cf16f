"""Faddeeva function w(z) = exp(-z²) erfc(-iz) in torch (batched, differentiable): the one Voigt
function of the package (blasé's line profiles, the Stokes Milne-Eddington synthesis).

Weideman's rational expansion (J. A. C. Weideman 1994, "Computation of the complex error
function", SIAM J. Numer. Anal. 31, 1497, eq. 38-39): with L = (N/√2)^½ and
Z = (L + iz)/(L − iz),

    w(z) ≈ 2 p(Z) / (L − iz)² + 1 / (√π (L − iz)),       Im z ≥ 0,

where p is a polynomial of degree N−1 whose coefficients are the Fourier coefficients of
f(t) = exp(−t²)(L² + t²) on the map t = L tan(θ/2), obtained once here with an FFT (float64).
With N = 24 terms (the default) the relative error in the upper half plane is below ~1e-9, with
N = 32 below ~1e-12 (tested against ``scipy.special.wofz``).

Derivatives use the exact identity w'(z) = −2z w(z) + 2i/√π (Abramowitz & Stegun 7.1.20), in a
custom autograd function with both reverse (backward) and forward (jvp) rules, so Jacobians for
Levenberg-Marquardt cost one extra complex multiply. The evaluation is done in slices of
``CHUNK`` elements so the Horner recursion stays in cache (about 20× faster on large batches).

In spectral-line work z = v + i a (v the reduced wavelength, a ≥ 0 the damping) and
w = H(a, v) + i L(a, v): H is the Voigt function and L the Faraday-Voigt (dispersion) function
(Landi Degl'Innocenti & Landolfi 2004, "Polarization in Spectral Lines", §5.4).

Entry points: :func:`faddeeva` (complex in, complex out), :func:`faddeeva_parts` (real and
imaginary parts of z in, Re w and Im w out, in the input's real dtype) and :func:`voigt_faraday`
(the normalised absorption and dispersion profiles).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

SQRT_PI = math.sqrt(math.pi)
DEFAULT_TERMS = 24
CHUNK = 1 << 15


@lru_cache(maxsize=8)
def _weideman_coefficients(n_terms: int) -> tuple[float, tuple[float, ...]]:
    """Return (L, polynomial coefficients highest power first) of Weideman's expansion (float64)."""
    m = 2 * n_terms
    m2 = 2 * m
    k = np.arange(-m + 1, m)
    scale = math.sqrt(n_terms / math.sqrt(2.0))
    theta = k * math.pi / m
    t = scale * np.tan(theta / 2.0)
    f = np.exp(-t * t) * (scale * scale + t * t)
    f = np.concatenate(([0.0], f))
    coeffs = np.real(np.fft.fft(np.fft.fftshift(f))) / m2
    coeffs = coeffs[1:n_terms + 1][::-1]
    return scale, tuple(float(c) for c in coeffs)


def _faddeeva_values(z: torch.Tensor, n_terms: int) -> torch.Tensor:
    """Evaluate Weideman's expansion (no autograd), slice by slice over the flattened input."""
    scale, coeffs = _weideman_coefficients(n_terms)
    flat = z.reshape(-1)
    out = torch.empty_like(flat)
    for start in range(0, flat.numel(), CHUNK):
        zc = flat[start:start + CHUNK]
        denom = scale - 1j * zc
        big_z = (scale + 1j * zc) / denom
        poly = torch.full_like(zc, coeffs[0])
        for c in coeffs[1:]:
            poly.mul_(big_z).add_(c)
        out[start:start + CHUNK] = 2.0 * poly / (denom * denom) + (1.0 / SQRT_PI) / denom
    return out.reshape(z.shape)


def _derivative(z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """w'(z) = −2 z w + 2i/√π (Abramowitz & Stegun 1964, eq. 7.1.20)."""
    return -2.0 * z * w + 2j / SQRT_PI


class _Faddeeva(torch.autograd.Function):
    """w(z) with analytic reverse- and forward-mode derivatives (w is holomorphic)."""

    @staticmethod
    def forward(z, n_terms):
        return _faddeeva_values(z, n_terms)

    @staticmethod
    def setup_context(ctx, inputs, output):
        z, _ = inputs
        ctx.save_for_backward(z, output)
        ctx.save_for_forward(z, output)

    @staticmethod
    def backward(ctx, grad_output):
        z, w = ctx.saved_tensors
        # PyTorch's convention for holomorphic f: grad_z = grad_out * conj(f'(z))
        return grad_output * _derivative(z, w).conj(), None

    @staticmethod
    def jvp(ctx, z_tangent, _):
        z, w = ctx.saved_tensors
        return _derivative(z, w) * z_tangent


def faddeeva(z: torch.Tensor, n_terms: int = DEFAULT_TERMS) -> torch.Tensor:
    """Faddeeva function w(z) for complex ``z`` with ``Im z >= 0`` (any shape).

    Parameters
    ----------
    z : complex tensor
        Arguments in the closed upper half plane (Im z ≥ 0); a real tensor is taken as Im z = 0.
    n_terms : int
        Number of terms N of the rational expansion (24: ~1e-9, 32: ~1e-12 relative accuracy).

    Returns
    -------
    complex tensor of the shape of ``z``; differentiable (reverse and forward mode).
    """
    if not torch.is_complex(z):
        z = torch.complex(z, torch.zeros_like(z))
    if z.numel() and bool((z.imag < 0).any()):
        raise ValueError("faddeeva: this expansion is valid only for Im z >= 0 (damping must be >= 0)")
    if not 4 <= int(n_terms) <= 64:
        raise ValueError("n_terms must be between 4 and 64")
    return _Faddeeva.apply(z, int(n_terms))


def faddeeva_parts(x: torch.Tensor, y: torch.Tensor, n_terms: int = DEFAULT_TERMS
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Re w, Im w)`` of the Faddeeva function at ``z = x + iy``, ``y ≥ 0``, for real tensors.

    Parameters
    ----------
    x, y : real tensors (broadcast against each other; integers are taken as float64)
        Real and imaginary parts of z; ``y`` must be ≥ 0.
    n_terms : int
        As for :func:`faddeeva`.

    Returns
    -------
    (u, v) real tensors of the broadcast shape and floating dtype of the inputs (float32 inputs are
    evaluated in complex64); differentiable in ``x`` and ``y``.

    Raises
    ------
    ValueError
        If any ``y`` is negative.
    """
    x, y = torch.broadcast_tensors(torch.as_tensor(x), torch.as_tensor(y))
    dtype = torch.result_type(x, y)
    if not dtype.is_floating_point:
        dtype = torch.float64
    x, y = x.to(dtype), y.to(dtype)
    if y.numel() and bool((y < 0).any()):
        raise ValueError("faddeeva: the imaginary part y must be >= 0 (damping must be >= 0)")
    w = faddeeva(torch.complex(x, y), n_terms)
    return w.real, w.imag


def voigt_faraday(damping: torch.Tensor, v: torch.Tensor, n_terms: int = DEFAULT_TERMS
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised absorption and dispersion profiles φ, ψ at reduced wavelength ``v``.

    φ(a, v) + iψ(a, v) = w(v + ia)/√π, so ∫φ dv = 1 and ψ is the Faraday-Voigt (dispersion)
    profile of the same normalisation (LL04 eq. 5.43 convention: H + iL = w).

    Parameters
    ----------
    damping : tensor, broadcastable against ``v``; a ≥ 0 in Doppler-width units
    v : tensor; (λ − λ_c)/Δλ_D, dimensionless

    Returns
    -------
    (phi, psi) real tensors of the broadcast shape.
    """
    w = faddeeva(torch.complex(v, torch.broadcast_to(damping, v.shape).to(v.dtype)), n_terms)
    return w.real / SQRT_PI, w.imag / SQRT_PI
