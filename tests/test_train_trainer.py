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
