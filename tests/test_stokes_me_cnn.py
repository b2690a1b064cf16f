import math

import numpy as np
import pytest
import torch

from stellarnn.stokes.me_cnn import (MECNN, MEInverter, PRIOR, TARGET_NAMES, build_training_set, gaussian_nll,
                                     parameters_to_targets, sample_parameters, train_me_cnn)
from stellarnn.stokes.milne_eddington import PARAMETER_NAMES
from stellarnn.train import CheckpointError, load_checkpoint


def test_prior_sampling_and_targets():
    p = sample_parameters(5000, torch.Generator().manual_seed(0))
    for k, name in enumerate(PARAMETER_NAMES):
        lo, hi = PRIOR[name]
        assert float(p[:, k].min()) >= lo and float(p[:, k].max()) <= hi
    # η0 log-uniform: median near the geometric mean
    assert float(p[:, 5].median()) == pytest.approx(math.sqrt(PRIOR["eta0"][0] * PRIOR["eta0"][1]), rel=0.1)
    t = parameters_to_targets(p)
    assert t.shape == (5000, len(TARGET_NAMES))
    q = p.clone()
    q[:, 2] += 180.0  # the azimuth targets are invariant under χ → χ + 180°
    assert torch.allclose(parameters_to_targets(q), t, atol=1e-9)
    assert torch.allclose(t[:, 2] ** 2 + t[:, 3] ** 2, torch.ones(5000, dtype=t.dtype))


def test_gaussian_nll_value():
    out = torch.tensor([[1.0, math.log(4.0)]])
    y = torch.tensor([[3.0]])
    assert float(gaussian_nll(out, y)) == pytest.approx(0.5 * (4.0 / 4.0 + math.log(4.0)))


def test_model_shapes():
    m = MECNN(channels=8, hidden=16)
    assert m(torch.zeros(3, 4, 112)).shape == (3, 20)


def test_training_set_is_resumable(tmp_path):
    a = build_training_set(tmp_path, 300, seed=3, chunk_size=200, progress=False)
    files = sorted(tmp_path.glob("*.pt"))
    assert len(files) == 2
    b = build_training_set(tmp_path, 300, seed=3, chunk_size=200, progress=False)
    assert torch.equal(a.stokes, b.stokes) and a.stokes.shape == (300, 4, 112)
    assert torch.isfinite(a.stokes).all()
    with pytest.raises(ValueError):
        build_training_set(tmp_path, 0)


def test_train_save_load_and_invert(tmp_path):
    ckpt = tmp_path / "me.pt"
    metrics = train_me_cnn(ckpt, tmp_path / "data", n_train=600, n_val=200, epochs=2, batch_size=128,
                           channels=8, hidden=32, resume_path=tmp_path / "resume.pt", progress=False,
                           chunk_size=500)
    assert metrics["epochs_run"] == 2 and set(metrics["val_rmse"]) == set(TARGET_NAMES)
    model, payload = load_checkpoint(ckpt, expected_kind="stokes_me_cnn")
    assert payload["state_dict"]["head.1.weight"].dtype == torch.float16
    with pytest.raises(CheckpointError):
        load_checkpoint(ckpt, expected_kind="something_else")
    inv = MEInverter(ckpt)
    stokes = build_training_set(tmp_path / "data", 300, seed=1, chunk_size=500, progress=False).stokes[:7]
    res = inv.invert(stokes)
    assert res["B"].shape == (7,) and np.all(res["B"] >= 0)
    assert np.all((res["chi"] >= 0) & (res["chi"] < 180)) and np.all(res["e_B"] > 0)
    assert np.all(res["e_chi"] <= 90)
    with pytest.raises(ValueError, match="shape"):
        inv.invert(torch.zeros(2, 4, 50))
    with pytest.raises(ValueError, match="no Stokes"):
        inv.invert(torch.zeros(0, 4, 112))
    bad = stokes.clone()
    bad[0, 1, 5] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        inv.invert(bad)


def test_shipped_weights_match_manifest_and_invert_accurately():
    import json
    from pathlib import Path

    from stellarnn.stokes.milne_eddington import MilneEddington, add_noise
    from stellarnn.train import file_sha256

    root = Path(__file__).resolve().parents[1] / "weights" / "stokes"
    entry = next(e for e in json.loads((root / "manifest.json").read_text())["models"] if e["name"] == "me_cnn")
    assert file_sha256(root / entry["file"]) == entry["sha256"]
    inv = MEInverter(root / entry["file"])
    gen = torch.Generator().manual_seed(31337)
    truth = sample_parameters(300, gen)
    obs = add_noise(MilneEddington(faddeeva_terms=16)(truth), 1e-3, gen)
    res = inv.invert(obs.float())
    assert np.median(np.abs(res["B"] - truth[:, 0].numpy())) < 15.0        # G
    assert np.median(np.abs(res["gamma"] - truth[:, 1].numpy())) < 1.5     # deg
    assert np.median(np.abs(res["v_los"] - truth[:, 3].numpy())) < 0.03    # km/s
    # predicted 1σ brackets roughly 68 % of the B errors
    assert 0.5 < np.mean(np.abs(res["B"] - truth[:, 0].numpy()) < res["e_B"]) < 0.85


def test_unreadable_cached_chunk_is_a_clear_error(tmp_path):
    import os

    class RunsCode:
        def __reduce__(self):
            return (os.mkdir, (str(tmp_path / "marker"),))

    torch.save({"params": RunsCode(), "stokes": torch.zeros(1)}, tmp_path / "me_seed0_chunk00000_n10.pt")
    with pytest.raises(ValueError, match="delete it") as err:
        build_training_set(tmp_path, 10, chunk_size=10, progress=False)
    assert not (tmp_path / "marker").exists() and "posix.mkdir" in str(err.value)
    (tmp_path / "me_seed0_chunk00000_n10.pt").write_bytes(b"truncated")
    with pytest.raises(ValueError, match="unreadable"):
        build_training_set(tmp_path, 10, chunk_size=10, progress=False)
