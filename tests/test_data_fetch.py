import io
import shutil
import zipfile
from pathlib import Path

import pytest

from stellarnn.data import DataEntry, DataFetchError, Package, fetch, is_cached, sha256_of
import importlib

from stellarnn.data import get_entry

fetch_module = importlib.import_module("stellarnn.data.fetch")

PAYLOAD = b"hello stellar world\n" * 100
FAKE = Package("fakepkg", "1.0", "wheel", "MIT", "test", pip_args=("--no-index", "--find-links", "/nonexistent"))


def _entry(sha):
    return DataEntry("fake-file", FAKE, "fakepkg/data/file.txt", sha, len(PAYLOAD), "test payload")


def _put_archive(root: Path, payload=PAYLOAD):
    folder = root / "archives" / FAKE.key
    folder.mkdir(parents=True)
    with zipfile.ZipFile(folder / "fakepkg-1.0-py3-none-any.whl", "w") as zf:
        zf.writestr("fakepkg/data/file.txt", payload)


def test_real_files_verified(real_file):
    for name in ("apstar-2M17335483", "dr17-contmask", "atlas9-grid"):
        path = real_file(name)
        entry = get_entry(name)
        assert sha256_of(path) == entry.sha256
        assert path.stat().st_size == entry.size


def test_extract_and_verify_from_cached_archive(tmp_path):
    import hashlib

    _put_archive(tmp_path)
    entry = _entry(hashlib.sha256(PAYLOAD).hexdigest())
    path = fetch(entry, root=tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert is_cached(entry, root=tmp_path)


def test_checksum_mismatch_is_clear_and_leaves_nothing(tmp_path):
    _put_archive(tmp_path)
    entry = _entry("0" * 64)
    with pytest.raises(DataFetchError, match="fake-file.*checksum mismatch"):
        fetch(entry, root=tmp_path)
    assert not list((tmp_path / "files").rglob("file.txt*"))


def test_failed_download_names_package_and_action(tmp_path):
    entry = _entry("0" * 64)
    with pytest.raises(DataFetchError, match=r"(?s)fake-file.*fakepkg==1\.0.*What to do"):
        fetch(entry, root=tmp_path)


def test_interrupted_write_leaves_no_half_file(tmp_path, monkeypatch):
    import hashlib

    _put_archive(tmp_path)
    entry = _entry(hashlib.sha256(PAYLOAD).hexdigest())

    def broken_copy(src, dst, *a, **k):
        dst.write(src.read(10))
        raise KeyboardInterrupt

    monkeypatch.setattr(fetch_module.shutil, "copyfileobj", broken_copy)
    with pytest.raises(KeyboardInterrupt):
        fetch(entry, root=tmp_path)
    leftovers = [p for p in (tmp_path / "files").rglob("*") if p.is_file()]
    assert leftovers == []


def test_missing_member_in_archive(tmp_path):
    folder = tmp_path / "archives" / FAKE.key
    folder.mkdir(parents=True)
    with zipfile.ZipFile(folder / "fakepkg-1.0-py3-none-any.whl", "w") as zf:
        zf.writestr("fakepkg/other.txt", b"x")
    with pytest.raises(DataFetchError, match="cannot extract"):
        fetch(_entry("0" * 64), root=tmp_path)
