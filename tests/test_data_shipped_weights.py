"""Tests of stellarnn.data.shipped_weights: one resolver for the shipped checkpoints, sha256-checked."""
from __future__ import annotations

import hashlib
import json

import pytest

from stellarnn.data.shipped_weights import WEIGHTS_ENV, ShippedWeightsError, shipped_weights, weights_dir


def _group(root, group="astronn", content=b"weights", sha=None):
    folder = root / group
    folder.mkdir(parents=True)
    (folder / "net.pt").write_bytes(content)
    sha = sha or hashlib.sha256(content).hexdigest()
    (folder / "manifest.json").write_text(json.dumps({"models": [{"file": "net.pt", "sha256": sha}]}))
    return folder


def test_the_checkout_ships_every_group():
    for group in ("astronn", "apogeenet", "emulator", "atmospheres", "stokes"):
        path = shipped_weights(group)
        assert path.is_file() and path.suffix == ".pt"
    assert shipped_weights("atmospheres", "innterpol_atlas9_paper.pt").name == "innterpol_atlas9_paper.pt"


def test_environment_variable_comes_first(tmp_path, monkeypatch):
    folder = _group(tmp_path)
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path))
    assert shipped_weights("astronn") == folder / "net.pt"
    assert weights_dir("emulator").parent != tmp_path  # groups it lacks come from the next root


def test_damaged_or_unknown_files_are_refused(tmp_path, monkeypatch):
    _group(tmp_path, sha="0" * 64)
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path))
    with pytest.raises(ShippedWeightsError, match="does not match the sha256"):
        shipped_weights("astronn")
    with pytest.raises(ShippedWeightsError, match="names no file 'other.pt'"):
        shipped_weights("astronn", "other.pt")
    (tmp_path / "astronn" / "net.pt").unlink()
    with pytest.raises(ShippedWeightsError, match="missing"):
        shipped_weights("astronn")
    with pytest.raises(ShippedWeightsError, match="no shipped nosuch weights"):
        shipped_weights("nosuch")
