"""Tests for stellarnn.blase.line_model: sparse vs dense, forms, windows, line table, checkpoints."""
import numpy as np
import pytest
import torch

from stellarnn.blase.line_finder import LineGuesses
from stellarnn.blase.line_model import LineModel
from stellarnn.blase.profiles import voigt
from stellarnn.train import load_checkpoint, save_checkpoint


def _model(profile="voigt", form="tau", **kw):
    centres = np.array([10000.2, 10001.0, 10001.05, 10003.3, 10004.9])
    amps = np.array([0.01, 0.003, 0.002, 0.5, 0.0005])
    sig = np.array([0.04, 0.05, 0.03, 0.08, 0.02])
    gam = np.array([0.005, 0.01, 0.002, 0.3, 0.001])
    g = LineGuesses(centres, amps, sig, gam, np.zeros(5), np.zeros(5))
    return LineModel.from_guesses(g, profile=profile, form=form, **kw), (centres, amps, sig, gam)


@pytest.mark.parametrize("profile", ["voigt", "pseudo_voigt"])
@pytest.mark.parametrize("form", ["tau", "multiplicative"])
def test_sparse_matches_dense(profile, form):
    model, _ = _model(profile, form, wing_tolerance=1e-6, max_half_window_angstrom=500)
    wl = torch.arange(9995.0, 10010.0, 0.01, dtype=torch.float64)
    with torch.no_grad():
        sparse, dense = model(wl), model.forward_dense(wl)
    assert (sparse - dense).abs().max().item() < 1e-5
    assert sparse.min().item() < 0.7  # the strong line is there


def test_tau_form_equals_analytic_sum():
    model, (c, a, s, g) = _model("voigt", "tau", wing_tolerance=1e-7, max_half_window_angstrom=1000)
    wl = torch.arange(9999.0, 10006.0, 0.01, dtype=torch.float64)
    tau = sum(ai * voigt(wl - ci, torch.tensor(si, dtype=torch.float64), torch.tensor(gi, dtype=torch.float64))
              for ci, ai, si, gi in zip(c, a, s, g))
    with torch.no_grad():
        np.testing.assert_allclose(model(wl).numpy(), torch.exp(-tau).numpy(), atol=2e-6)


def test_windows_grow_with_line_strength():
    model, _ = _model()
    half = model.half_windows()
    assert half[3] > 10 * half[4]  # strong, broad line keeps its wings
    assert half.min().item() >= model.min_half_window
    tight = _model(wing_tolerance=1e-2)[0].half_windows()
    assert torch.all(tight <= half)


def test_doppler_factor_shifts_lines():
    model, (c, *_rest) = _model()
    wl = torch.arange(9999.0, 10006.0, 0.001, dtype=torch.float64)
    v = 30.0  # km/s
    with torch.no_grad():
        shifted = model(wl, doppler_factor=1 + v / 299792.458)
    centre = wl[torch.argmin(shifted)].item()
    assert centre == pytest.approx(c[3] * (1 + v / 299792.458), abs=0.002)


def test_gradients_flow_to_every_parameter():
    model, _ = _model()
    wl = torch.arange(9999.0, 10006.0, 0.01, dtype=torch.float64)
    model(wl).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.all(torch.isfinite(p.grad)), name
        assert p.grad.abs().sum() > 0, name


def test_line_table_depth_and_equivalent_width():
    model, (c, a, s, g) = _model("voigt", "tau", max_half_window_angstrom=500, wing_tolerance=1e-7)
    table = model.line_table()
    np.testing.assert_allclose(table["centre_angstrom"], c, atol=1e-9)
    v0 = voigt(torch.zeros(5, dtype=torch.float64), torch.tensor(s), torch.tensor(g)).numpy()
    np.testing.assert_allclose(table["depth"], 1 - np.exp(-a * v0), rtol=1e-6)
    # EW = ∫(1 − exp(−a V)) dλ on a wide fine grid; weak lines: EW → amplitude; strong: saturated
    x = torch.linspace(-400, 400, 1_600_001, dtype=torch.float64)
    for i in range(5):
        prof = voigt(x, torch.tensor(s[i], dtype=torch.float64), torch.tensor(g[i], dtype=torch.float64))
        ew = torch.trapezoid(1 - torch.exp(-a[i] * prof), x).item()
        assert table["equivalent_width_angstrom"][i] == pytest.approx(ew, rel=2e-3)
    assert table["equivalent_width_angstrom"][4] == pytest.approx(a[4], rel=0.01)
    assert table["equivalent_width_angstrom"][3] < 0.9 * a[3]


def test_checkpoint_round_trip_keeps_centres_exact(tmp_path):
    model, (c, *_r) = _model("pseudo_voigt", "multiplicative")
    with torch.no_grad():
        model.ln_amplitude.add_(0.1)
    path = save_checkpoint(tmp_path / "lines.pt", model, "blase-lines", model.hyperparameters)
    loaded, payload = load_checkpoint(path, expected_kind="blase-lines")
    assert loaded.profile == "pseudo_voigt" and loaded.form == "multiplicative"
    np.testing.assert_allclose(loaded.centres().detach().numpy(), c, atol=1e-6)
    wl = torch.arange(9999.0, 10006.0, 0.01, dtype=torch.float64)
    with torch.no_grad():
        np.testing.assert_allclose(loaded(wl).numpy(), model(wl).numpy(), atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="profile"):
        LineModel(3, profile="gauss")
    with pytest.raises(ValueError, match="form"):
        LineModel(3, form="sum")
    model = LineModel(2)
    with pytest.raises(ValueError, match="shape"):
        model.set_lines([1.0], [1.0], [1.0], [1.0])
    with pytest.raises(ValueError, match="> 0"):
        model.set_lines([1.0, 2.0], [1.0, -1.0], [1.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="NaN"):
        model.set_lines([1.0, np.nan], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="1-D"):
        model(torch.zeros(0, dtype=torch.float64))
