"""Tests of stellarnn.synthesis.grid_builder: grid specifications and loading several grids as one."""
from __future__ import annotations

import json

import numpy as np
import pytest

from stellarnn.synthesis.grid_builder import GridSpec, load_grid
from test_runner_inputs import write_test_grid


def _with_spec(folder, **changes):
    spec = {**GridSpec(name=folder.name, n=5, seed=1).to_json(), **changes}
    (folder / "spec.json").write_text(json.dumps({"spec": spec}))


def test_several_grids_load_as_one(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    flux_a = write_test_grid(a, seed=1)
    flux_b = write_test_grid(b, seed=2)
    _with_spec(a)
    _with_spec(b, seed=7, name="other")  # seed, name and size may differ
    both = load_grid([a, b])
    one_a, one_b = load_grid(a), load_grid(b)
    assert len(both["index"]) == len(one_a["index"]) + len(one_b["index"]) == 8  # one failed spectrum per grid
    np.testing.assert_array_equal(both["grid"], [0] * 4 + [1] * 4)
    np.testing.assert_array_equal(both["index"], np.r_[one_a["index"], one_b["index"]])
    np.testing.assert_array_equal(both["flux"][:4], flux_a[[0, 2, 3, 4]].astype(np.float32))
    np.testing.assert_array_equal(both["flux"][4:], flux_b[[0, 2, 3, 4]].astype(np.float32))
    assert both["label_names"] == one_a["label_names"]
    assert load_grid([a])["flux"].shape == one_a["flux"].shape  # a one-element list is that grid


def test_grids_of_other_physics_are_not_concatenated(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_test_grid(a, seed=1)
    write_test_grid(b, seed=2)
    _with_spec(a)
    _with_spec(b, hydrogen_lines=True)
    with pytest.raises(ValueError, match="hydrogen_lines"):
        load_grid([a, b])
    old = json.loads((a / "spec.json").read_text())
    del old["spec"]["hydrogen_lines"]  # a spec written before the field existed means no H I lines
    (a / "spec.json").write_text(json.dumps(old))
    _with_spec(b, hydrogen_lines=False)
    assert len(load_grid([a, b])["index"]) == 8
    with pytest.raises(ValueError, match="at least one"):
        load_grid([])
    (b / "spec.json").unlink()
    with pytest.raises(FileNotFoundError, match="spec.json"):
        load_grid([a, b])


def test_specs_written_before_the_hydrogen_field_mean_no_hydrogen_lines():
    old = GridSpec(name="apogee-1", n=2000, seed=1).to_json()
    del old["hydrogen_lines"]
    assert GridSpec.from_json(old).hydrogen_lines is False
    assert GridSpec.from_json({**old, "hydrogen_lines": True}).hydrogen_lines is True


def test_committed_grids_share_one_specification():
    """train and train2 concatenate (the emulator is trained on both); the held-out test grid matches them."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "grids" / "apogee"
    specs = []
    for name in ("train", "train2", "test", "calib"):
        spec = json.loads((root / name / "spec.json").read_text())["spec"]
        specs.append({k: v for k, v in spec.items() if k not in ("name", "n", "seed")})
        assert GridSpec.from_json(spec).hydrogen_lines is False
    assert all(s == specs[0] for s in specs)
