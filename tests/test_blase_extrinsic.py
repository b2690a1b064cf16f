"""Tests for stellarnn.blase.extrinsic: kernels, convolution, resampling, continuum."""
import math

import numpy as np
import pytest
import torch

from stellarnn.blase import extrinsic as X


def test_log_uniform_grid_constant_velocity_step():
    g = X.log_uniform_grid(8000.0, 8100.0, 0.5)
    dv = np.diff(np.log(g)) * X.SPEED_OF_LIGHT_KM_S
    np.testing.assert_allclose(dv, 0.5, rtol=1e-9)
    assert g[0] == 8000.0 and g[-1] >= 8100.0
    with pytest.raises(ValueError):
        X.log_uniform_grid(8100.0, 8000.0, 0.5)


@pytest.mark.parametrize("eps", [0.0, 0.6, 1.0])
def test_rotation_kernel_matches_gray_formula(eps):
    vsini, dv = 40.0, 0.25
    k = X.rotation_kernel(torch.tensor(vsini, dtype=torch.float64), dv, 200, limb_darkening=eps)
    assert k.sum().item() == pytest.approx(1.0, abs=1e-12)
    v = torch.arange(-200, 201, dtype=torch.float64) * dv
    x = (v / vsini).clamp(-1, 1)
    gray = (2 * (1 - eps) * torch.sqrt(1 - x ** 2) + 0.5 * math.pi * eps * (1 - x ** 2)) / (
        math.pi * vsini * (1 - eps / 3)) * dv
    inner = v.abs() < vsini - 4 * dv
    np.testing.assert_allclose(k[inner].numpy(), gray[inner].numpy(), rtol=2e-3)
    assert k[v.abs() > vsini + dv].abs().max().item() == 0.0


def test_rotation_kernel_is_smooth_in_vsini_below_a_pixel():
    vs = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    k = X.rotation_kernel(vs, 0.5, 5)
    assert k[5].item() == pytest.approx(1.0)
    (k * torch.arange(11.0, dtype=torch.float64) ** 2).sum().backward()
    assert torch.isfinite(vs.grad)


def test_gaussian_kernel_width():
    r = torch.tensor(50000.0, dtype=torch.float64)
    k = X.gaussian_kernel(r, 0.2, 100)
    v = torch.arange(-100, 101, dtype=torch.float64) * 0.2
    sigma = X.SPEED_OF_LIGHT_KM_S / 50000 / 2.3548200450309493
    assert (k * v * v).sum().item() == pytest.approx(sigma ** 2 + 0.2 ** 2 / 12, rel=1e-4)


def test_convolution_preserves_flat_and_area():
    flux = torch.ones(500, dtype=torch.float64)
    k = X.gaussian_kernel(torch.tensor(20000.0, dtype=torch.float64), 1.0, 30)
    np.testing.assert_allclose(X.convolve_same(flux, k).numpy(), 1.0, atol=1e-12)
    line = torch.ones(500, dtype=torch.float64)
    line[250] = 0.0
    out = X.convolve_same(line, k)
    assert (1 - out).sum().item() == pytest.approx(1.0, abs=1e-9)
    assert int(torch.argmin(out)) == 250
    with pytest.raises(ValueError, match="odd"):
        X.convolve_same(flux, torch.ones(4))


def test_resample_linear_and_edges():
    g = torch.linspace(0, 10, 11, dtype=torch.float64)
    y = 2 * g + 1
    out = X.resample_linear(g, y, torch.tensor([0.5, 3.25, -1.0, 12.0], dtype=torch.float64))
    np.testing.assert_allclose(out.numpy(), [2.0, 7.5, 1.0, 21.0])


def test_chebyshev_continuum_per_segment():
    wl = np.r_[np.linspace(100, 200, 11), np.linspace(300, 350, 6)]
    seg = np.r_[np.zeros(11, int), np.ones(6, int)]
    x = X.scale_to_segments(wl, seg)
    assert x.min() == -1 and x.max() == 1
    coeffs = torch.tensor([[1.0, 0.1, 0.05], [2.0, 0.0, -0.2]], dtype=torch.float64)
    out = X.chebyshev_continuum(coeffs, torch.from_numpy(x), torch.from_numpy(seg))
    ref = np.where(seg == 0, np.polynomial.chebyshev.chebval(x, [1.0, 0.1, 0.05]),
                   np.polynomial.chebyshev.chebval(x, [2.0, 0.0, -0.2]))
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-12)


def test_doppler_factor():
    assert float(X.doppler_factor(torch.tensor(X.SPEED_OF_LIGHT_KM_S / 1000))) == pytest.approx(1.001)
