"""Tests for stellarnn.blase.profiles: Voigt/pseudo-Voigt shapes (the Faddeeva function: test_numerics_faddeeva)."""
import math

import numpy as np
import pytest
import torch
from scipy.special import voigt_profile

from stellarnn.blase import profiles as P


@pytest.mark.parametrize("sigma,gamma", [(0.1, 0.001), (0.1, 0.05), (0.02, 0.3)])
def test_voigt_equals_scipy_voigt_profile(sigma, gamma):
    x = torch.linspace(-3, 3, 2001, dtype=torch.float64)
    ours = P.voigt(x, torch.tensor(sigma, dtype=torch.float64), torch.tensor(gamma, dtype=torch.float64))
    ref = voigt_profile(x.numpy(), sigma, gamma)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-6, atol=1e-12)


def test_profiles_are_area_normalised():
    x = torch.linspace(-200, 200, 2_000_001, dtype=torch.float64)
    s, g = torch.tensor(0.1, dtype=torch.float64), torch.tensor(0.05, dtype=torch.float64)
    for fn in (P.voigt, P.pseudo_voigt):
        assert torch.trapezoid(fn(x, s, g), x).item() == pytest.approx(1.0, abs=2e-4)
    assert torch.trapezoid(P.gaussian(x, s), x).item() == pytest.approx(1.0, abs=1e-9)


def test_pseudo_voigt_limits_and_accuracy():
    x = torch.linspace(-2, 2, 4001, dtype=torch.float64)
    s = torch.tensor(0.1, dtype=torch.float64)
    tiny = torch.tensor(1e-9, dtype=torch.float64)
    # pure Gaussian and pure Lorentzian limits
    np.testing.assert_allclose(P.pseudo_voigt(x, s, tiny).numpy(), P.gaussian(x, s).numpy(), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(P.pseudo_voigt(x, tiny, s).numpy(), P.lorentzian(x, s).numpy(), rtol=1e-5, atol=1e-8)
    # Thompson et al. approximation: ~1 % of the peak against the exact Voigt
    for gamma in (0.02, 0.1, 0.3):
        g = torch.tensor(gamma, dtype=torch.float64)
        exact = P.voigt(x, s, g)
        err = (P.pseudo_voigt(x, s, g) - exact).abs().max() / exact.max()
        assert 1e-4 < err.item() < 0.02


def test_voigt_fwhm_olivero():
    s, g = torch.tensor(0.1, dtype=torch.float64), torch.tensor(0.07, dtype=torch.float64)
    x = torch.linspace(0, 1, 1_000_001, dtype=torch.float64)
    prof = P.voigt(x, s, g)
    half = x[torch.argmin((prof - prof[0] / 2).abs())] * 2
    assert P.voigt_fwhm(s, g).item() == pytest.approx(half.item(), rel=5e-4)
    assert P.FWHM_PER_SIGMA == pytest.approx(2.3548, abs=1e-4)
    assert math.isclose(P.voigt_fwhm(s, torch.tensor(0.0, dtype=torch.float64)).item(), 0.23548, rel_tol=1e-4)
