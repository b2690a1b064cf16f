"""Tests for stellarnn.blase.fitting: clone and transfer on synthetic spectra with known answers."""
import numpy as np
import pytest
import torch

from stellarnn.blase.fitting import TransferModel, clone_spectrum, transfer_spectrum
from stellarnn.blase.line_finder import LineGuesses
from stellarnn.blase.line_model import LineModel
from stellarnn.blase.sources import ObservedSpectrum
from stellarnn.blase.telluric_bands import TelluricBand
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


#: a test band around the two observer-frame lines of ``_observed`` (8000–8015 Å has no real telluric band)
TEST_BANDS = (TelluricBand("H2O", "test band", 8004.0, 8011.0),)
FIT_OPTIONS = dict(resolution_guess=50000.0, vsini_max_km_s=60.0, rv_grid_km_s=np.arange(-100, 101, 1.0),
                   progress=False, margin_angstrom=5.0)


def _transmission(out, spec):
    from stellarnn.blase.extrinsic import scale_to_segments

    x = torch.from_numpy(scale_to_segments(spec.wavelength, spec.segment)).float()
    with torch.no_grad():
        parts = out.model(torch.from_numpy(spec.wavelength), x, torch.from_numpy(spec.segment), components=True)
    return parts["telluric"].double().numpy()


def test_transfer_recovers_extrinsic_and_beats_baseline(clone):
    _wl, _flux, res = clone
    spec = _observed()
    out = transfer_spectrum(res.model, spec, epochs=150, baseline_epochs=150, lr=0.03,
                            telluric_prominence=0.01, telluric_bands=TEST_BANDS, **FIT_OPTIONS)
    assert out.rv_km_s == pytest.approx(25.0, abs=1.0)
    assert out.vsini_km_s == pytest.approx(12.0, abs=3.0)
    assert out.n_telluric_lines >= 2 and out.telluric_mode == "bands"
    assert list(out.telluric_scales) == ["H2O"] and out.telluric_lines_per_species["H2O"] == out.n_telluric_lines
    assert out.transfer_rms < 0.5 * out.baseline_rms
    assert out.transfer_rms < 3 * 0.002
    trans = _transmission(out, spec)
    # outside the band only the far wings of the two lines (convolved with the instrument) remain
    assert trans[(spec.wavelength < 8004.0) | (spec.wavelength > 8011.0)].min() > 0.9999
    assert trans.min() < 0.95  # the two lines are modelled (fitted depth about 0.1 at R = 40000)


def test_star_only_spectrum_gets_no_tellurics(clone):
    """Issue 21, item 2: a spectrum without tellurics (clone 20 % weaker than the star, so the baseline
    residual has dips at stellar lines) must keep transmission > 0.99 everywhere; the free per-line
    model of old put "telluric" lines on the stellar residuals."""
    _wl, _flux, res = clone
    spec = _observed(telluric=False)
    options = dict(epochs=60, baseline_epochs=100, lr=0.03, telluric_prominence=0.004, **FIT_OPTIONS)
    out = transfer_spectrum(res.model, spec, **options)
    assert out.n_telluric_lines == 0 and out.n_residual_lines_outside_bands >= 1
    assert _transmission(out, spec).min() > 0.99
    free = transfer_spectrum(res.model, spec, tellurics="free", **options)
    assert free.n_telluric_lines >= 1 and _transmission(free, spec).min() < 0.99
    with pytest.raises(ValueError, match="tellurics must be"):
        transfer_spectrum(res.model, spec, tellurics="everywhere", **options)


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


def test_species_scaled_telluric_model_round_trip(tmp_path, clone):
    _wl, _flux, res = clone
    model = TransferModel(res.model.n_lines, 0, grid_min_angstrom=7995.0, grid_max_angstrom=8021.0,
                          line_hyperparameters=res.model.hyperparameters, telluric_species=("H2O", "O2"))
    hp = {k: v for k, v in res.model.hyperparameters.items() if k != "n_lines"}
    water, oxygen = LineModel(2, **hp), LineModel(1, **hp)
    water.set_lines([8004.5, 8010.2], [0.02, 0.03], [0.01, 0.01], [0.002, 0.002])
    oxygen.set_lines([8007.0], [0.02], [0.01], [0.002])
    model.set_telluric_templates({"H2O": water, "O2": oxygen})
    with torch.no_grad():
        model.telluric_ln_scale.copy_(torch.log(torch.tensor([2.0, 1.0])))
    from stellarnn.blase.extrinsic import convolve_same, gaussian_kernel

    with torch.no_grad():
        raw = water(model.grid) ** 2 * oxygen(model.grid)  # τ of every water line doubled: T_H2O²
        expected = convolve_same(raw, gaussian_kernel(model.resolution, model.velocity_step, model.inst_half))
        got = model.grid_components()["telluric"]
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
    assert float(got.min()) < 0.95
    path = save_checkpoint(tmp_path / "t.pt", model, "blase-transfer", model.hyperparameters)
    loaded, _ = load_checkpoint(path, expected_kind="blase-transfer")
    assert loaded.telluric_species == ("H2O", "O2")
    wl = torch.arange(8001.0, 8014.0, 0.05, dtype=torch.float64)
    seg, x = torch.zeros_like(wl).long(), torch.zeros_like(wl).float()
    with torch.no_grad():
        np.testing.assert_allclose(loaded(wl, x, seg).numpy(), model(wl, x, seg).numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="templates for"):
        model.set_telluric_templates({"H2O": water})
