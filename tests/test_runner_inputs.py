"""Tests of stellarnn.runner.inputs: globs, list files, synthetic grid folders, unreadable files."""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from stellarnn.runner.inputs import read_items, resolve_inputs, scan_grid
from stellarnn.synthesis.grid_builder import load_grid
from test_runner_task import write_test_apstars


def write_test_grid(folder: Path, n_chunk: int = 4, pending=(4,), failed=(1,), name: str = "tiny",
                    seed: int = 3) -> np.ndarray:
    """A grid folder in the grid_builder layout (one chunk + pending records); returns the float16 fluxes."""
    rng = np.random.default_rng(seed)
    n = n_chunk + len(pending)
    flux = (1.0 - 0.2 * rng.random((n, 8575))).astype(np.float16)
    (folder / "chunks").mkdir(parents=True)
    (folder / "pending").mkdir()
    (folder / "spec.json").write_text(json.dumps({"spec": {"name": name, "n": n}}))
    status = np.array([b"failed" if i in failed else b"ok" for i in range(n_chunk)], dtype="S8")
    with h5py.File(folder / "chunks" / "chunk_0000.h5", "w") as h:
        h["index"] = np.arange(n_chunk)
        h["labels"] = rng.random((n_chunk, 21))  # the 21 labels of the first grids
        h["flux"] = flux[:n_chunk]
        h["continuum"] = np.ones((n_chunk, 858), np.float16)
        h["continuum_median"] = np.ones(n_chunk, np.float32)
        h["status"] = status
    for k, i in enumerate(pending):
        np.savez(folder / "pending" / f"{i:06d}.npz", index=i, labels=rng.random(21), flux=flux[n_chunk + k],
                 continuum=np.ones(858, np.float16), continuum_median=np.float32(1), status="ok", reason="",
                 seconds=1.0)
    return flux


def test_globs_list_files_and_dedup(tmp_path):
    paths = write_test_apstars(tmp_path, [1.0, 1.1, 1.2])
    listing = tmp_path / "sub" / "inputs.txt"
    listing.parent.mkdir()
    listing.write_text(f"# my spectra\n../apStar-test-0001.fits\n{paths[2]}  # absolute\n\nmissing.fits\n")
    items = resolve_inputs([str(tmp_path / "apStar-test-000[01].fits"), str(listing)])
    keys = [it.key for it in items]
    assert keys == [str(paths[0]), str(paths[1]), str(paths[2]), str(listing.parent / "missing.fits")]
    assert all(it.kind == "apstar" for it in items)


def test_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="no inputs"):
        resolve_inputs([])
    with pytest.raises(ValueError, match="no file matches"):
        resolve_inputs([str(tmp_path / "*.fits")])
    with pytest.raises(ValueError, match="does not exist"):
        resolve_inputs([str(tmp_path / "apStar-nothing.fits")])
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    with pytest.raises(ValueError, match="names no input"):
        resolve_inputs([str(tmp_path / "empty.txt")])
    (tmp_path / "folder").mkdir()
    with pytest.raises(ValueError, match="not a synthetic grid folder"):
        resolve_inputs([str(tmp_path / "folder")])
    with pytest.raises(ValueError, match="grid_snr"):
        read_items([], grid_snr=0)


def test_unreadable_files_become_rows(tmp_path):
    (good,) = write_test_apstars(tmp_path, [1.0], nvisits=[2])
    truncated = tmp_path / "apStar-trunc.fits"
    truncated.write_bytes(good.read_bytes()[:20000])
    listing = tmp_path / "l.txt"
    listing.write_text(f"{good}\n{truncated}\ngone.fits\n")
    res = read_items(resolve_inputs([listing]), include_visits=True)
    assert [i["row"] for i in res.identities] == [0, 2, 3] and len(res.spectra) == 3
    assert [f["kind"] for f in res.failures] == ["unreadable", "unreadable"]
    assert "does not exist" in res.failures[1]["reason"] and res.failures[1]["spectrum_id"].endswith("gone.fits:-1")
    assert res.failures[0]["reason"].startswith("SpectrumFileError")
    combined_only = read_items(resolve_inputs([good]))
    assert [i["kind"] for i in combined_only.identities] == ["combined"]


def test_grid_folder_matches_load_grid(tmp_path):
    grid = tmp_path / "grid"
    write_test_grid(grid)
    items = resolve_inputs([grid])
    assert [it.index for it in items] == [0, 2, 3, 4]  # index 1 failed: not an input
    assert items[0].key == f"grid:{grid}#0" and items[-1].store.endswith("000004.npz")
    assert scan_grid(grid) == items
    res = read_items(items[::-1], grid_snr=50.0)
    got = {i["row"]: s.flux for i, s in zip(res.identities, res.spectra)}
    ref = load_grid(grid)
    for idx, flux in zip(ref["index"], ref["flux"]):
        np.testing.assert_array_equal(got[int(idx)], flux.astype(np.float64))
    s = res.spectra[0]
    assert np.all(s.ivar == 2500.0) and s.meta["kind"] == "synthetic"
    assert res.identities[0]["object_id"].startswith("tiny-") and not res.failures


def test_grid_chunk_unreadable(tmp_path):
    grid = tmp_path / "grid"
    write_test_grid(grid, pending=())
    items = resolve_inputs([grid])
    (grid / "chunks" / "chunk_0000.h5").write_bytes(b"damaged")
    res = read_items(items)
    assert not res.spectra and len(res.failures) == len(items)
    assert all(f["kind"] == "unreadable" and f["row"] == -1 for f in res.failures)


def test_only_explicit_list_files_are_read_as_lists(tmp_path):
    """A text file that is not a list of paths never turns into rows (issue 20, item 9)."""
    paths = write_test_apstars(tmp_path, [1.0, 1.1])
    notes = tmp_path / "notes.md"
    notes.write_text("Observing notes\nseeing was poor\nrerun tomorrow\nthe end\n")
    with pytest.raises(ValueError, match="neither an apStar file .* nor a list file"):
        resolve_inputs([notes])
    prose = tmp_path / "notes.txt"  # a list suffix, but lines that are not paths
    prose.write_text("Observing notes\nseeing was poor\n")
    with pytest.raises(ValueError, match=r"notes.txt:1: 'Observing notes' is not an apStar path"):
        resolve_inputs([prose])
    spectrum_csv = tmp_path / "spectrum.csv"
    spectrum_csv.write_text("wavelength,flux\n15000,1.0\n15001,0.9\n")
    with pytest.raises(ValueError, match="neither an apStar file"):
        resolve_inputs([spectrum_csv])
    listing = tmp_path / "my_inputs"  # any name with @
    listing.write_text(f"{paths[0]}\napStar-test-0001.fits\n")
    assert [it.key for it in resolve_inputs([f"@{listing}"])] == [str(p) for p in paths]
    with pytest.raises(ValueError, match="list file .* does not exist"):
        resolve_inputs([f"@{tmp_path / 'nothing.lst'}"])
    (tmp_path / "in.lst").write_text("apStar-test-0000.fits\n")
    assert [it.key for it in resolve_inputs([tmp_path / "in.lst"])] == [str(paths[0])]


def test_folder_named_like_an_apstar_file_is_not_skipped(tmp_path):
    (good,) = write_test_apstars(tmp_path, [1.0])
    folder = tmp_path / "apStar-folder.fits"
    folder.mkdir()
    with pytest.raises(ValueError, match="is a folder, named like an apStar file, and not a synthetic grid"):
        resolve_inputs([folder])
    items = resolve_inputs([str(tmp_path / "apStar-*.fits")])
    assert [it.key for it in items] == [str(folder), str(good)]
    res = read_items(items)
    assert len(res.spectra) == 1 and len(res.failures) == 1
    assert res.failures[0]["item"] == str(folder) and "is a folder, not an apStar file" in res.failures[0]["reason"]
    listing = tmp_path / "l.txt"
    listing.write_text("apStar-folder.fits\n")
    assert "is a folder" in read_items(resolve_inputs([listing])).failures[0]["reason"]


def test_an_apvisit_file_is_read_as_its_visit_on_the_apstar_grid(real_file):
    path = real_file("apvisit-9518-57729-104")
    res = read_items(resolve_inputs([str(path)]), include_visits=True)
    assert not res.failures and len(res.spectra) == 1
    assert res.identities[0]["kind"] == "visit" and res.identities[0]["object_id"] == "2M00242666+5341178"
    assert len(res.spectra[0]) == 8575 and res.spectra[0].meta["resampled_from"] == "apVisit"
