import numpy as np
import pytest
import torch

from stellarnn.labels.apogeenet.training import masked_mse, physical_to_targets, train_apogeenet
from stellarnn.labels.pipeline import get_pipeline
from stellarnn.spectra import apogee_wavelength
from stellarnn.spectra.spectrum import Spectrum
from stellarnn.train import TrainConfig

TINY = dict(stem_channels=2, block_channels=[2, 2], kernel_size=5, pool_length=16, head_width=16, n_head_layers=2)


def test_targets_and_masked_loss():
    t = physical_to_targets([[10 ** 3.8, 4.4, 0.1], [-9999, np.nan, -0.2]])
    assert t[0] == pytest.approx([(4.4 - 3.2) / 1.2, (3.8 - 3.7) / 0.1, (0.1 + 0.2) / 0.3])
    assert np.isnan(t[1, :2]).all() and t[1, 2] == pytest.approx(0.0)
    pred = torch.zeros(2, 3, requires_grad=True)
    loss = masked_mse(pred, torch.as_tensor(t, dtype=torch.float32))
    loss.backward()
    assert loss.item() == pytest.approx(float(np.nansum(t ** 2) / 4))
    assert torch.isfinite(pred.grad).all()
    with pytest.raises(ValueError):
        physical_to_targets(np.zeros((3, 2)))


def test_short_training_reduces_loss_and_checkpoint_runs(tmp_path):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n = 24
    teff = rng.uniform(4000, 6000, n)
    wl = apogee_wavelength()
    depth = (teff - 3500) / 3000
    flux = 100 * (1 - depth[:, None] * np.exp(-0.5 * ((wl - 16000) / 30) ** 2)[None])
    ivar = np.full_like(flux, 1e4)
    labels = np.stack([teff, np.full(n, 1.0), np.full(n, -1.5)], axis=1)  # far from the z-scoring means
    model, metrics = train_apogeenet(flux, ivar, labels, tmp_path / "a.pt", hyperparameters=TINY, val_fraction=0.25,
                                     config=TrainConfig(epochs=8, batch_size=6, lr=3e-3, progress=False),
                                     eval_draws=3)
    assert metrics["n_val"] == 6 and metrics["epochs_run"] == 8
    untrained = float(np.mean(physical_to_targets(labels) ** 2))  # loss of a network that outputs 0
    assert metrics["best_val_loss"] < 0.5 * untrained
    assert set(metrics["validation"]) == {"teff", "logg", "fe_h"}
    p = get_pipeline("apogeenet", weights=tmp_path / "a.pt", n_draws=3, quality_checks=False)  # a toy one-line spectrum
    row = p.process([Spectrum(wl, flux[0], ivar[0])])[0]
    assert np.isfinite(row["teff"]) and row["reason"] == ""


def test_fine_tuning_starts_from_the_given_weights(tmp_path):
    from stellarnn.train import read_checkpoint

    rng = np.random.default_rng(1)
    n = 16
    teff = rng.uniform(4000, 6000, n)
    wl = apogee_wavelength()
    flux = 100 * (1 - ((teff - 3500) / 3000)[:, None] * np.exp(-0.5 * ((wl - 16000) / 30) ** 2)[None])
    ivar = np.full_like(flux, 1e4)
    labels = np.stack([teff, np.full(n, 2.0), np.full(n, -0.5)], axis=1)
    cfg = dict(batch_size=8, lr=3e-3, progress=False)
    first, m1 = train_apogeenet(flux, ivar, labels, tmp_path / "a.pt", hyperparameters=TINY, val_fraction=0.25,
                                config=TrainConfig(epochs=6, **cfg), eval_draws=2)
    # zero epochs of fine-tuning: the new checkpoint holds exactly the starting weights
    tuned, _ = train_apogeenet(flux, ivar, labels, tmp_path / "b.pt", hyperparameters=TINY, val_fraction=0.25,
                               config=TrainConfig(epochs=0, **cfg), eval_draws=2, init_from=tmp_path / "a.pt")
    a, b = read_checkpoint(tmp_path / "a.pt"), read_checkpoint(tmp_path / "b.pt")
    for k in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k])
    assert b["provenance"]["init_from"] == str(tmp_path / "a.pt")
    with pytest.raises(Exception, match="do not fit"):
        train_apogeenet(flux, ivar, labels, tmp_path / "c.pt", hyperparameters=dict(TINY, head_width=8),
                        val_fraction=0.25, config=TrainConfig(epochs=0, **cfg), init_from=tmp_path / "a.pt")


def test_brackett_mask_in_training_inputs_and_checkpoint(tmp_path, monkeypatch):
    import stellarnn.labels.apogeenet.training as training
    from stellarnn.spectra.brackett_mask import brackett_mask
    from stellarnn.train import read_checkpoint

    seen = {}

    class Recording(training.Trainer):
        def fit(self, train, val):
            seen["x"] = torch.cat([train[0], val[0]])
            return super().fit(train, val)

    monkeypatch.setattr(training, "Trainer", Recording)
    rng = np.random.default_rng(2)
    n = 8
    teff = np.array([4000.0, 4500, 5000, 5400, 5600, 6000, 6500, 7000])
    wl = apogee_wavelength()
    flux = 100 * (1 - 0.3 * rng.uniform(size=(n, 1)) * np.exp(-0.5 * ((wl - 16811.2) / 8) ** 2)[None])
    flux[:, :246] = np.nan  # the chip gap before the blue chip, as in apStar files
    ivar = np.where(np.isfinite(flux), 1e4, 0.0)
    labels = np.stack([teff, np.full(n, 2.0), np.full(n, -0.5)], axis=1)
    cfg = TrainConfig(epochs=1, batch_size=4, lr=1e-3, progress=False)
    train_apogeenet(flux, ivar, labels, tmp_path / "m.pt", input_flux="continuum_normalised", hyperparameters=TINY,
                    val_fraction=0.25, config=cfg, eval_draws=2, brackett_mask=True)
    order = np.random.default_rng(0).permutation(n)  # the split of train_apogeenet (seed 0)
    x = np.empty((n, wl.size), dtype=np.float32)
    x[order[2:]], x[order[:2]] = seen["x"][:6].numpy(), seen["x"][6:].numpy()
    for i in range(n):  # log(normalised flux 1) = 0 on the masked pixels of each star's own Teff
        m = brackett_mask(wl, teff[i])
        assert np.all(x[i, m] == 0.0)
        wing = (np.abs(wl - 16811.2) > 3.5) & (np.abs(wl - 16811.2) < 15)
        if teff[i] >= 5500:  # the line wings stay in for hot stars only
            assert np.all(x[i, wing] < 0)
        else:
            assert np.all(x[i, wing] == 0.0)
    assert read_checkpoint(tmp_path / "m.pt")["normalisation"]["brackett_mask"] is True
    assert get_pipeline("apogeenet", weights=tmp_path / "m.pt", quality_checks=False).brackett_mask is True
    assert get_pipeline("apogeenet", weights=tmp_path / "m.pt", quality_checks=False,
                        brackett_mask=False).brackett_mask is False
    train_apogeenet(flux, ivar, labels, tmp_path / "off.pt", input_flux="continuum_normalised", hyperparameters=TINY,
                    val_fraction=0.25, config=cfg, eval_draws=2)
    assert read_checkpoint(tmp_path / "off.pt")["normalisation"]["brackett_mask"] is False
    assert not np.all(seen["x"].numpy()[:, brackett_mask(wl, 7000.0)] == 0.0)


def _fresh_apogeenet(tmp_path, name, epochs, resume, fixed_rows=0):
    from stellarnn.labels.astronn.training import grid_labels_to_astronn, noise_free_observations
    from stellarnn.labels.astronn.network import OUTPUT_LABELS
    from test_labels_astronn_training import fake_grid23

    torch.manual_seed(0)
    obs = noise_free_observations(fake_grid23(24))
    lab = grid_labels_to_astronn(obs["labels"], obs["label_names"])[:, [OUTPUT_LABELS.index(k) for k in
                                                                         ("teff", "logg", "fe_h")]]
    fresh = {"flux": obs["flux"][fixed_rows:], "continuum": obs["continuum"][fixed_rows:], "labels": lab[fixed_rows:]}
    fixed = obs["flux"][:fixed_rows].astype(np.float64)
    return train_apogeenet(fixed, np.full_like(fixed, 1e4), lab[:fixed_rows], tmp_path / f"{name}.pt",
                           input_flux="continuum_normalised", hyperparameters=TINY, val_fraction=0.25, eval_draws=3,
                           resume_path=resume, fresh=fresh, snr_range=(30, 500), brackett_mask=True,
                           config=TrainConfig(epochs=epochs, batch_size=6, lr=3e-3, progress=False,
                                              early_stop_patience=5))


def test_fresh_noise_training_on_23_label_grid_runs_and_resumes(tmp_path):
    _, full = _fresh_apogeenet(tmp_path, "full", 2, None, fixed_rows=4)  # 20 fresh + 4 fixed (emulator-like) rows
    assert full["epochs_run"] == 2 and full["n_train"] + full["n_val"] == 24
    assert full["fresh_noise"]["n_spectra"] == 20
    resume = tmp_path / "apogeenet.resume.pt"
    _fresh_apogeenet(tmp_path, "part", 1, resume, fixed_rows=4)
    _, resumed = _fresh_apogeenet(tmp_path, "resumed", 2, resume, fixed_rows=4)
    assert resumed["epochs_run"] == 2
    assert resumed["best_val_loss"] == pytest.approx(full["best_val_loss"], rel=1e-5)
    assert set(resumed["validation"]) == {"teff", "logg", "fe_h"}


def test_evaluation_runs_in_chunks_with_the_same_statistics():
    from stellarnn.labels.apogeenet.network import APOGEENetResNet
    from stellarnn.labels.apogeenet.training import evaluate_apogeenet

    torch.manual_seed(0)
    model = APOGEENetResNet(stem_channels=2, block_channels=[2], kernel_size=5, pool_length=8, head_width=8,
                            n_head_layers=1).eval()
    rng = np.random.default_rng(0)
    flux = torch.as_tensor(1 + 0.01 * rng.standard_normal((7, 8575)))
    error = torch.full((7, 8575), 0.01, dtype=torch.float64)
    labels = np.column_stack([rng.uniform(4000, 6000, 7), rng.uniform(1, 4, 7), rng.uniform(-1, 0, 7)])
    whole = evaluate_apogeenet(model, flux, error, labels, n_draws=4, chunk_rows=100)
    chunked = evaluate_apogeenet(model, flux, error, labels, n_draws=4, chunk_rows=3)  # 3 + 3 + 1 rows
    for name in ("teff", "logg", "fe_h"):
        assert chunked[name]["n"] == whole[name]["n"] == 7
        # the values are the network's on the unperturbed flux: identical; only the noise draws' stream differs
        assert chunked[name]["bias"] == pytest.approx(whole[name]["bias"])
    with pytest.raises(ValueError, match="chunk_rows"):
        evaluate_apogeenet(model, flux, error, labels, chunk_rows=0)
