import numpy as np
import pytest
import torch

from stellarnn.synthesis.emulator import PayneEmulator, evaluate_emulator, load_emulator, save_emulator, train_emulator
from stellarnn.train import TrainConfig


def toy_grid(n, seed, n_pix=300):
    """A smooth 'spectrum' whose line depths and positions depend on 3 labels."""
    rng = np.random.default_rng(seed)
    labels = np.column_stack([rng.uniform(4000, 6000, n), rng.uniform(1, 5, n), rng.uniform(-1, 0.5, n)])
    x = np.arange(n_pix)[None, :]
    depth = 0.3 + 0.1 * (labels[:, 2:3]) - 0.00005 * (labels[:, 0:1] - 5000)
    centre = 150 + 5 * labels[:, 1:2]
    flux = 1 - depth * np.exp(-0.5 * ((x - centre) / 6) ** 2)
    cont = np.tile(np.linspace(0.9, 1.1, 30), (n, 1)) * (1 + 0.01 * labels[:, 1:2])
    return {"labels": labels, "flux": flux.astype(np.float32), "continuum": cont.astype(np.float32),
            "continuum_median": 10 ** (3 + labels[:, 0] / 6000)}


def test_architecture_is_the_payne():
    m = PayneEmulator(n_labels=25, n_pixels=100, n_continuum=0)
    linears = [l for l in m.flux_net if isinstance(l, torch.nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(25, 300), (300, 300), (300, 100)]
    acts = [l for l in m.flux_net if isinstance(l, torch.nn.LeakyReLU)]
    assert len(acts) == 2 and acts[0].negative_slope == 0.01
    m.label_min.fill_(0.0)
    m.label_max.fill_(10.0)
    s = m.scale(torch.tensor([[0.0] * 25, [10.0] * 25]))
    assert torch.allclose(s[0], torch.full((25,), -0.5)) and torch.allclose(s[1], torch.full((25,), 0.5))


def test_train_save_load_accuracy(tmp_path):
    torch.manual_seed(0)
    train, valid = toy_grid(400, 0), toy_grid(60, 1)
    res = train_emulator(train, valid, hidden=(64, 64),
                         config=TrainConfig(epochs=150, batch_size=64, lr=3e-3, progress=False),
                         continuum_epochs=60)
    assert res.metrics["median_abs_dflux"] < 5e-3, res.metrics
    path = save_emulator(tmp_path / "emu.pt", res, {"data": "toy"})
    model, payload = load_emulator(path)
    x = torch.as_tensor(valid["labels"][:5], dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), res.model(x), atol=5e-3, rtol=0)
        torch.testing.assert_close(model.label_min, res.model.label_min)  # buffers keep float32
    assert payload["metrics"]["median_abs_dflux"] == res.metrics["median_abs_dflux"]
    assert evaluate_emulator(model, valid)["median_abs_dflux"] < 6e-3


def test_silu_emulator_round_trips_and_old_checkpoints_default_to_leaky_relu(tmp_path):
    import torch

    from stellarnn.synthesis.emulator import EmulatorTrainingResult, PayneEmulator, load_emulator, save_emulator

    model = PayneEmulator(3, 50, hidden=(8,), n_continuum=0, activation="silu")
    assert isinstance(model.flux_net[1], torch.nn.SiLU)
    path = save_emulator(tmp_path / "e.pt", EmulatorTrainingResult(model, {}, {}), {})
    loaded, payload = load_emulator(path)
    assert loaded.activation == "silu" and payload["hyperparameters"]["activation"] == "silu"
    assert PayneEmulator(3, 50, hidden=(8,), n_continuum=0).activation == "leaky_relu"
    import pytest

    with pytest.raises(ValueError, match="activation"):
        PayneEmulator(3, 50, activation="tanh")


def test_emulator_error_by_population_in_units_of_the_noise():
    import torch

    from stellarnn.synthesis.emulator import PayneEmulator, emulator_error_by_population

    model = PayneEmulator(3, 8575, hidden=(4,), n_continuum=0)
    for p in model.flux_net.parameters():
        torch.nn.init.zeros_(p)
    labels = np.array([[4500.0, 2.5, 0.0], [5800.0, 4.4, 0.0], [7000.0, 4.0, 0.0]])
    flux = np.full((3, 8575), 1.0 - 0.003, dtype=np.float32)  # the model says 1.0: an error of 3e-3 everywhere
    flux[:, :100] = np.nan  # gaps do not count
    out = emulator_error_by_population(model, {"labels": labels, "flux": flux})
    assert out["giants"]["n"] == 1 and out["giants"]["rms_over_sigma_snr100"] == pytest.approx(0.3, rel=1e-3)
    assert out["hot"]["n"] == 1 and out["m_dwarfs"] == {"n": 0}


def test_training_continues_from_an_init_emulator_and_says_why_it_stopped(tmp_path):
    # scripts/retrain_labels_v4.sh continues a training across sessions from the last slice's checkpoint
    torch.manual_seed(0)
    train, valid = toy_grid(300, 0), toy_grid(40, 1)
    first = train_emulator(train, valid, hidden=(32, 32), activation="silu",
                           config=TrainConfig(epochs=60, batch_size=64, lr=3e-3, progress=False), continuum_epochs=5)
    assert first.history["stopped_by"] == "epochs"
    init, _ = load_emulator(save_emulator(tmp_path / "e.pt", first, {}))
    again = train_emulator(train, valid, hidden=(32, 32), activation="silu", init=init, continuum_epochs=1,
                           config=TrainConfig(epochs=1, batch_size=64, lr=1e-7, progress=False))
    x = torch.as_tensor(valid["labels"], dtype=torch.float32)
    with torch.no_grad():  # one epoch at a tiny learning rate: still the initial emulator
        torch.testing.assert_close(again.model(x), init(x), atol=1e-4, rtol=0)
    assert again.metrics["median_abs_dflux"] < 2 * first.metrics["median_abs_dflux"] + 1e-3
    with pytest.raises(ValueError, match="activation"):
        train_emulator(train, valid, hidden=(32, 32), init=init, config=TrainConfig(epochs=1, progress=False))
    with pytest.raises(ValueError, match="does not match"):
        train_emulator(train, valid, hidden=(16, 16), activation="silu", init=init,
                       config=TrainConfig(epochs=1, progress=False))
