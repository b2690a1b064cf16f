"""Rosseland optical depth integration and log tau resampling."""
import numpy as np
import pytest
import torch

from stellarnn.atmospheres.kurucz import read_kurucz
from stellarnn.atmospheres.tau import ATLAS9_LOG_TAU, INNTERPOL_LOG_TAU, resample_log_tau, rosseland_optical_depth


def test_scales():
    assert len(INNTERPOL_LOG_TAU) == 71 and INNTERPOL_LOG_TAU[0] == -6.875 and INNTERPOL_LOG_TAU[-1] == 1.875
    assert len(ATLAS9_LOG_TAU) == 72 and ATLAS9_LOG_TAU[-1] == 2.0


@pytest.mark.parametrize("method", ["powerlaw", "trapezoid"])
def test_constant_opacity_gives_tau_equal_kappa_m(method):
    rhox = np.logspace(-3, 2, 40)
    tau = rosseland_optical_depth(rhox, np.full(40, 0.7), method=method)
    np.testing.assert_allclose(tau, 0.7 * rhox, rtol=1e-12)


def test_power_law_opacity_is_integrated_exactly():
    # kappa = a m^s  =>  tau(m) = a m^(s+1) / (s+1) (with tau_0 = kappa_0 m_0 at the top instead of the integral)
    m = np.logspace(-2, 1, 30)
    a, s = 0.2, 1.5
    tau = rosseland_optical_depth(m, a * m ** s)
    exact = a * m[0] ** (s + 1) + a * (m ** (s + 1) - m[0] ** (s + 1)) / (s + 1)
    np.testing.assert_allclose(tau, exact, rtol=1e-12)
    trap = rosseland_optical_depth(m, a * m ** s, method="trapezoid")
    assert np.abs(trap / exact - 1).max() > 1e-3  # the trapezoid is not exact here


def test_known_tau_of_a_real_deck(real_file):
    """The ODFNEW 3500 K, log g 0 deck is on ATLAS9's standard scale log tau = -6.875 + 0.125 i."""
    atm = read_kurucz(real_file("kurucz-t3500g00"))
    err = np.log10(rosseland_optical_depth(atm.rhox, atm.abross)) - ATLAS9_LOG_TAU
    assert np.abs(err).max() < 0.02
    assert np.median(np.abs(err)) < 2e-3


def test_torch_matches_numpy_and_is_differentiable(real_file):
    atm = read_kurucz(real_file("kurucz-sun"))
    rhox = torch.tensor(atm.rhox, requires_grad=True)
    tau = rosseland_optical_depth(rhox, torch.tensor(atm.abross))
    np.testing.assert_allclose(tau.detach().numpy(), rosseland_optical_depth(atm.rhox, atm.abross), rtol=1e-12)
    tau[-1].backward()
    assert torch.isfinite(rhox.grad).all()


def test_resample_is_exact_for_linear_profiles_and_masks_uncovered_points():
    lt = np.stack([np.linspace(-6, 2, 50), np.linspace(-5.5, 2, 50)])
    values = 3.0 + 0.5 * lt
    out = resample_log_tau(lt, values, INNTERPOL_LOG_TAU)
    covered = INNTERPOL_LOG_TAU >= -6
    np.testing.assert_allclose(out[0, covered], 3.0 + 0.5 * INNTERPOL_LOG_TAU[covered], rtol=1e-12)
    assert np.isnan(out[0, ~covered]).all() and np.isnan(out[1, INNTERPOL_LOG_TAU < -5.5]).all()
    tol = resample_log_tau(lt, values, INNTERPOL_LOG_TAU, edge_tolerance_dex=0.9)
    np.testing.assert_allclose(tol[0], 3.0 + 0.5 * INNTERPOL_LOG_TAU, rtol=1e-12)  # linear extrapolation


def test_resample_handles_trailing_nan_layers_and_bad_shapes():
    lt = np.linspace(-7, 2, 20)[None].repeat(2, 0)
    lt[1, 15:] = np.nan
    out = resample_log_tau(lt, lt * 2, INNTERPOL_LOG_TAU)
    assert np.isfinite(out[0]).all()
    last = lt[1, 14]
    np.testing.assert_allclose(out[1, INNTERPOL_LOG_TAU <= last], 2 * INNTERPOL_LOG_TAU[INNTERPOL_LOG_TAU <= last])
    assert np.isnan(out[1, INNTERPOL_LOG_TAU > last]).all()
    with pytest.raises(ValueError):
        resample_log_tau(lt, np.ones((2, 5)), INNTERPOL_LOG_TAU)
    with pytest.raises(ValueError):
        rosseland_optical_depth(np.ones(3), np.ones(4))
    with pytest.raises(ValueError):
        rosseland_optical_depth(np.ones(3), np.ones(3), method="simpson")


def test_cut_spliced_models_blanks_the_foreign_rows():
    from stellarnn.atmospheres.tau import cut_spliced_models

    models = np.zeros((3, 6, 2))
    models[:, :, 0] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    models[1, :, 0] = [1.0, 2.0, 3.0, 0.5, 1.5, 2.5]  # a second model starts at layer 3
    models[2, 4:, :] = np.nan  # a short model: missing layers are not a break
    cut = cut_spliced_models(models)
    assert cut.tolist() == [False, True, False]
    assert np.isnan(models[1, 3:]).all() and np.isfinite(models[1, :3]).all()
    assert np.isfinite(models[0]).all() and np.isfinite(models[2, :4]).all()
