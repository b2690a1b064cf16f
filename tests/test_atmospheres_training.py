"""Training the emulator (axis-agnostic: a small synthetic 5-D grid) and the evaluation splits."""
import numpy as np
import pytest
import torch

from stellarnn.atmospheres.emulator import Innterpol
from stellarnn.atmospheres.resample import TauSampledGrid
from stellarnn.atmospheres.tau import INNTERPOL_LOG_TAU
from stellarnn.atmospheres.training import InnterpolConfig, make_splits, train_innterpol
from stellarnn.train import read_checkpoint


def synthetic_5d_grid():
    """Smooth analytic 'atmospheres' on teff x logg x m_h x c_m x o_m (5 x 3 x 3 x 2 x 2 = 180 models)."""
    axes = {"teff": np.array([4000.0, 4500.0, 5000.0, 5500.0, 6000.0]), "logg": np.array([1.0, 2.0, 3.0]),
            "m_h": np.array([-1.0, -0.5, 0.0]), "c_m": np.array([-0.25, 0.25]), "o_m": np.array([0.0, 0.5])}
    idx = np.stack(np.meshgrid(*[np.arange(len(a)) for a in axes.values()], indexing="ij"), -1).reshape(-1, 5)
    p = np.stack([axes[k][idx[:, i]] for i, k in enumerate(axes)], 1)
    x = INNTERPOL_LOG_TAU[None, :]
    t = p[:, :1] / 5000.0
    log_t = np.log10(p[:, :1]) - 0.1 + 0.05 * x * t + 0.01 * p[:, 3:4] * np.tanh(x)
    log_rhox = 0.9 * x + 0.5 * p[:, 1:2] - 1.0 + 0.05 * p[:, 2:3]
    log_p = log_rhox + p[:, 1:2] * 0.0 + 0.02 * p[:, 4:5]
    log_ne = log_t * 4 - 3 + 0.3 * p[:, 2:3] + 0.1 * x
    values = np.stack([log_rhox, log_t, log_p, log_ne], 1)
    return TauSampledGrid(axes, idx, values, INNTERPOL_LOG_TAU.copy(), ["synthetic"])


def test_splits_follow_the_protocol():
    grid = synthetic_5d_grid()
    s = make_splits(grid, teff_range=(4250.0, 5750.0))
    assert s.description["teff_columns_K"] == [4500.0, 5500.0]
    assert s.edge.sum() == 5 * 3 * 2 * 2  # log g = 1 plane
    total = s.train.astype(int) + s.validation + s.random + s.teff_columns + s.edge
    assert np.all(total == 1)  # a partition
    assert not (s.teff_columns & (grid.params[:, 1] == 1.0)).any()
    assert s.random.sum() == round(0.1 * (len(grid) - s.teff_columns.sum() - s.edge.sum()))


def test_train_5d_grid_checkpoint_and_inference(tmp_path, one_torch_thread):
    grid = synthetic_5d_grid()
    splits = make_splits(grid, teff_range=(4250.0, 5750.0))
    cfg = InnterpolConfig(n_components=3, hidden=24, n_hidden_layers=2, epochs=60, lr=3e-3, plateau_patience=None)
    path, history = train_innterpol(grid, splits, tmp_path / "e.pt", cfg, resume_path=tmp_path / "r.pt",
                                    progress=False)
    assert history.val_loss[-1] < 0.5 * history.val_loss[0]
    ck = read_checkpoint(path)
    assert ck["hyperparameters"] == {"n_inputs": 5, "n_outputs": 12, "hidden": 24, "n_hidden_layers": 2,
                                     "negative_slope": 0.2, "activation": "leaky_relu"}
    assert all(v.dtype == torch.float16 for v in ck["state_dict"].values())
    assert ck["normalisation"]["axis_names"] == ["teff", "logg", "m_h", "c_m", "o_m"]
    em = Innterpol.load(path)
    atm = em.atmosphere(np.array([4600.0, 5200.0]), 2.0, -0.5, c_m=0.0, o_m=0.25)
    assert atm.batched and atm.temperature.shape == (2, 71)
    assert isinstance(atm.temperature, np.ndarray)
    # the fit is rough after 60 epochs, but the temperature scale is learnt
    assert np.all(np.abs(np.log10(atm.temperature[:, 50] / np.array([4600.0, 5200.0]))) < 0.15)
    with pytest.raises(ValueError, match="axes"):
        em.atmosphere(5000.0, 2.0, 0.0)
    # resumable: a second call with the finished state trains no further epoch
    _, again = train_innterpol(grid, splits, tmp_path / "e2.pt", cfg, resume_path=tmp_path / "r.pt", progress=False)
    assert len(again.train_loss) == len(history.train_loss)


def test_lbfgs_polish_from_a_checkpoint_improves_validation_and_keeps_the_basis(tmp_path, one_torch_thread):
    grid = synthetic_5d_grid()
    splits = make_splits(grid, teff_range=(4250.0, 5750.0))
    cfg = InnterpolConfig(n_components=3, hidden=24, n_hidden_layers=2, epochs=40, lr=3e-3, plateau_patience=None,
                          activation="silu")
    first, h1 = train_innterpol(grid, splits, tmp_path / "a.pt", cfg, progress=False)
    polish = InnterpolConfig(n_components=3, hidden=24, n_hidden_layers=2, epochs=0, activation="silu",
                             polish_epochs=8, polish_iterations=20)
    second, h2 = train_innterpol(grid, splits, tmp_path / "b.pt", polish, progress=False, init_path=first,
                                 resume_path=tmp_path / "r.pt")
    a, b = read_checkpoint(first), read_checkpoint(second)
    assert b["hyperparameters"]["activation"] == "silu"
    assert b["metrics"]["polish_best_val_mse"] < 0.5 * h1.best_val  # L-BFGS goes much further than 40 Adam epochs
    assert b["metrics"]["adam_best_val_mse"] == pytest.approx(h1.best_val, rel=1e-2)  # measured on the float16 init
    assert b["provenance"]["init_sha256"] and b["provenance"]["init_from"] == str(first)
    assert torch.equal(a["normalisation"]["svd_components"], b["normalisation"]["svd_components"])
    assert (tmp_path / "r.pt.lbfgs").is_file()
    # the fast engine (in-place SiLU) and the differentiable path agree
    em = Innterpol.load(second)
    p = torch.tensor([[4600.0, 2.0, -0.5, 0.0, 0.25], [5900.0, 3.0, 0.0, 0.2, 0.1]])
    fast = em.atmosphere(p[:, 0].numpy(), p[:, 1].numpy(), p[:, 2].numpy(), c_m=p[:, 3].numpy(), o_m=p[:, 4].numpy())
    slow = em.profiles(p).detach().numpy()
    assert np.allclose(fast.temperature, slow[:, 1], rtol=1e-5)
    with pytest.raises(ValueError, match="components"):
        train_innterpol(grid, splits, tmp_path / "c.pt", InnterpolConfig(n_components=4, hidden=24, n_hidden_layers=2,
                                                                         epochs=0), progress=False, init_path=first)


def test_quantity_weights_shift_the_fit_towards_temperature(tmp_path, one_torch_thread):
    grid = synthetic_5d_grid()
    splits = make_splits(grid, teff_range=(4250.0, 5750.0))
    errors = {}
    for name, weights in (("equal", None), ("T", (0.05, 20.0, 0.05, 0.05))):
        torch.manual_seed(0)
        cfg = InnterpolConfig(n_components=3, hidden=8, n_hidden_layers=1, epochs=150, batch_size=16, lr=3e-3,
                              plateau_patience=None, quantity_weights=weights)
        path, _ = train_innterpol(grid, splits, tmp_path / f"{name}.pt", cfg, progress=False)
        em = Innterpol.load(path)
        with torch.no_grad():  # the network's own targets: the scaled SVD coefficients
            pred = em.coefficients(torch.as_tensor(grid.params[splits.train], dtype=torch.float32)).double().numpy()
        err = (pred - em.basis.encode(grid.values[splits.train])) / em.coefficient_scale.numpy()[None, :, None]
        errors[name] = np.sqrt((err ** 2).mean(axis=(0, 2)))  # per quantity, relative to its spread
    # the temperature's share of the (relative) error falls when T weighs 400 times the others
    share = {k: v[1] / v.sum() for k, v in errors.items()}
    assert share["T"] < 0.5 * share["equal"]
    assert errors["T"][1] < errors["equal"][1]
    with pytest.raises(ValueError, match="4 positive numbers"):
        train_innterpol(grid, splits, tmp_path / "bad.pt", InnterpolConfig(n_components=3, hidden=8, n_hidden_layers=1,
                        epochs=1, quantity_weights=(1.0, 2.0)), progress=False)


def test_update_manifest(tmp_path):
    import json

    from stellarnn.atmospheres.training import update_manifest
    from stellarnn.train import file_sha256

    grid = synthetic_5d_grid()
    folder = tmp_path / "weights"
    path, _ = train_innterpol(grid, make_splits(grid, teff_range=(4250.0, 5750.0)), folder / "m.pt",
                              InnterpolConfig(n_components=2, hidden=4, n_hidden_layers=1, epochs=1), progress=False)
    update_manifest(folder / "manifest.json", path, "m", "cmd", {"x": 1.0})
    entry = update_manifest(folder / "manifest.json", path, "m", "cmd2")
    data = json.loads((folder / "manifest.json").read_text())["models"]
    assert len(data) == 1 and data[0]["command"] == "cmd2" and data[0]["file"] == "m.pt"
    assert entry["sha256"] == file_sha256(path) and entry["hyperparameters"]["n_inputs"] == 5


def test_family_input_default_and_validation(tmp_path, one_torch_thread):
    """An emulator with a family axis: left out, the family is the checkpoint's default (0); 0.5 is refused."""
    axes = {"teff": np.array([4000.0, 4500.0, 5000.0, 5500.0, 6000.0]), "logg": np.array([1.0, 2.0, 3.0]),
            "m_h": np.array([-1.0, -0.5, 0.0, 0.5]), "family": np.array([0.0, 1.0])}
    idx = np.stack(np.meshgrid(*[np.arange(len(a)) for a in axes.values()], indexing="ij"), -1).reshape(-1, 4)
    idx = idx[idx[:, 2] % 2 == idx[:, 3]]  # slices alternate between the two families
    p = np.stack([axes[k][idx[:, i]] for i, k in enumerate(axes)], 1)
    x = INNTERPOL_LOG_TAU[None, :]
    log_t = np.log10(p[:, :1]) + 0.05 * x + 0.02 * p[:, 3:4]  # family 1: +4.7 % in T
    values = np.stack([0.9 * x + 0.5 * p[:, 1:2], log_t, 0.9 * x + 0.4 * p[:, 1:2], 4 * log_t - 3 + 0.3 * p[:, 2:3]], 1)
    grid = TauSampledGrid(axes, idx, values, INNTERPOL_LOG_TAU.copy(), ["synthetic"])
    splits = make_splits(grid, teff_range=(4250.0, 5750.0))
    cfg = InnterpolConfig(n_components=3, hidden=16, n_hidden_layers=2, epochs=400, batch_size=16, lr=3e-3,
                          plateau_patience=None)
    path, _ = train_innterpol(grid, splits, tmp_path / "f.pt", cfg, progress=False)
    em = Innterpol.load(path)
    assert read_checkpoint(path)["normalisation"]["default_family"] == 0.0
    assert em.default_axes == {"family": 0.0}
    a = em.atmosphere(5000.0, 2.0, -0.5, with_distance=False)
    b = em.atmosphere(5000.0, 2.0, -0.5, family=0, with_distance=False)
    c = em.atmosphere(5000.0, 2.0, -0.5, family=1, with_distance=False)
    np.testing.assert_array_equal(a.temperature, b.temperature)
    ratio = np.median(c.temperature / b.temperature)
    assert 1.02 < ratio < 1.08  # the network learned the family offset (10^0.02 = 1.047)
    with pytest.raises(ValueError, match="family must be 0 or 1"):
        em.atmosphere(5000.0, 2.0, -0.5, family=0.5)
    # the out-of-grid distance: to the nearest model of either family over teff, log g, [M/H]; the torch path agrees
    teff = np.array([4500.0, 5250.0, 5000.0, 5000.0])
    m_h, family = np.array([-0.5, -1.0, 0.0, 0.0]), np.array([1, 0, 0, 1])
    d = em.atmosphere(teff, 2.0, m_h, family=family).grid_distance
    dev = Innterpol.load(path, engine="torch").atmosphere(teff, 2.0, m_h, family=family).grid_distance
    np.testing.assert_array_equal(d, dev)
    own = grid.params[splits.train | splits.validation][:, :3]
    for i in range(4):
        want = np.min(np.sqrt((((own - [teff[i], 2.0, m_h[i]]) / em.steps[:3]) ** 2).sum(1)))
        assert d[i] == pytest.approx(want, rel=1e-12)
    assert d[2] == d[3]  # the family label does not move a point in or out of the grid


def test_teff_as_theta_input(tmp_path, one_torch_thread):
    """teff_as_theta: the network sees 5040/Teff; the CPU engine, the autograd path and the torch path agree."""
    grid = synthetic_5d_grid()
    splits = make_splits(grid, teff_range=(4250.0, 5750.0))
    cfg = InnterpolConfig(n_components=3, hidden=16, n_hidden_layers=2, epochs=30, batch_size=16, lr=3e-3,
                          plateau_patience=None, teff_as_theta=True)
    path, _ = train_innterpol(grid, splits, tmp_path / "t.pt", cfg, progress=False)
    norm = read_checkpoint(path)["normalisation"]
    assert norm["input_transform"] == {"teff": "theta"}
    np.testing.assert_allclose(np.asarray(norm["axis_min"])[0], 5040.0 / 6000.0, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(norm["axis_max"])[0], 5040.0 / 4000.0, rtol=1e-6)
    em = Innterpol.load(path)
    p = grid.params[:5]
    coords = dict(zip(grid.axis_names, p.T))
    fast = em.atmosphere(**coords, with_distance=False).temperature
    grad = em.profiles(torch.as_tensor(p, dtype=torch.float32))[:, 1].detach().numpy()
    np.testing.assert_allclose(fast, grad, rtol=1e-5)
    torch_path = Innterpol.load(path, engine="torch").atmosphere(**coords, with_distance=False).temperature
    np.testing.assert_allclose(torch_path, fast, rtol=1e-5)
    scaled = em.scale_inputs(torch.as_tensor(p, dtype=torch.float32))
    np.testing.assert_allclose(scaled[:, 0].numpy(), (5040.0 / p[:, 0] - 5040.0 / 6000.0) / (5040.0 / 4000.0 - 5040.0 / 6000.0),
                               rtol=1e-5)
    with pytest.raises(ValueError, match="input transform"):  # a warm start must keep the transform
        train_innterpol(grid, splits, tmp_path / "u.pt", InnterpolConfig(n_components=3, hidden=16, n_hidden_layers=2,
                        epochs=1), progress=False, init_path=path)


def test_profile_loss_with_unit_weights_is_the_coefficient_loss_and_depth_weights_count():
    from stellarnn.atmospheres.svd import SVDBasis
    from stellarnn.atmospheres.training import depth_weight_profile, profile_weighted_mse, weighted_mse

    rng = np.random.default_rng(3)
    log_tau = np.linspace(-6.875, 1.875, 71)
    basis = SVDBasis.fit(rng.normal(size=(200, 4, 71)), 6)
    qw = np.array([1.0, 2.0, 1.0, 3.0])
    x, y = torch.randn(32, 4), torch.randn(32, 24)
    model = torch.nn.Linear(4, 24).requires_grad_(False)
    plain = weighted_mse(torch.as_tensor(np.repeat(qw, 6), dtype=torch.float32))(model, (x, y))
    unit = profile_weighted_mse(basis.components, depth_weight_profile((), log_tau), qw)(model, (x, y))
    assert float(unit) == pytest.approx(float(plain), rel=1e-5)  # orthonormal basis: Parseval
    w = depth_weight_profile((("n_e", -0.5, 1.0, 10.0), ("T", -7, 2, 2.0)), log_tau)
    deep = (log_tau >= -0.5) & (log_tau <= 1.0)
    assert (w[3, deep] == 10).all() and (w[3, ~deep] == 1).all() and (w[1] == 2).all() and (w[[0, 2]] == 1).all()
    heavier = profile_weighted_mse(basis.components, w, qw)(model, (x, y))
    assert float(heavier) > float(unit)
    for bad in ((("Te", 0, 1, 2),), (("T", 1, 0, 2),), (("T", 0, 1, -1),), (("T", 3, 4, 2),), (("T", 0, 1),)):
        with pytest.raises(ValueError):
            depth_weight_profile(bad, log_tau)
