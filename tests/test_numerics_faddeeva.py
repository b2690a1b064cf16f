"""Tests of stellarnn.numerics.faddeeva: accuracy against scipy.special.wofz, derivatives, profiles."""
import numpy as np
import pytest
import torch
from scipy.special import wofz

from stellarnn.numerics.faddeeva import faddeeva, faddeeva_parts, voigt_faraday


def test_faddeeva_matches_scipy_in_upper_half_plane():
    rng = np.random.default_rng(1)
    z = rng.uniform(-40, 40, 5000) + 1j * 10 ** rng.uniform(-5, 1.5, 5000)
    z[:50] = z[:50].real  # on the real axis (a = 0)
    for terms, tol in ((24, 2e-9), (32, 2e-12)):
        w = faddeeva(torch.tensor(z), terms).numpy()
        assert np.max(np.abs(w - wofz(z)) / np.abs(wofz(z))) < tol


def test_derivatives_reverse_and_forward_mode():
    z = torch.tensor([0.3 + 0.2j, -2.0 + 0.05j, 5.0 + 1.0j], dtype=torch.complex128, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: faddeeva(x, 32), (z,), check_forward_ad=True)


def test_voigt_profile_normalised_and_dispersion_odd():
    v = torch.linspace(-400, 400, 400001, dtype=torch.float64)
    phi, psi = voigt_faraday(torch.tensor(0.1, dtype=torch.float64), v)
    dv = float(v[1] - v[0])
    # ∫φ dv = 1 up to the Lorentzian wings beyond ±400 (a/π · 2/400 ≈ 1.6e-4)
    assert float(phi.sum() * dv) == pytest.approx(1.0 - 0.1 / np.pi * 2 / 400, abs=2e-6)
    assert torch.allclose(psi, -psi.flip(0), atol=1e-12)
    # a → 0: φ → Gaussian exp(−v²)/√π
    phi0, _ = voigt_faraday(torch.tensor(0.0, dtype=torch.float64), torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert torch.allclose(phi0, torch.exp(-torch.tensor([0.0, 1.0], dtype=torch.float64)) / np.sqrt(np.pi))


def test_bad_input():
    with pytest.raises(ValueError, match="Im z >= 0"):
        faddeeva(torch.tensor([1.0 - 0.1j]))
    with pytest.raises(ValueError, match="n_terms"):
        faddeeva(torch.tensor([1.0 + 0.1j]), 2)


def test_faddeeva_matches_scipy_over_upper_half_plane():
    x = np.linspace(-40, 40, 801)
    y = np.concatenate([[0.0, 1e-6, 1e-3], np.logspace(-2, 2, 25)])
    xx, yy = np.meshgrid(x, y)
    u, v = faddeeva_parts(torch.tensor(xx), torch.tensor(yy))
    ref = wofz(xx + 1j * yy)
    assert np.max(np.abs(u.numpy() + 1j * v.numpy() - ref) / np.abs(ref)) < 1e-9


def test_faddeeva_gradients_match_finite_differences():
    x = torch.tensor([0.3, -2.0, 5.0, 0.0], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0.1, 1.0, 0.01, 3.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: faddeeva_parts(a, b), (x, y))


def test_faddeeva_rejects_lower_half_plane():
    with pytest.raises(ValueError, match="y must be >= 0"):
        faddeeva_parts(torch.tensor([0.0]), torch.tensor([-0.1]))


def test_real_parts_in_float32_follow_the_complex64_evaluation():
    x = torch.tensor([0.0, 1.5, -7.0], dtype=torch.float32)
    y = torch.tensor([0.5, 0.0, 2.0], dtype=torch.float32)
    u, v = faddeeva_parts(x, y)
    assert u.dtype == v.dtype == torch.float32
    ref = wofz(x.double().numpy() + 1j * y.double().numpy())
    np.testing.assert_allclose(u.numpy() + 1j * v.numpy(), ref, rtol=1e-5)
    u_int, _ = faddeeva_parts(torch.tensor([0]), torch.tensor([1]))  # integers: float64
    assert u_int.dtype == torch.float64 and float(u_int) == pytest.approx(wofz(1j).real, rel=1e-12)
