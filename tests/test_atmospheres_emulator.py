"""The iNNterpol network and the Innterpol inference wrapper."""
import numpy as np
import pytest
import torch

from stellarnn.atmospheres.emulator import DEFAULT_WEIGHTS, Innterpol, InnterpolMLP
from stellarnn.atmospheres.training import InnterpolConfig, make_splits, train_innterpol


def test_default_architecture():
    net = InnterpolMLP()
    linears = [m for m in net.net if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 14  # in, 12 hidden, out
    assert linears[0].in_features == 3 and linears[-1].out_features == 48
    assert all(m.in_features == 40 for m in linears[1:])
    acts = [m for m in net.net if isinstance(m, torch.nn.LeakyReLU)]
    assert len(acts) == 13 and acts[0].negative_slope == 0.2
    with pytest.raises(ValueError):
        InnterpolMLP(hidden=0)


@pytest.fixture(scope="module")
def small_emulator(tmp_path_factory, one_torch_thread):
    """A quickly trained ATLAS9 emulator (few epochs) to exercise the API."""
    from stellarnn.atmospheres.resample import atlas9_tau_grid

    grid = atlas9_tau_grid()
    path = tmp_path_factory.mktemp("emu") / "e.pt"
    train_innterpol(grid, make_splits(grid), path, InnterpolConfig(n_components=6, hidden=16, n_hidden_layers=2,
                                                                   epochs=3, lr=3e-3), progress=False)
    return Innterpol.load(path)


def test_scalar_batch_and_tensor_inputs(small_emulator):
    one = small_emulator.atmosphere(5000.0, 3.0, 0.0)
    assert not one.batched and one.n_layers == 71 and isinstance(one.temperature, np.ndarray)
    np.testing.assert_allclose(one.log_tau_ross, -6.875 + 0.125 * np.arange(71))
    batch = small_emulator.atmosphere(np.array([5000.0, 6000.0, 7000.0]), 3.0, np.zeros(3))
    assert batch.temperature.shape == (3, 71)
    np.testing.assert_allclose(batch[0].temperature, one.temperature, rtol=1e-5)
    teff = torch.tensor([5000.0, 6000.0], requires_grad=True)
    tens = small_emulator.atmosphere(teff, torch.tensor([3.0, 3.0]), torch.tensor([0.0, 0.0]))
    assert isinstance(tens.temperature, torch.Tensor)
    tens.temperature[:, 40].sum().backward()
    assert teff.grad is not None and torch.isfinite(teff.grad).all()
    assert tens.density.shape == (2, 71)


def test_out_of_grid_indicator(small_emulator):
    inside = small_emulator.atmosphere(5000.0, 3.0, 0.0)
    outside = small_emulator.atmosphere(20000.0, 3.0, 0.0)
    assert inside.grid_distance < 1.5
    assert outside.grid_distance > 15  # 5000 K beyond the hottest model, in 250 K steps


def test_emulated_atmosphere_writes_krz(small_emulator, tmp_path):
    from stellarnn.atmospheres import read_krz

    atm = small_emulator.atmosphere(5000.0, 3.0, 0.0)
    back = read_krz(atm.write_krz(tmp_path / "e.krz"))
    np.testing.assert_allclose(back["rhox"], atm.rhox, rtol=1e-7)


@pytest.mark.parametrize("bad", [dict(teff=np.nan, logg=3.0, m_h=0.0), dict(teff=[], logg=3.0, m_h=0.0),
                                 dict(teff=[5000.0, 5100.0], logg=[3.0, 3.0, 3.0], m_h=0.0)])
def test_bad_input(small_emulator, bad):
    with pytest.raises(ValueError):
        small_emulator.atmosphere(**bad)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="atmosphere train"):
        Innterpol.load(tmp_path / "none.pt")
    assert DEFAULT_WEIGHTS.name == "innterpol_atlas9.pt"


def test_shipped_weights_load_and_match_the_grid():
    """The shipped checkpoint (float16) against a grid model it was trained on: T within a few %."""
    from stellarnn.atmospheres.resample import atlas9_tau_grid

    if not DEFAULT_WEIGHTS.is_file():
        pytest.fail(f"shipped weights missing: {DEFAULT_WEIGHTS}")
    em = Innterpol.load()
    grid = atlas9_tau_grid()
    node = np.flatnonzero((grid.params == [5000.0, 4.5, 0.0]).all(1))[0]
    atm = em.atmosphere(5000.0, 4.5, 0.0)
    err_t = np.log10(atm.temperature) - grid.values[node, 1]
    assert np.sqrt(np.mean(err_t ** 2)) < np.log10(1.02)
    assert np.all(np.diff(atm.temperature[20:]) > 0)
