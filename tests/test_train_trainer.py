import math
import os

import numpy as np
import pytest
import torch

from stellarnn.train import ResumeStateError, TrainConfig, Trainer, read_resume_state, save_checkpoint


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


def test_history_says_why_the_fit_stopped():
    # scripts/retrain_labels_v4.sh continues only trainings stopped by the wall-time limit
    def fit(**kw):
        torch.manual_seed(0)
        return Trainer(torch.nn.Linear(3, 1), mse, TrainConfig(batch_size=32, lr=0.05, progress=False, **kw)).fit(
            _data(), _data(64, 1))

    assert fit(epochs=3).stopped_by == "epochs"
    hist = fit(epochs=500, early_stop_patience=1)
    assert hist.stopped_by == "early_stop" and len(hist.val_loss) < 500
    assert fit(epochs=500, max_seconds=0.0).stopped_by == "max_seconds"


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


def test_val_metric_scores_the_whole_validation_set_at_once():
    import torch

    from stellarnn.train import TrainConfig, Trainer

    torch.manual_seed(0)
    x = torch.randn(50, 3)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
    model = torch.nn.Linear(3, 1)
    calls = []

    def loss_fn(m, b):
        return ((m(b[0]) - b[1]) ** 2).mean()

    def median_abs(m, batches):  # not a mean over batches: needs every residual at once
        assert not m.training and not torch.is_grad_enabled()
        res = torch.cat([(m(xb) - yb).abs() for xb, yb in batches])
        calls.append(len(res))
        return float(res.median())

    hist = Trainer(model, loss_fn, TrainConfig(epochs=3, batch_size=16, lr=1e-2, progress=False),
                   val_metric=median_abs).fit((x, y), (x[:40], y[:40]))
    assert calls == [40, 40, 40]  # one call per epoch, all 40 validation rows over three batches of 16
    with torch.no_grad():
        final = float((model(x[:40]) - y[:40]).abs().median())
    assert hist.val_loss[hist.best_epoch] == pytest.approx(final) == hist.best_val
    with pytest.raises(ValueError, match="not both"):
        Trainer(model, loss_fn, val_fn=loss_fn, val_metric=median_abs)


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


# --- resume files: loaded with weights_only=True, never anything else --------------------------------


class _RunsCodeWhenUnpickled:
    """Pickles as a call of ``os.mkdir(marker)``: loading it with full unpickling creates ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def craft_malicious_resume_file(path, marker):
    """A resume file laid out like the trainer's whose model entry runs code when fully unpickled."""
    torch.save({"format": "stellarnn-trainer-state", "epoch": 0, "model": _RunsCodeWhenUnpickled(marker),
                "optimizer": {}, "scheduler": None, "history": {}, "best_state": None,
                "generator": torch.Generator().get_state()}, path)
    return path


def test_crafted_resume_file_runs_nothing_and_is_a_clear_error(tmp_path):
    marker = tmp_path / "marker"
    bad = craft_malicious_resume_file(tmp_path / "r.pt", marker)
    torch.load(bad, weights_only=False)  # the file is dangerous: full unpickling runs its code ...
    assert marker.is_dir()
    marker.rmdir()
    with pytest.raises(ResumeStateError) as err:  # ... the trainer never unpickles it
        Trainer(torch.nn.Linear(3, 1), mse, TrainConfig(epochs=2, progress=False), resume_path=bad).fit(_data())
    assert not marker.exists()
    msg = str(err.value)
    assert "\n" not in msg and "delete it" in msg and str(bad) in msg and "mkdir" in msg
    assert isinstance(err.value, RuntimeError)  # the CLI's one-line error path


def test_unusable_resume_files_are_clear_errors(tmp_path):
    cfg = TrainConfig(epochs=2, progress=False)
    truncated = tmp_path / "t.pt"
    Trainer(torch.nn.Linear(3, 1), mse, cfg, resume_path=truncated).fit(_data())
    truncated.write_bytes(truncated.read_bytes()[:100])
    text = tmp_path / "x.pt"
    text.write_text("not a resume file")
    plain = tmp_path / "p.pt"
    torch.save({"a": torch.zeros(2)}, plain)  # loads under weights_only but is no trainer state
    for path, match in ((truncated, "not a readable"), (text, "not a readable"), (plain, "lacks epoch")):
        with pytest.raises(ResumeStateError, match=match):
            Trainer(torch.nn.Linear(3, 1), mse, cfg, resume_path=path).fit(_data())
    # a model checkpoint given as a resume file, and a resume file of another network
    ckpt = tmp_path / "model.pt"
    import test_train_checkpoint  # noqa: F401  (registers the "test-mlp" kind)

    save_checkpoint(ckpt, test_train_checkpoint.TinyMLP(), "test-mlp", {})
    with pytest.raises(ResumeStateError, match="not a stellarnn trainer state"):
        Trainer(torch.nn.Linear(3, 1), mse, cfg, resume_path=ckpt).fit(_data())
    other = tmp_path / "o.pt"
    Trainer(torch.nn.Linear(3, 1), mse, cfg, resume_path=other).fit(_data())
    with pytest.raises(ResumeStateError, match="does not fit this training"):
        Trainer(torch.nn.Linear(3, 2), mse, TrainConfig(epochs=3, progress=False), resume_path=other).fit(_data())


def test_resume_file_holds_only_weights_only_types(tmp_path):
    path = tmp_path / "r.pt"
    for kw in (dict(plateau_patience=1), dict(schedule="cosine"),
               dict(optimizer="lbfgs", lr=1.0, lbfgs_iterations=3)):
        Trainer(torch.nn.Linear(3, 1), mse, TrainConfig(epochs=2, progress=False, **kw), resume_path=path).fit(
            _data(), _data(64, 1))
        state = torch.load(path, weights_only=True)  # raises if anything else was pickled
        assert state["format"] == "stellarnn-trainer-state" and state["epoch"] == 1
        assert state["generator"].dtype == torch.uint8 and state["torch_rng"].dtype == torch.uint8
        assert read_resume_state(path)["epoch"] == 1
        path.unlink()


def test_resume_of_a_dropout_network_equals_the_uninterrupted_run(tmp_path):
    # dropout draws from the global torch RNG: the resume file keeps its state too
    def net():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.ReLU(), torch.nn.Dropout(0.3),
                                   torch.nn.Linear(16, 1))

    cfg = dict(batch_size=32, lr=0.01, progress=False)
    full = net()
    h_full = Trainer(full, mse, TrainConfig(epochs=6, **cfg)).fit(_data(), _data(64, 1))
    part = net()
    Trainer(part, mse, TrainConfig(epochs=3, **cfg), resume_path=tmp_path / "r.pt").fit(_data(), _data(64, 1))
    torch.manual_seed(99)  # another process state in between
    torch.rand(17)
    again = net()
    torch.manual_seed(7)
    h_again = Trainer(again, mse, TrainConfig(epochs=6, **cfg), resume_path=tmp_path / "r.pt").fit(
        _data(), _data(64, 1))
    assert h_again.train_loss == h_full.train_loss
    for a, b in zip(full.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


def test_resume_file_mode_follows_the_umask(tmp_path):
    for umask, expected in ((0o022, 0o644), (0o077, 0o600)):
        old = os.umask(umask)
        try:
            path = tmp_path / f"r{umask:o}.pt"
            Trainer(torch.nn.Linear(3, 1), mse, TrainConfig(epochs=1, progress=False), resume_path=path).fit(_data())
        finally:
            os.umask(old)
        assert path.stat().st_mode & 0o777 == expected


def _resume_commands(tmp_path):
    """Every command line with ``--resume`` (the trainer backs them all), on tiny inputs: {name: argv
    without the resume option}."""
    import numpy as np

    from stellarnn.stokes.lightweaver_driver import LOG_TAU_NODES
    from stellarnn.synthesis.grid_builder import LABEL_NAMES
    from test_labels_cli import write_toy_grid

    rng = np.random.default_rng(1)
    write_toy_grid(tmp_path / "grid", [[rng.uniform(4000, 6000), rng.uniform(1, 4), rng.uniform(-1, 0), 1.2]
                                       + [0.0] * (len(LABEL_NAMES) - 4) for _ in range(8)])
    wl = np.arange(8000.0, 8008.0, 0.01)
    np.savez(tmp_path / "src.npz", wavelength=wl, flux=1 - 0.3 * np.exp(-0.5 * ((wl - 8004) / 0.05) ** 2))
    # stand-in ME-CNN training-set chunks (the names the builder looks for; it reuses them and keeps
    # the first n rows), so that `stokes train` does not synthesise 2 x 20000 profiles
    from stellarnn.stokes.me_cnn import sample_parameters
    from stellarnn.stokes.milne_eddington import MilneEddington

    (tmp_path / "me").mkdir()
    for seed in (0, 1):
        params = sample_parameters(40, torch.Generator().manual_seed(seed))
        with torch.no_grad():
            torch.save({"params": params, "stokes": MilneEddington()(params).float()},
                       tmp_path / "me" / f"me_seed{seed}_chunk00000_n20000.pt")
    chunks = tmp_path / "lw"
    chunks.mkdir()
    np.savez(chunks / "lw_seed0_chunk00000_n20.npz", stokes=rng.normal(size=(20, 4, 112)).astype(np.float32),
             targets=rng.normal(size=(20, 6, LOG_TAU_NODES.size)).astype(np.float32), log_tau_nodes=LOG_TAU_NODES)
    out = str(tmp_path / "out.pt")
    small = ["--epochs", "1", "-o", out, "-q"]
    return {
        "atmosphere train": ["atmosphere", "train", "--components", "4", "--hidden", "8", "--layers", "1", *small],
        "train astronn": ["train", "astronn", "--grid", str(tmp_path / "grid"), "--batch-size", "4", *small],
        "train apogeenet": ["train", "apogeenet", "--grid", str(tmp_path / "grid"), "--batch-size", "4", *small],
        "emulator train": ["emulator", "train", "--grid", str(tmp_path / "grid"), "--hidden", "8",
                           "--continuum-epochs", "1", "--threads", "1", *small],
        "blase clone": ["blase", "clone", str(tmp_path / "src.npz"), "--out", out, "--no-normalise", "--epochs", "1",
                        "-q"],
        "stokes train": ["stokes", "train", "--data-dir", str(tmp_path / "me"), "--n-train", "32", "--n-val", "8",
                         "--epochs", "1", "--out", out],
        "stokes train --stratified": ["stokes", "train", "--stratified", str(chunks), "--epochs", "1",
                                      "--batch-size", "8", "--out", out],
    }


def test_crafted_resume_file_runs_nothing_through_any_resume_option(tmp_path, capsys):
    from stellarnn.cli import main

    commands = _resume_commands(tmp_path)
    # every --resume option of the command line is covered here
    import re
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src" / "stellarnn"
    n_options = sum(len(re.findall(r'add_argument\("--resume"', p.read_text())) for p in src.rglob("*.py"))
    # train astronn/apogeenet share one add_argument (a loop), stokes train is one option with two trainers
    assert n_options == len(commands) - 2, "a --resume option is missing from this test"
    marker = tmp_path / "marker"
    for name, argv in commands.items():
        bad = craft_malicious_resume_file(tmp_path / f"{name.replace(' ', '_')}.resume", marker)
        assert main([*argv, "--resume", str(bad)]) == 1, name
        err = capsys.readouterr().err.strip()
        assert not marker.exists(), f"{name} ran the crafted file's code"
        last = err.splitlines()[-1]  # (after any progress bar)
        assert "Traceback" not in err and "delete it" in last and "posix.mkdir" in last, (name, err)
    # the L-BFGS polish of `atmosphere train` keeps its own resume file next to --resume
    bad = tmp_path / "polish.resume"
    craft_malicious_resume_file(Path(str(bad) + ".lbfgs"), marker)
    argv = commands["atmosphere train"]
    argv[argv.index("--epochs") + 1] = "0"
    assert main([*argv, "--polish-epochs", "1", "--polish-iterations", "2", "--resume", str(bad)]) == 1
    assert not marker.exists() and "delete it" in capsys.readouterr().err


def test_resume_file_of_the_earlier_layout_still_resumes(tmp_path):
    # files written before the format tag and the global RNG state were added
    cfg = dict(batch_size=32, lr=0.05, progress=False)
    torch.manual_seed(0)
    full = torch.nn.Linear(3, 1)
    Trainer(full, mse, TrainConfig(epochs=5, **cfg)).fit(_data(), _data(64, 1))
    torch.manual_seed(0)
    Trainer(torch.nn.Linear(3, 1), mse, TrainConfig(epochs=2, **cfg), resume_path=tmp_path / "r.pt").fit(
        _data(), _data(64, 1))
    state = torch.load(tmp_path / "r.pt", weights_only=True)
    for key in ("format", "torch_rng", "cuda_rng"):
        del state[key]
    torch.save(state, tmp_path / "r.pt")
    resumed = torch.nn.Linear(3, 1)
    hist = Trainer(resumed, mse, TrainConfig(epochs=5, **cfg), resume_path=tmp_path / "r.pt").fit(
        _data(), _data(64, 1))
    assert len(hist.val_loss) == 5
    torch.testing.assert_close(resumed.weight, full.weight)
