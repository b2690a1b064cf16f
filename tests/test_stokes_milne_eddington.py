import numpy as np
import pytest
import torch

from stellarnn.stokes.milne_eddington import (HINODE_SP_PIXELS, MilneEddington, add_noise, hinode_sp_wavelengths,
                                              unno_rachkovsky)
from stellarnn.stokes.zeeman import FE_I_6301, FE_I_6302, LARMOR_WAVELENGTH_CONSTANT

D = torch.float64


def random_params(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(n, 9, generator=g, dtype=D)
    lo = torch.tensor([0, 0, 0, -4, 20, 1, 0.05, 0.05, 0.5], dtype=D)
    hi = torch.tensor([3000, 180, 180, 4, 45, 30, 0.5, 0.4, 1.0], dtype=D)
    return lo + (hi - lo) * u


def test_hinode_grid():
    wl = hinode_sp_wavelengths()
    assert wl.size == HINODE_SP_PIXELS == 112
    assert wl[0] == pytest.approx(6300.89)
    assert np.diff(wl) == pytest.approx(0.021549)
    assert wl[-1] == pytest.approx(6303.27, abs=0.015)


def test_zero_field_gives_no_polarisation_and_psf_keeps_continuum():
    me = MilneEddington()
    p = random_params(16)
    p[:, 0] = 0.0
    s = me(p)
    assert s.shape == (16, 4, 112)
    assert torch.abs(s[:, 1:]).max() < 1e-14
    flat = p.clone()
    flat[:, 5] = 0.0  # no line opacity
    s = me(flat)
    assert torch.allclose(s[:, 0], (flat[:, 7] + flat[:, 8])[:, None].expand(-1, 112), atol=1e-12)
    assert torch.abs(s[:, 1:]).max() < 1e-14


@pytest.mark.parametrize("line", [FE_I_6301, FE_I_6302])
def test_weak_field_limit(line):
    me = MilneEddington(wavelengths=line.wavelength + np.linspace(-0.4, 0.4, 161), lines=(line,), psf_fwhm_ma=None)
    b = 2.0
    p = torch.tensor([[b, 35.0, 10.0, 0.3, 30.0, 8.0, 0.2, 0.2, 0.8]], dtype=D, requires_grad=True)
    s = me(p)
    # I depends on λ only through λ − λ0(1 + v/c): dI/dλ = −(c/λ0) ∂I/∂v
    (di_dv,) = torch.autograd.grad(s[0, 0].sum(), p, is_grads_batched=False, retain_graph=True)
    jac = torch.autograd.functional.jacobian(lambda q: me(q)[0, 0], p.detach())[:, 0, 3]
    di_dlambda = -(299792.458 / line.wavelength) * jac
    expected = (-LARMOR_WAVELENGTH_CONSTANT * line.wavelength ** 2 * b * line.effective_lande
                * np.cos(np.deg2rad(35.0)) * di_dlambda)
    v = s[0, 3].detach()
    assert torch.abs(v - expected).max() < 1e-5 * torch.abs(v).max()
    assert torch.abs(v).max() > 1e-5


def test_analytic_solution_equals_matrix_solution():
    me = MilneEddington(psf_fwhm_ma=None)
    p = random_params(8, seed=3)
    el = me.propagation_elements(p)
    k = el.matrix()                                   # (8, 112, 4, 4)
    e0 = torch.zeros(4, dtype=D)
    e0[0] = 1.0
    x = torch.linalg.solve(k, e0.expand(*k.shape[:-1]))  # K⁻¹ e0, (8, 112, 4)
    matrix = p[:, 7, None, None] * e0 + me.mu * p[:, 8, None, None] * x
    analytic = unno_rachkovsky(el, p[:, 7:8], p[:, 8:9], me.mu)
    assert torch.allclose(analytic, matrix.transpose(1, 2), atol=1e-12)
    assert torch.abs(el.rho_q).max() > 1e-3  # magneto-optical terms are active in this test


def test_azimuth_and_inclination_symmetries():
    me = MilneEddington()
    p = random_params(8, seed=5)
    s = me(p)
    q = p.clone()
    q[:, 2] += 180.0
    assert torch.allclose(me(q), s, atol=1e-12)
    q = p.clone()
    q[:, 2] += 90.0
    s90 = me(q)
    assert torch.allclose(s90[:, 1:3], -s[:, 1:3], atol=1e-12)
    assert torch.allclose(s90[:, [0, 3]], s[:, [0, 3]], atol=1e-12)
    # (γ, χ) → (180° − γ, −χ) reverses B_LOS and mirrors the azimuth: (I, Q, U, V) → (I, Q, −U, −V),
    # magneto-optical (Faraday) terms included
    q = p.clone()
    q[:, 1] = 180.0 - q[:, 1]
    q[:, 2] = -q[:, 2]
    sg = me(q)
    assert torch.allclose(sg[:, :2], s[:, :2], atol=1e-12)
    assert torch.allclose(sg[:, 2:], -s[:, 2:], atol=1e-12)


def test_filling_factor_and_noise():
    me = MilneEddington()
    p = random_params(4, seed=7)
    s = me(p)
    assert torch.allclose(me(p, filling_factor=1.0), s)
    s0 = me(p, filling_factor=0.0)
    assert torch.abs(s0[:, 1:]).max() < 1e-14
    half = me(p, filling_factor=torch.full((4,), 0.5, dtype=D))
    assert torch.allclose(half, 0.5 * (s + s0))
    stray = torch.ones(4, 112, dtype=D)
    with_stray = me(p, filling_factor=0.25, stray_light=torch.stack([stray, 0 * stray, 0 * stray, 0 * stray], 1))
    assert torch.allclose(with_stray[:, 0], 0.25 * s[:, 0] + 0.75)
    with pytest.raises(ValueError, match="filling factor"):
        me(p, filling_factor=1.5)
    noisy = add_noise(torch.zeros(200, 4, 112, dtype=D), 1e-3, torch.Generator().manual_seed(0))
    assert float(noisy.std()) == pytest.approx(1e-3, rel=0.02)


def test_float32_agrees_with_float64():
    me = MilneEddington()
    p = random_params(8, seed=11)
    assert torch.allclose(me(p.float()).double(), me(p), atol=2e-5)


def test_bad_input():
    me = MilneEddington()
    with pytest.raises(ValueError, match="shape"):
        me(torch.zeros(3, 8, dtype=D))
    with pytest.raises(ValueError, match="empty"):
        me(torch.zeros(0, 9, dtype=D))
    p = random_params(2)
    p[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        me(p)
    p = random_params(2)
    p[0, 4] = 0.0
    with pytest.raises(ValueError, match="Doppler"):
        me(p)
    with pytest.raises(ValueError):
        MilneEddington(wavelengths=[6301.0, 6300.0])


def test_check_stokes_profiles_converts_and_refuses_bad_input():
    from stellarnn.stokes.milne_eddington import check_stokes_profiles

    good = check_stokes_profiles(np.zeros((2, 4, 5)), 5, torch.float32)
    assert good.dtype == torch.float32 and good.shape == (2, 4, 5)
    with pytest.raises(ValueError, match=r"shape \(n, 4, 5\); got \(2, 3, 5\)"):
        check_stokes_profiles(np.zeros((2, 3, 5)), 5)
    with pytest.raises(ValueError, match="no Stokes profiles"):
        check_stokes_profiles(np.zeros((0, 4, 5)), 5)
    with pytest.raises(ValueError, match="NaN or infinity"):
        check_stokes_profiles(np.full((1, 4, 5), 1e300), 5, torch.float32)  # overflows float32
