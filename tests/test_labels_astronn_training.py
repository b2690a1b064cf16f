import numpy as np
import pytest
import torch

from stellarnn.labels.astronn.network import OUTPUT_LABELS, build_astronn
from stellarnn.labels.astronn.training import (grid_labels_to_astronn, robust_scatter, robust_value_scatter,
                                               synthetic_observations, train_astronn, validation_values)
from stellarnn.labels.pipeline import get_pipeline
from stellarnn.spectra import Spectrum, apogee_wavelength
from stellarnn.synthesis.grid_builder import LABEL_NAMES
from stellarnn.train import TrainConfig

NARROW = dict(dense_units=(32, 16), branch_units=(8, 4), wide_branch_units=(8, 4))


def fake_grid(n, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.zeros((n, len(LABEL_NAMES)))
    labels[:, 0] = rng.uniform(4000, 6000, n)
    labels[:, 1] = rng.uniform(1, 4, n)
    labels[:, 2] = rng.uniform(-1, 0.3, n)
    labels[:, 4:] = rng.uniform(-0.3, 0.3, (n, len(LABEL_NAMES) - 4))
    wl = apogee_wavelength()
    depth = 0.2 + 0.5 * (labels[:, [2]] + 1)  # lines deepen with metallicity
    centres = np.linspace(15200, 16900, 60)
    prof = np.exp(-0.5 * ((wl[None, :] - centres[:, None]) / 0.5) ** 2).sum(axis=0)
    flux = 1 - depth * prof[None] / prof.max()
    cont = np.tile(np.linspace(1.1, 0.9, 858), (n, 1))
    return {"flux": flux.astype(np.float32), "continuum": cont, "labels": labels, "label_names": list(LABEL_NAMES)}


def test_grid_label_conversion():
    lab = np.zeros((1, len(LABEL_NAMES)))
    col = {n: i for i, n in enumerate(LABEL_NAMES)}
    lab[0, col["teff"]], lab[0, col["m_h"]], lab[0, col["mg_m"]], lab[0, col["ti_m"]] = 5000, -0.5, 0.2, 0.1
    out = grid_labels_to_astronn(lab, LABEL_NAMES)[0]
    j = {n: i for i, n in enumerate(OUTPUT_LABELS)}
    assert out[j["teff"]] == 5000 and out[j["fe_h"]] == -0.5
    assert out[j["mg_h"]] == pytest.approx(-0.3) and out[j["ti_2_h"]] == out[j["ti_h"]] == pytest.approx(-0.4)


def test_synthetic_observations_noise_level():
    g = fake_grid(3)
    obs = synthetic_observations(g, snr=50, seed=1, copies=2)
    assert obs["flux"].shape == (6, 8575) and obs["star"].tolist() == [0, 1, 2, 0, 1, 2]
    resid = (obs["flux"][:3] - obs["flux"][3:]) * np.sqrt(obs["ivar"][:3])
    assert np.std(resid) == pytest.approx(np.sqrt(2), rel=0.05)
    with pytest.raises(ValueError):
        synthetic_observations(g, snr=0)


def test_short_training_on_synthetic_spectra(tmp_path):
    torch.manual_seed(0)
    g = fake_grid(40)
    obs = synthetic_observations(g, snr=200, seed=0)
    labels = grid_labels_to_astronn(obs["labels"], obs["label_names"])
    labels[::3, OUTPUT_LABELS.index("o_h")] = -9999.0  # missing labels
    model, metrics = train_astronn(obs["flux"], labels, tmp_path / "ann.pt", ivar=obs["ivar"], val_fraction=0.2,
                                   hyperparameters=NARROW, eval_passes=10,
                                   config=TrainConfig(epochs=24, batch_size=8, lr=3e-3, progress=False))
    assert metrics["n_val"] == 8 and metrics["validation"]["o_h"]["n"] < 8
    # [Fe/H] drives the line depths: the network must beat the prior scatter (0.375 dex for U(-1, 0.3));
    # 24 epochs: at 12 the scatter is 0.29-0.37 depending on the random stream (dropout masks, MC passes)
    assert metrics["validation"]["fe_h"]["robust_scatter"] < 0.3
    wl = apogee_wavelength()
    p = get_pipeline("astronn", weights=tmp_path / "ann.pt", mc_passes=10, ood_emulator=False)  # a 24-epoch toy network
    row = p.process([Spectrum(wl, obs["flux"][0], obs["ivar"][0])])[0]
    assert row["reason"] == "" and np.isfinite(row["mg_h"])
    with pytest.raises(ValueError, match="labels must be"):
        train_astronn(obs["flux"], labels[:, :3], tmp_path / "x.pt", ivar=obs["ivar"])
    with pytest.raises(ValueError, match="ivar"):
        train_astronn(obs["flux"], labels, tmp_path / "x.pt")


def test_robust_scatter():
    x = np.random.default_rng(0).normal(0, 2.0, (20000, 1))
    x[:100] = 1e6
    assert robust_scatter(x)[0] == pytest.approx(2.0, rel=0.05)


def test_robust_value_scatter_is_the_geometric_mean_of_per_label_robust_scatters():
    rng = np.random.default_rng(0)
    n = 4000
    truth = torch.as_tensor(rng.normal(0, 1, (n, 3)))
    noise = torch.as_tensor(rng.normal(0, 1, (n, 3)) * np.array([0.05, 0.5, 0.2]))
    noise[:40, 0] = 1e3  # 1 % wild outliers in the first label: the mean squared error would be ~1e4
    truth[::2, 2] = -9999.0  # a label missing on half of the rows

    class Echo(torch.nn.Module):  # returns the prediction carried in the input
        def forward(self, x):
            return x, torch.zeros_like(x)

    batches = [(truth[a:a + 500] + noise[a:a + 500], truth[a:a + 500], truth[a:a + 500])
               for a in range(0, n, 500)]
    got = robust_value_scatter(Echo(), batches, mc_passes=0)
    assert got == pytest.approx((0.05 * 0.5 * 0.2) ** (1 / 3), rel=0.05)
    with pytest.raises(ValueError, match="no label"):
        robust_value_scatter(Echo(), [(truth[:4], torch.full((4, 3), -9999.0), truth[:4])], mc_passes=0)


def test_validation_values_are_repeatable_mc_means_that_leave_the_random_stream_alone():
    torch.manual_seed(0)
    net, _ = build_astronn(**NARROW)
    net.eval()
    x = 0.04 * torch.randn(5, net.n_pixels)
    state = torch.get_rng_state()
    with torch.no_grad():
        a, b = validation_values(net, x, 6), validation_values(net, x, 6)
        deterministic = validation_values(net, x, 0)
    assert torch.equal(torch.get_rng_state(), state)  # the training's stream is untouched
    assert torch.equal(a, b) and a.shape == (5, len(OUTPUT_LABELS))  # the same masks every call
    assert not net.mc_dropout and not torch.allclose(a, deterministic)  # dropout on only inside
    with torch.no_grad():
        net.mc_dropout = True
        torch.manual_seed(123)
        value, _ = net.forward_mc(x, 6)
        net.mc_dropout = False
    assert value.shape == (5, 6, len(OUTPUT_LABELS)) and not torch.allclose(value.mean(1), a)  # other masks


def test_select_robust_records_its_criterion(tmp_path):
    torch.manual_seed(0)
    obs = synthetic_observations(fake_grid(30), snr=200, seed=0)
    labels = grid_labels_to_astronn(obs["labels"], obs["label_names"])
    _, metrics = train_astronn(obs["flux"], labels, tmp_path / "ann.pt", ivar=obs["ivar"], val_fraction=0.2,
                               hyperparameters=NARROW, eval_passes=2, select="robust",
                               config=TrainConfig(epochs=2, batch_size=8, lr=3e-3, progress=False))
    assert metrics["selection"] == "robust_scatter_geomean" and 0 < metrics["best_val_loss"] < 10
    with pytest.raises(ValueError, match="select must be"):
        train_astronn(obs["flux"], labels, tmp_path / "x.pt", ivar=obs["ivar"], select="median")


def test_brackett_mask_in_training_inputs_and_checkpoint(tmp_path):
    from stellarnn.spectra import kept_pixel_index
    from stellarnn.spectra.brackett_mask import brackett_mask
    from stellarnn.train import read_checkpoint

    wl = apogee_wavelength()[kept_pixel_index()]
    teff = np.array([4000.0, 5000, 6000, 7000])
    normed = np.tile(1 - 0.4 * np.exp(-0.5 * ((wl - 16811.2) / 8) ** 2), (4, 1))  # a deep Br 11 line in every star
    labels = np.full((4, len(OUTPUT_LABELS)), -9999.0)
    labels[:, 0], labels[:, 1], labels[:, OUTPUT_LABELS.index("fe_h")] = teff, 4.0, 0.0
    cfg = TrainConfig(epochs=1, batch_size=2, lr=1e-3, progress=False)
    train_astronn(normed, labels, tmp_path / "m.pt", val_fraction=0.25, hyperparameters=NARROW, eval_passes=2,
                  config=cfg, brackett_mask=True)
    norm = read_checkpoint(tmp_path / "m.pt")["normalisation"]
    assert norm["brackett_mask"] is True
    mean = np.asarray(norm["spectrum_mean"], dtype=np.float64)
    tr = np.random.default_rng(0).permutation(4)[1:]  # the training rows of train_astronn (seed 0)
    core, wide = brackett_mask(wl, 7000.0), brackett_mask(wl, 4000.0)
    assert np.all(mean[core] == 1.0)  # every star's cores set to 1 before the mean
    only_wide = wide & ~core
    n_hot = int((teff[tr] >= 5500).sum())
    np.testing.assert_allclose(mean[only_wide], (len(tr) - n_hot + n_hot * normed[0, only_wide]) / len(tr), rtol=1e-5)
    assert get_pipeline("astronn", weights=tmp_path / "m.pt", ood_emulator=False).brackett_mask is True
    train_astronn(normed, labels, tmp_path / "off.pt", val_fraction=0.25, hyperparameters=NARROW, eval_passes=2,
                  config=cfg)
    off = read_checkpoint(tmp_path / "off.pt")["normalisation"]
    assert off["brackett_mask"] is False and np.asarray(off["spectrum_mean"])[core].min() < 0.7
    assert get_pipeline("astronn", weights=tmp_path / "off.pt", ood_emulator=False).brackett_mask is False


# ---------------------------------------------------------------- 23-label grids, fresh noise, resume
from stellarnn.labels.astronn.training import noise_free_observations  # noqa: E402

GRID23 = list(LABEL_NAMES) + ["v_macro", "v_sini"]


def fake_grid23(n, seed=0):
    """A tiny grid with the 23 labels of grids/apogee_like, columns in a shuffled order (picked by name)."""
    g = fake_grid(n, seed)
    lab = np.concatenate([g["labels"], np.tile([[6.0, 12.0]], (n, 1))], axis=1)
    order = np.random.default_rng(1).permutation(len(GRID23))
    return dict(g, labels=lab[:, order], label_names=[GRID23[i] for i in order])


def test_23_label_grid_labels_are_picked_by_name():
    g = fake_grid23(4)
    out = grid_labels_to_astronn(g["labels"], g["label_names"])
    ref = grid_labels_to_astronn(fake_grid(4)["labels"], LABEL_NAMES)
    np.testing.assert_array_equal(out, ref)  # v_macro, v_sini (and v_micro) ignored, order irrelevant
    assert out.shape == (4, len(OUTPUT_LABELS)) and np.isfinite(out).all()
    with pytest.raises(ValueError, match="label names"):
        grid_labels_to_astronn(g["labels"], g["label_names"][:-1])


def _fresh_training(tmp_path, name, epochs, resume):
    torch.manual_seed(0)
    obs = noise_free_observations(fake_grid23(30))
    fresh = {"flux": obs["flux"], "continuum": obs["continuum"],
             "labels": grid_labels_to_astronn(obs["labels"], obs["label_names"])}
    empty = np.empty((0, 8575))
    return train_astronn(empty, np.empty((0, len(OUTPUT_LABELS))), tmp_path / f"{name}.pt", ivar=empty,
                         val_fraction=0.2, hyperparameters=NARROW, eval_passes=3, fresh=fresh, snr_range=(30, 500),
                         resume_path=resume, brackett_mask=True,
                         config=TrainConfig(epochs=epochs, batch_size=8, lr=3e-3, progress=False,
                                            early_stop_patience=5, seed=0))


def test_fresh_noise_training_on_23_label_grid_runs_and_resumes(tmp_path):
    _, full = _fresh_training(tmp_path, "full", 2, None)
    assert full["epochs_run"] == 2 and full["n_train"] == 24 and full["n_val"] == 6
    assert full["fresh_noise"]["snr_range"] == [30, 500] and full["early_stop_patience"] == 5
    resume = tmp_path / "state" / "astronn.resume.pt"
    _fresh_training(tmp_path, "part", 1, resume)  # interrupted after epoch 0
    from stellarnn.train.trainer import read_resume_state

    assert read_resume_state(resume)["epoch"] == 0  # loads with weights_only=True
    _, resumed = _fresh_training(tmp_path, "resumed", 2, resume)
    assert resumed["epochs_run"] == 2
    # the resumed run saw the same epoch-1 noise as the uninterrupted one: same validation loss
    assert resumed["best_val_loss"] == pytest.approx(full["best_val_loss"], rel=1e-5)
    payload = torch.load(tmp_path / "resumed.pt", weights_only=False)
    assert payload["normalisation"]["brackett_mask"] is True


def test_a_fine_tuning_keeps_the_normalisation_of_its_initial_network(tmp_path):
    from stellarnn.train import read_checkpoint

    torch.manual_seed(0)
    cfg = dict(batch_size=8, lr=3e-3, progress=False)
    obs = synthetic_observations(fake_grid(30), snr=200, seed=0)
    labels = grid_labels_to_astronn(obs["labels"], obs["label_names"])
    train_astronn(obs["flux"], labels, tmp_path / "a.pt", ivar=obs["ivar"], val_fraction=0.2, hyperparameters=NARROW,
                  eval_passes=2, config=TrainConfig(epochs=1, **cfg))
    other = fake_grid(30, seed=3)
    other["labels"][:, 0] += 800.0  # another population mix: hotter stars
    obs2 = synthetic_observations(other, snr=200, seed=1)
    labels2 = grid_labels_to_astronn(obs2["labels"], obs2["label_names"])
    for name, init in (("b.pt", tmp_path / "a.pt"), ("c.pt", None)):
        train_astronn(obs2["flux"], labels2, tmp_path / name, ivar=obs2["ivar"], val_fraction=0.2, eval_passes=2,
                      hyperparameters=None if init else NARROW, init_from=init, config=TrainConfig(epochs=1, **cfg))
    a, b, c = (read_checkpoint(tmp_path / n)["normalisation"] for n in ("a.pt", "b.pt", "c.pt"))
    j = OUTPUT_LABELS.index("teff")
    for key in ("spectrum_mean", "label_mean", "label_std"):
        assert torch.equal(torch.as_tensor(a[key]), torch.as_tensor(b[key])), key
    assert float(torch.as_tensor(c["label_mean"])[j]) > float(torch.as_tensor(a["label_mean"])[j]) + 500
