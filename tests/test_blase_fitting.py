"""Tests for stellarnn.blase.fitting: clone and transfer on synthetic spectra with known answers."""
import numpy as np
import pytest
import torch

from stellarnn.blase.fitting import TransferModel, clone_spectrum, transfer_spectrum
from stellarnn.blase.line_finder import LineGuesses
from stellarnn.blase.line_model import LineModel
from stellarnn.blase.sources import ObservedSpectrum
from stellarnn.train import load_checkpoint, save_checkpoint

CENTRES = np.array([8001.3, 8002.2, 8003.9, 8005.05, 8006.6, 8008.1, 8009.0, 8011.4, 8012.7, 8014.2])
AMPS = np.array([0.02, 0.008, 0.05, 0.004, 0.03, 0.01, 0.015, 0.006, 0.04, 0.012])


def _truth(sig=0.05, gam=0.01):
    n = CENTRES.size
    g = LineGuesses(CENTRES, AMPS, np.full(n, sig), np.full(n, gam), np.zeros(n), np.zeros(n))
    return LineModel.from_guesses(g, profile="voigt", form="tau")


@pytest.fixture(scope="module")
def clone():
    wl = np.arange(8000.0, 8016.0, 0.01)
    with torch.no_grad():
        flux = _truth()(torch.from_numpy(wl)).double().numpy()
    mask = np.ones(wl.size, bool)
    mask[100:110] = False
    flux[100:110] = np.nan  # masked bad pixels must not matter
    res = clone_spectrum(wl, flux, mask=mask, prominence=0.005, profile="voigt", epochs=250, lr=0.05,
                         progress=False, device="cpu")
    return wl, flux, res


def test_clone_finds_lines_and_reduces_residual(clone):
    _wl, _flux, res = clone
    assert len(res.guesses) == CENTRES.size
    assert res.rms_residual < 0.25 * res.initial_rms_residual
    assert res.rms_residual < 2e-3
    table = res.model.line_table()
    np.testing.assert_allclose(np.sort(table["centre_angstrom"]), CENTRES, atol=0.01)
    np.testing.assert_allclose(table["equivalent_width_angstrom"][np.argsort(table["centre_angstrom"])],
                               AMPS, rtol=0.15)


def test_clone_rejects_bad_input():
    wl = np.arange(8000.0, 8001.0, 0.01)
    with pytest.raises(ValueError, match="no lines"):
        clone_spectrum(wl, np.ones(wl.size), epochs=1, progress=False)
    with pytest.raises(ValueError, match="mask shape"):
        clone_spectrum(wl, np.ones(wl.size), mask=np.ones(3, bool), epochs=1, progress=False)
    with pytest.raises(ValueError, match="no good pixels"):
        clone_spectrum(wl, np.full(wl.size, np.nan), epochs=1, progress=False)


def _observed(rv=25.0, vsini=12.0, resolution=40000.0, telluric=True, noise=0.002, seed=0):
    """Truth spectrum: stellar lines 20 % stronger than the clone source, shifted, rotated, plus
    two observer-frame lines, convolved to R, on pixels of 0.04 A, with a tilted continuum."""
    truth = TransferModel(CENTRES.size, 2 if telluric else 0, n_segments=1, grid_min_angstrom=7995.0,
                          grid_max_angstrom=8021.0, velocity_step_km_s=0.5, vsini_max_km_s=60.0,
                          resolution_min=20000.0, line_hyperparameters=dict(profile="voigt", form="tau"))
    src = _truth()
    with torch.no_grad():
        src.ln_amplitude.add_(np.log(1.2))
    truth.load_clone(src)
    if telluric:
        truth.telluric.set_lines([8004.5, 8010.2], [0.02, 0.03], [0.01, 0.01], [0.002, 0.002])
    truth.set_extrinsic(rv_km_s=rv, vsini_km_s=vsini, resolution=resolution)
    with torch.no_grad():
        truth.continuum_init.copy_(torch.tensor([[1.0, 0.02, 0.0]]))
    wl = np.arange(8000.5, 8015.0, 0.04)
    seg = np.zeros(wl.size, int)
    from stellarnn.blase.extrinsic import scale_to_segments
    with torch.no_grad():
        flux = truth(torch.from_numpy(wl), torch.from_numpy(scale_to_segments(wl, seg)).float(),
                     torch.from_numpy(seg)).double().numpy()
    flux = flux + np.random.default_rng(seed).normal(0, noise, wl.size)
    err = np.full(wl.size, noise)
    err[50] = -1.0  # a bad pixel (negative error) is masked
    return ObservedSpectrum(wl, flux, err, seg, np.array([1]), "synthetic")


def test_transfer_recovers_extrinsic_and_beats_baseline(clone):
    _wl, _flux, res = clone
    spec = _observed()
    out = transfer_spectrum(res.model, spec, epochs=150, baseline_epochs=150, lr=0.03,
                            telluric_prominence=0.01, resolution_guess=50000.0, vsini_max_km_s=60.0,
                            rv_grid_km_s=np.arange(-100, 101, 1.0), progress=False, margin_angstrom=5.0)
    assert out.rv_km_s == pytest.approx(25.0, abs=1.0)
    assert out.vsini_km_s == pytest.approx(12.0, abs=3.0)
    assert out.n_telluric_lines >= 2
    assert out.transfer_rms < 0.5 * out.baseline_rms
    assert out.transfer_rms < 3 * 0.002


def test_transfer_model_checkpoint_round_trip(tmp_path, clone):
    _wl, _flux, res = clone
    model = TransferModel(res.model.n_lines, 1, n_segments=2, grid_min_angstrom=7995.0, grid_max_angstrom=8021.0,
                          line_hyperparameters=res.model.hyperparameters)
    model.load_clone(res.model)
    model.telluric.set_lines([8004.5], [0.02], [0.01], [0.002])
    model.set_extrinsic(rv_km_s=3.0, vsini_km_s=7.0, resolution=60000.0)
    path = save_checkpoint(tmp_path / "t.pt", model, "blase-transfer", model.hyperparameters)
    loaded, _ = load_checkpoint(path, expected_kind="blase-transfer")
    wl = torch.arange(8001.0, 8014.0, 0.05, dtype=torch.float64)
    seg = (wl > 8007).long()
    x = torch.zeros_like(wl).float()
    with torch.no_grad():
        np.testing.assert_allclose(loaded(wl, x, seg).numpy(), model(wl, x, seg).numpy(), atol=1e-6)
    assert float(loaded.rv_km_s.detach()) == pytest.approx(3.0)


def test_load_clone_size_mismatch():
    model = TransferModel(3, 0)
    with pytest.raises(ValueError, match="clone has"):
        model.load_clone(LineModel(4))
