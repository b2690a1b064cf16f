import math

import numpy as np
import torch

from stellarnn.train import TrainConfig, Trainer


def _data(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3
    return x, y


def mse(model, batch):
    x, y = batch
    return torch.mean((model(x) - y) ** 2)


def test_fit_learns_linear_map_and_keeps_best():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    tr = Trainer(model, mse, TrainConfig(epochs=60, batch_size=32, lr=0.05, progress=False))
    hist = tr.fit(_data(), _data(64, seed=1))
    assert hist.val_loss[-1] < 1e-3 < hist.val_loss[0]
    assert hist.best_val == min(hist.val_loss)
    assert abs(tr.evaluate(_data(64, seed=1)) - hist.best_val) < 1e-9


def test_resume_continues_where_it_stopped(tmp_path):
    cfg = dict(batch_size=32, lr=0.05, progress=False)
    torch.manual_seed(0)
    full = torch.nn.Linear(3, 1)
    Trainer(full, mse, TrainConfig(epochs=10, **cfg)).fit(_data(), _data(64, 1))

    torch.manual_seed(0)
    part = torch.nn.Linear(3, 1)
    Trainer(part, mse, TrainConfig(epochs=4, **cfg), resume_path=tmp_path / "r.pt").fit(_data(), _data(64, 1))
    torch.manual_seed(123)  # a different process state must not matter
    resumed = torch.nn.Linear(3, 1)
    hist = Trainer(resumed, mse, TrainConfig(epochs=10, **cfg), resume_path=tmp_path / "r.pt").fit(_data(), _data(64, 1))
    assert len(hist.val_loss) == 10
    torch.testing.assert_close(resumed.weight, full.weight)


def test_non_finite_loss_raises():
    model = torch.nn.Linear(3, 1)

    def bad(model, batch):
        return model(batch[0]).sum() * float("nan")

    import pytest

    with pytest.raises(FloatingPointError):
        Trainer(model, bad, TrainConfig(epochs=1, progress=False)).fit(_data())


def test_val_fn_selects_the_best_weights_instead_of_the_loss():
    import torch

    from stellarnn.train import TrainConfig, Trainer

    torch.manual_seed(0)
    x = torch.randn(64, 3)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
    model = torch.nn.Linear(3, 1)
    seen = []

    def loss_fn(m, b):
        return ((m(b[0]) - b[1]) ** 2).mean()

    def val_fn(m, b):  # a criterion that prefers the earliest epoch: 0, 1, 2, ... calls per epoch
        seen.append(1)
        return torch.tensor(float(len(seen)))

    hist = Trainer(model, loss_fn, TrainConfig(epochs=4, batch_size=64, lr=1e-2, progress=False),
                   val_fn=val_fn).fit((x, y), (x, y))
    assert hist.best_epoch == 0 and hist.val_loss == [1.0, 2.0, 3.0, 4.0]


def test_cosine_schedule_anneals_to_the_floor_and_resumes(tmp_path):
    cfg = dict(epochs=20, batch_size=64, lr=0.01, schedule="cosine", min_lr=1e-4, progress=False)
    torch.manual_seed(0)
    full = torch.nn.Linear(3, 1)
    hist = Trainer(full, mse, TrainConfig(**cfg)).fit(_data(), _data(64, 1))
    assert hist.lr[0] == 0.01
    assert all(a >= b for a, b in zip(hist.lr, hist.lr[1:]))  # monotone decay
    assert abs(hist.lr[-1] - (1e-4 + (0.01 - 1e-4) * (1 + math.cos(math.pi * 19 / 20)) / 2)) < 1e-12
    torch.manual_seed(0)
    part = torch.nn.Linear(3, 1)
    # interrupted after its first epoch (wall-time limit 0), then resumed to the end
    Trainer(part, mse, TrainConfig(**cfg, max_seconds=0.0), resume_path=tmp_path / "r.pt").fit(_data(), _data(64, 1))
    resumed = torch.nn.Linear(3, 1)
    again = Trainer(resumed, mse, TrainConfig(**cfg), resume_path=tmp_path / "r.pt").fit(_data(), _data(64, 1))
    np.testing.assert_allclose(again.lr, hist.lr, rtol=1e-12)
    torch.testing.assert_close(resumed.weight, full.weight)


def test_plateau_schedule_respects_the_floor():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    x, _ = _data()
    g = torch.Generator().manual_seed(5)
    # targets are independent noise: nothing to learn, the validation loss stalls within a few epochs
    train, val = (x, torch.randn(len(x), 1, generator=g)), (x, torch.randn(len(x), 1, generator=g))
    hist = Trainer(model, mse, TrainConfig(epochs=60, lr=0.01, plateau_patience=0, min_lr=2e-3,
                                           progress=False)).fit(train, val)
    assert min(hist.lr) == 2e-3 and hist.lr[0] == 0.01


def test_unknown_schedule_is_refused():
    import pytest

    with pytest.raises(ValueError, match="schedule"):
        Trainer(torch.nn.Linear(3, 1), mse, TrainConfig(epochs=1, schedule="step", progress=False)).fit(_data())


def _curve(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=g) * 4 - 2
    return x, torch.sin(2 * x) + 0.5 * x ** 2


def _mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(1, 32), torch.nn.SiLU(), torch.nn.Linear(32, 32), torch.nn.SiLU(),
                               torch.nn.Linear(32, 1))


def test_lbfgs_fits_a_smooth_curve_far_better_than_adam_in_the_same_passes():
    # 20 L-BFGS steps of up to 25 iterations (<= ~600 gradient evaluations with the line search)
    # against 600 full-batch Adam steps from the same initial weights
    lb = _mlp()
    hist = Trainer(lb, mse, TrainConfig(epochs=20, optimizer="lbfgs", lr=1.0, lbfgs_iterations=25,
                                        progress=False)).fit(_curve(), _curve(64, 1))
    ad = _mlp()
    hist_adam = Trainer(ad, mse, TrainConfig(epochs=600, batch_size=200, lr=1e-2, progress=False)).fit(
        _curve(), _curve(64, 1))
    assert hist.best_val < 1e-4
    assert hist.best_val < 0.1 * hist_adam.best_val
    assert hist.best_val == min(hist.val_loss)


def test_lbfgs_resumes_exactly(tmp_path):
    cfg = dict(optimizer="lbfgs", lr=1.0, lbfgs_iterations=10, progress=False)
    full = _mlp()
    Trainer(full, mse, TrainConfig(epochs=6, **cfg)).fit(_curve(), _curve(64, 1))
    part = _mlp()
    Trainer(part, mse, TrainConfig(epochs=3, **cfg), resume_path=tmp_path / "r.pt").fit(_curve(), _curve(64, 1))
    again = _mlp()
    hist = Trainer(again, mse, TrainConfig(epochs=6, **cfg), resume_path=tmp_path / "r.pt").fit(
        _curve(), _curve(64, 1))
    assert len(hist.val_loss) == 6
    for a, b in zip(full.state_dict().values(), again.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)


def test_lbfgs_refuses_weight_decay_and_unknown_optimizers_are_refused():
    import pytest

    with pytest.raises(ValueError, match="L-BFGS"):
        Trainer(_mlp(), mse, TrainConfig(epochs=1, optimizer="lbfgs", weight_decay=1e-4,
                                         progress=False)).fit(_curve(), None)
    with pytest.raises(ValueError, match="unknown optimizer"):
        Trainer(_mlp(), mse, TrainConfig(epochs=1, optimizer="sgd", progress=False)).fit(_curve(), None)
