"""Tests for stellarnn.stokes.wavelength_grid: observed grids resampled to the networks' grid (issue 21, item 5)."""
from pathlib import Path

import numpy as np
import pytest
import torch

from stellarnn.stokes.lm_inversion import invert_lm
from stellarnn.stokes.me_cnn import MEInverter, sample_parameters
from stellarnn.stokes.milne_eddington import MilneEddington, hinode_sp_wavelengths
from stellarnn.stokes.wavelength_grid import needs_resampling, resample_profiles, to_network_grid

WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "stokes"
NOMINAL = hinode_sp_wavelengths()
GRIDS = {"shifted +0.01 A": NOMINAL + 0.01,
         "stretched 0.5 %": NOMINAL[0] + (NOMINAL - NOMINAL[0]) * 1.005,
         "21.431 mA from 6300.8826 A": 6300.8826 + 0.021431 * np.arange(112)}


def _profiles(grid, n, seed=11):
    params = sample_parameters(n, torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        return params, MilneEddington(wavelengths=grid)(params).numpy()


def test_resampling_basics():
    wl = NOMINAL + 0.005
    ramp = np.broadcast_to(2.0 + 0.1 * (wl - 6300.0), (3, 4, 112))
    for method in ("linear", "cubic"):
        out, report = resample_profiles(ramp, wl, method=method)
        inside = NOMINAL >= wl[0]
        np.testing.assert_allclose(out[..., inside], np.broadcast_to(2.0 + 0.1 * (NOMINAL[inside] - 6300.0),
                                                                     (3, 4, int(inside.sum()))), atol=1e-12)
        assert out[..., 0] == pytest.approx(ramp[..., 0])  # the one pixel off the blue edge: nearest value
        assert report["n_extrapolated"] == 1 and report["method"] == method
    assert not needs_resampling(NOMINAL + 1e-6) and needs_resampling(NOMINAL + 0.01)
    same, report = to_network_grid(ramp, NOMINAL, 112)
    assert report is None and same is not None
    with pytest.raises(ValueError, match="does not cover"):
        resample_profiles(ramp, NOMINAL + 0.2)
    with pytest.raises(ValueError, match="method"):
        resample_profiles(ramp, wl, method="fourier")
    with pytest.raises(ValueError, match="increasing"):
        resample_profiles(ramp, wl[::-1])
    with pytest.raises(ValueError, match="112 wavelengths, the grid 50"):
        resample_profiles(ramp, wl[:50])
    with pytest.raises(ValueError, match="training grid is unknown"):
        to_network_grid(ramp, wl, 100)


@pytest.mark.parametrize("name", list(GRIDS))
def test_me_cnn_v_los_unbiased_on_other_grids(name):
    inverter = MEInverter(WEIGHTS / "me_cnn.pt")
    params, stokes = _profiles(GRIDS[name], 200)
    _, nominal = _profiles(NOMINAL, 200)
    v_true = params[:, 3].numpy()
    v_nominal = inverter.invert(torch.from_numpy(nominal).float())["v_los"]
    v_ignored = inverter.invert(torch.from_numpy(stokes).float())["v_los"]  # grid ignored: the old behaviour
    v_resampled = inverter.invert(torch.from_numpy(stokes), wavelengths=GRIDS[name])["v_los"]
    assert inverter.last_resampling["method"] == "cubic"
    assert abs(np.mean(v_ignored - v_nominal)) > 0.15  # the bias the issue reports (0.21–0.59 km/s)
    assert abs(np.mean(v_resampled - v_nominal)) <= 0.05
    assert abs(np.mean(v_resampled - v_true)) <= 0.05
    linear = inverter.invert(torch.from_numpy(stokes), wavelengths=GRIDS[name], resampling="linear")["v_los"]
    assert abs(np.mean(linear - v_true)) <= 0.05


@pytest.mark.parametrize("name", ["shifted +0.01 A", "stretched 0.5 %"])
def test_lm_v_los_unbiased_on_other_grids(name):
    params, stokes = _profiles(GRIDS[name], 4, seed=3)
    v_true = params[:, 3].numpy()
    # median over profiles: a single-start LM may stop in a local minimum on one profile
    options = dict(n_starts=1, max_iterations=30)
    # the LM fits with the ME model on the observed grid itself, or after resampling to the nominal grid
    direct = invert_lm(torch.from_numpy(stokes), MilneEddington(wavelengths=GRIDS[name]), **options)
    resampled, _ = resample_profiles(stokes, GRIDS[name])
    via_nominal = invert_lm(torch.from_numpy(resampled), MilneEddington(), **options)
    wrong_grid = invert_lm(torch.from_numpy(stokes), MilneEddington(), **options)
    assert abs(np.median(direct["v_los"] - v_true)) <= 0.05
    assert abs(np.median(via_nominal["v_los"] - v_true)) <= 0.05
    assert abs(np.median(wrong_grid["v_los"] - v_true)) > 0.15


def test_stratified_cnn_resamples_too():
    from stellarnn.stokes.stratified_cnn import StratifiedInverter

    inverter = StratifiedInverter(WEIGHTS / "stratified_cnn.pt")
    grid = GRIDS["shifted +0.01 A"]
    _, stokes = _profiles(grid, 100)
    _, nominal = _profiles(NOMINAL, 100)
    node = int(np.argmin(np.abs(inverter.log_tau_nodes + 1.0)))
    v_nominal = inverter.invert(torch.from_numpy(nominal).float())["v_los"][:, node]
    v_ignored = inverter.invert(torch.from_numpy(stokes).float())["v_los"][:, node]
    v_resampled = inverter.invert(torch.from_numpy(stokes), wavelengths=grid)["v_los"][:, node]
    assert inverter.last_resampling is not None
    assert abs(np.mean(v_ignored - v_nominal)) > 0.1  # ME profiles: outside its Lightweaver training set
    assert abs(np.mean(v_resampled - v_nominal)) <= 0.05
