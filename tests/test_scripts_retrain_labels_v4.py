"""scripts/retrain_labels_v4.sh refuses to start while the grids are incomplete (and creates no state)."""
import json
import os
import subprocess
from pathlib import Path

import pytest

from stellarnn.synthesis.grid_builder import LABEL_NAMES
from test_labels_cli import write_toy_grid

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "retrain_labels_v4.sh"


def _grid(folder, n_wanted, n_done):
    write_toy_grid(folder, [[4500.0, 2.5, 0.0, 1.2] + [0.0] * (len(LABEL_NAMES) - 4)] * n_done)
    (folder / "spec.json").write_text(json.dumps({"spec": {"n": n_wanted}, "label_names": list(LABEL_NAMES)}))


def _run(tmp_path, **env):
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "RETRAIN_GRIDS": str(tmp_path / "grids"),
                               "RETRAIN_STATE": str(tmp_path / "state"), **env})


@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "stellarnn").exists(), reason="needs the project venv")
def test_refuses_incomplete_or_missing_grids(tmp_path):
    _grid(tmp_path / "grids" / "test", 3, 3)
    _grid(tmp_path / "grids" / "calib", 4, 2)  # 2 of 4 spectra
    r = _run(tmp_path)
    assert r.returncode == 1 and "calib is incomplete (2 of 4 spectra" in r.stderr
    assert not (tmp_path / "state").exists()
    _grid(tmp_path / "grids" / "calib2", 1, 1)
    (tmp_path / "grids" / "calib").rename(tmp_path / "grids" / "calib_old")
    (tmp_path / "grids" / "calib2").rename(tmp_path / "grids" / "calib")
    r = _run(tmp_path)  # test and calib complete, train missing
    assert r.returncode == 1 and "train has no spec.json" in r.stderr
    r = _run(tmp_path, APOGEENET_SIZE="huge")
    assert r.returncode == 1 and "APOGEENET_SIZE must be small, medium or full" in r.stderr
