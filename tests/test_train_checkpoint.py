import pytest
import torch

from stellarnn.train import CheckpointError, load_checkpoint, read_checkpoint, register_model, save_checkpoint


@register_model("test-mlp")
class TinyMLP(torch.nn.Module):
    def __init__(self, n_in=3, n_hidden=8, n_out=2):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(n_in, n_hidden), torch.nn.ReLU(), torch.nn.Linear(n_hidden, n_out))

    def forward(self, x):
        return self.net(x)


def test_round_trip_strict(tmp_path):
    m = TinyMLP(n_hidden=5)
    path = save_checkpoint(tmp_path / "m.pt", m, "test-mlp", {"n_in": 3, "n_hidden": 5, "n_out": 2},
                           normalisation={"mean": torch.arange(3.0)}, metrics={"rms": 0.1})
    m2, payload = load_checkpoint(path, expected_kind="test-mlp")
    x = torch.randn(4, 3)
    torch.testing.assert_close(m(x), m2(x))
    assert payload["metrics"]["rms"] == 0.1 and torch.equal(payload["normalisation"]["mean"], torch.arange(3.0))
    assert "created" in payload["provenance"]


def test_half_precision_storage(tmp_path):
    m = TinyMLP()
    path = save_checkpoint(tmp_path / "h.pt", m, "test-mlp", {}, half=True)
    assert read_checkpoint(path)["state_dict"]["net.0.weight"].dtype == torch.float16
    m2, _ = load_checkpoint(path)
    assert m2.net[0].weight.dtype == torch.float32
    torch.testing.assert_close(m2.net[0].weight, m.net[0].weight, atol=1e-3, rtol=1e-3)


def test_mismatched_architecture_fails_strictly(tmp_path):
    m = TinyMLP(n_hidden=5)
    path = save_checkpoint(tmp_path / "m.pt", m, "test-mlp", {"n_hidden": 6})  # wrong hyper-parameters
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(path)


def test_wrong_kind_and_corrupt_file(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", TinyMLP(), "test-mlp", {})
    with pytest.raises(CheckpointError, match="expected 'other'"):
        load_checkpoint(path, expected_kind="other")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(bad)
    torch.save({"a": 1}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a stellarnn checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not registered"):
        save_checkpoint(tmp_path / "x.pt", TinyMLP(), "unregistered-kind", {})


def test_warm_start_copies_weights_and_refuses_other_widths(tmp_path):
    from stellarnn.train import warm_start

    src = TinyMLP(n_hidden=5)
    path = save_checkpoint(tmp_path / "m.pt", src, "test-mlp", {"n_in": 3, "n_hidden": 5, "n_out": 2})
    dst = TinyMLP(n_hidden=5)
    info = warm_start(dst, path, "test-mlp")
    x = torch.randn(4, 3)
    torch.testing.assert_close(dst(x), src(x))
    assert info["init_from"] == str(path) and len(info["init_sha256"]) == 64
    with pytest.raises(CheckpointError, match="do not fit"):
        warm_start(TinyMLP(n_hidden=7), path, "test-mlp")
    with pytest.raises(CheckpointError, match="expected"):
        warm_start(TinyMLP(n_hidden=5), path, "astronn")


def test_crafted_checkpoint_runs_nothing_and_is_a_one_line_error(tmp_path):
    import os

    class RunsCode:
        def __reduce__(self):
            return (os.mkdir, (str(tmp_path / "marker"),))

    bad = tmp_path / "bad.pt"
    torch.save({"format": "stellarnn-checkpoint", "kind": "test-mlp", "hyperparameters": {}, "x": RunsCode()}, bad)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(bad)
    assert not (tmp_path / "marker").exists()
    assert "\n" not in str(err.value) and "posix.mkdir" in str(err.value)


def test_numpy_values_are_stored_as_weights_only_types(tmp_path):
    import numpy as np

    path = save_checkpoint(tmp_path / "m.pt", TinyMLP(), "test-mlp", {"n_hidden": np.int64(8)},
                           normalisation={"mean": np.arange(3.0)}, metrics={"rms": np.float32(0.5)},
                           provenance={"n": np.int64(4)})
    m, payload = load_checkpoint(path)  # weights_only=True: raises if a numpy object was pickled
    assert payload["metrics"]["rms"] == 0.5 and type(payload["metrics"]["rms"]) is float
    assert payload["hyperparameters"]["n_hidden"] == 8 and payload["provenance"]["n"] == 4
    assert torch.equal(payload["normalisation"]["mean"], torch.arange(3.0, dtype=torch.float64))


def test_checkpoint_mode_follows_the_umask(tmp_path):
    import os

    for mask, expected in ((0o022, 0o644), (0o077, 0o600)):
        old = os.umask(mask)
        try:
            path = save_checkpoint(tmp_path / f"m{mask:o}.pt", TinyMLP(), "test-mlp", {})
        finally:
            os.umask(old)
        assert path.stat().st_mode & 0o777 == expected
