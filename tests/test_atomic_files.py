"""Tests of stellarnn.atomic_files: atomic replacement, clean-up, and file modes that follow the umask
(also for every writer that goes through it)."""
from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import numpy as np
import pytest

from stellarnn.atomic_files import atomic_write, current_umask, default_file_mode

SRC = Path(__file__).resolve().parents[1] / "src" / "stellarnn"


@contextlib.contextmanager
def umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path) -> int:
    return Path(path).stat().st_mode & 0o777


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_file_mode_follows_the_umask(tmp_path, mask, expected):
    target = tmp_path / "out.bin"
    with umask(mask):
        assert current_umask() == mask and default_file_mode() == expected
        with atomic_write(target) as tmp:
            assert Path(tmp).parent == tmp_path and Path(tmp).name.startswith("out.bin.")
            Path(tmp).write_bytes(b"abc")
    assert target.read_bytes() == b"abc" and mode(target) == expected


def test_replaces_an_existing_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with atomic_write(target) as tmp:
        Path(tmp).write_text("new")
        assert target.read_text() == "old"  # untouched until the writer is done
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]


@pytest.mark.parametrize("error", [ValueError("writer failed"), KeyboardInterrupt()])
def test_a_failing_writer_keeps_the_old_file_and_removes_the_temporary(tmp_path, error):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(type(error)):
        with atomic_write(target) as tmp:
            Path(tmp).write_text("half")
            raise error
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_suffix_and_long_names(tmp_path):
    with atomic_write(tmp_path / "a.npz", suffix=".part.npz") as tmp:
        assert tmp.endswith(".part.npz")
        np.savez(tmp, x=np.arange(3))  # savez keeps a name ending in .npz as it is
    assert np.load(tmp_path / "a.npz")["x"].tolist() == [0, 1, 2]
    long_name = "é" * 120 + ".fits"  # 245 bytes: a legal name, too long with a temporary suffix added
    with atomic_write(tmp_path / long_name) as tmp:
        assert len(os.fsencode(Path(tmp).name)) <= 255
        Path(tmp).write_bytes(b"x")
    assert (tmp_path / long_name).read_bytes() == b"x"


def test_no_other_module_creates_temporary_files_itself():
    offenders = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                 if p.name != "atomic_files.py" and re.search(r"\bmkstemp\b", p.read_text())]
    assert offenders == []


def test_the_data_layer_may_use_it():
    # the module imports nothing from stellarnn (the data layer is the lowest one)
    assert not re.search(r"^\s*(from|import)\s+(stellarnn|\.)", (SRC / "atomic_files.py").read_text(), re.M)


# --- every writer that goes through atomic_write --------------------------------------------------

def _write_apstar(path):
    from stellarnn.spectra.apstar import write_apstar

    write_apstar(path, np.ones((1, 8575)), np.full((1, 8575), 0.01))


def _save_checkpoint(path):
    import test_train_checkpoint
    from stellarnn.train import save_checkpoint

    save_checkpoint(path, test_train_checkpoint.TinyMLP(), "test-mlp", {})


def _attach_noise_model(path):
    from stellarnn.labels.noise_model import NoiseModel, attach_noise_model
    from stellarnn.train import read_checkpoint

    _save_checkpoint(path)
    os.chmod(path, 0o600)
    model = NoiseModel(["teff"], np.array([1.5]), np.array([2.0]), {"n_pairs": np.int64(7)})
    attach_noise_model(path, model)
    assert read_checkpoint(path)["normalisation"]["noise_model"]["diagnostics"]["n_pairs"] == 7


def _fetch_copy(path):
    from stellarnn.data.fetch import _atomic_write

    _atomic_write(path, io.BytesIO(b"cached file"))
    assert path.read_bytes() == b"cached file"


def _grid_pending_file(path):
    from stellarnn.synthesis.grid_builder import _atomic_savez

    _atomic_savez(path, index=3, labels=np.zeros(2))
    assert int(np.load(path)["index"]) == 3


@pytest.mark.parametrize("writer", [_write_apstar, _save_checkpoint, _attach_noise_model, _fetch_copy,
                                    _grid_pending_file])
@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600)])
def test_every_writer_honours_the_umask(tmp_path, writer, mask, expected):
    path = tmp_path / "file.npz"
    with umask(mask):
        writer(path)
    assert mode(path) == expected and [p.name for p in tmp_path.iterdir()] == ["file.npz"]


def test_grid_chunks_honour_the_umask(tmp_path):
    h5py = pytest.importorskip("h5py")
    from stellarnn.synthesis.grid_builder import _chunk_path, pack_chunks

    class Spec:  # the fields pack_chunks reads
        n, chunk_size, label_names = 2, 2, ("teff", "logg")

    (tmp_path / "pending").mkdir()
    (tmp_path / "chunks").mkdir()
    for i in range(2):
        np.savez(tmp_path / "pending" / f"{i:06d}.npz", index=i, labels=np.zeros(2), flux=np.ones(5),
                 continuum=np.ones(2), continuum_median=1.0, status="ok", reason="", seconds=1.0)
    with umask(0o027):
        written = pack_chunks(tmp_path, Spec())
    assert written == [_chunk_path(tmp_path, 0)] and mode(written[0]) == 0o640
    with h5py.File(written[0]) as h:
        assert h["index"][:].tolist() == [0, 1]
