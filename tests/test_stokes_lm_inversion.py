import numpy as np
import pytest
import torch

from stellarnn.stokes.lm_inversion import _jacobian, initial_guesses, invert_lm
from stellarnn.stokes.milne_eddington import MilneEddington, add_noise

D = torch.float64
TRUE = torch.tensor([[1200.0, 40.0, 30.0, 1.2, 32.0, 10.0, 0.25, 0.2, 0.8],
                     [600.0, 120.0, 150.0, -0.8, 28.0, 6.0, 0.15, 0.25, 0.75],
                     [2200.0, 80.0, 95.0, 0.3, 35.0, 20.0, 0.3, 0.15, 0.85]], dtype=D)


def test_forward_mode_jacobian_matches_finite_differences():
    me = MilneEddington()
    p = TRUE[:2].clone()
    synth, jac = _jacobian(me, p)
    assert torch.allclose(synth, me(p).reshape(2, -1))
    for k, h in enumerate([1e-2, 1e-4, 1e-4, 1e-5, 1e-4, 1e-5, 1e-6, 1e-6, 1e-6]):
        dp = torch.zeros_like(p)
        dp[:, k] = h
        fd = (me(p + dp) - me(p - dp)).reshape(2, -1) / (2 * h)
        assert torch.allclose(jac[:, :, k], fd, atol=1e-6 * max(1.0, float(fd.abs().max())), rtol=1e-4)


def test_noiseless_profiles_are_recovered():
    me = MilneEddington()
    true = TRUE[[0, 2]]
    res = invert_lm(me(true), me, sigma=1e-3, n_starts=2)
    assert res["B"] == pytest.approx(true[:, 0].numpy(), rel=1e-3)
    assert res["gamma"] == pytest.approx(true[:, 1].numpy(), abs=0.1)
    assert res["chi"] == pytest.approx(true[:, 2].numpy(), abs=0.1)
    assert res["v_los"] == pytest.approx(true[:, 3].numpy(), abs=1e-3)
    assert np.all(res["chi2_reduced"] < 1e-4)


def test_noisy_profiles_give_unit_reduced_chi2_and_sane_errors():
    me = MilneEddington()
    obs = add_noise(me(TRUE), 1e-3, torch.Generator().manual_seed(2))
    res = invert_lm(obs, me, sigma=1e-3, n_starts=2)
    assert np.all((res["chi2_reduced"] > 0.8) & (res["chi2_reduced"] < 1.25))
    z = (res["B"] - TRUE[:, 0].numpy()) / res["e_B"]
    assert np.all(np.abs(z) < 5)
    assert np.all(np.abs(res["v_los"] - TRUE[:, 3].numpy()) < 0.05)


def test_initial_guess_weak_field_sign_and_velocity():
    me = MilneEddington()
    starts = initial_guesses(me(TRUE), me, n_starts=3)
    assert starts.shape == (3, 3, 9)
    # γ < 90 for B_LOS > 0 (rows 0 and 2), > 90 for row 1
    assert starts[0, 0, 1] < 90 and starts[1, 0, 1] > 90 and starts[2, 0, 1] < 90
    assert torch.allclose(starts[:, 0, 3], TRUE[:, 3], atol=0.5)


def test_bad_input():
    me = MilneEddington()
    with pytest.raises(ValueError, match="shape"):
        invert_lm(torch.zeros(2, 4, 50), me)
    with pytest.raises(ValueError, match="no Stokes"):
        invert_lm(torch.zeros(0, 4, 112), me)
    bad = me(TRUE[:1]).clone()
    bad[0, 0, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        invert_lm(bad, me)
    with pytest.raises(ValueError, match="n_starts"):
        invert_lm(me(TRUE[:1]), me, n_starts=0)
