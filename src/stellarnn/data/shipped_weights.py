"""Where the trained networks that ship with stellarnn are, checked against their manifests.

The shipped checkpoints live in ``weights/<group>/`` of the repository, each group with a
``manifest.json`` that names its files with their sha256.  One resolver finds them for every job:

1. the folder in the environment variable ``STELLARNN_WEIGHTS_DIR`` (laid out like ``weights/``), when set;
2. the repository checkout (an editable install or running from the source tree);
3. the installed copy: a wheel puts the checkpoints and manifests under ``<sys.prefix>/share/stellarnn/weights``
   (``pyproject.toml``, ``[tool.setuptools.data-files]``).

A file named in a manifest is checked against its sha256 the first time a process asks for it; a
mismatch (a truncated download, a file replaced by hand) raises :class:`ShippedWeightsError` instead
of loading the wrong network.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

WEIGHTS_ENV = "STELLARNN_WEIGHTS_DIR"  # the variable the label pipelines already read
_VERIFIED: set[tuple[str, int, float]] = set()


class ShippedWeightsError(FileNotFoundError):
    """Shipped weights that cannot be found or do not match their manifest."""


def weights_roots() -> list[Path]:
    """The folders searched for shipped weights, in order (module notes)."""
    roots = []
    if os.environ.get(WEIGHTS_ENV):
        roots.append(Path(os.environ[WEIGHTS_ENV]).expanduser())
    roots.append(Path(__file__).resolve().parents[3] / "weights")
    roots.append(Path(sys.prefix) / "share" / "stellarnn" / "weights")
    return roots


def weights_dir(group: str) -> Path:
    """The folder of a group (``astronn``, ``apogeenet``, ``emulator``, ``atmospheres``, ``stokes``): the first
    root holding ``<group>/manifest.json``; the checkout's folder when none does (so messages name a real place)."""
    roots = weights_roots()
    for root in roots:
        if (root / group / "manifest.json").is_file():
            return root / group
    if os.environ.get(WEIGHTS_ENV):
        return roots[0] / group
    return roots[1] / group


def _manifest_entries(manifest: Path) -> list[dict]:
    try:
        entries = json.loads(manifest.read_text())
    except (OSError, ValueError) as exc:
        raise ShippedWeightsError(f"{manifest}: unreadable manifest ({exc})") from None
    return entries if isinstance(entries, list) else entries.get("models", [entries])


def _verify(path: Path, sha256: str | None) -> None:
    if not sha256:
        return
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime)
    if key in _VERIFIED:
        return
    from .fetch import sha256_of

    if sha256_of(path) != sha256:
        raise ShippedWeightsError(f"{path} does not match the sha256 in {path.parent / 'manifest.json'}: "
                                  "the file is damaged or was replaced; reinstall stellarnn or restore the file")
    _VERIFIED.add(key)


def shipped_weights(group: str, file: str | None = None) -> Path:
    """Path of a shipped checkpoint, checked against its manifest's sha256.

    Parameters
    ----------
    group : str
        Folder name under ``weights/`` (e.g. ``"astronn"``).
    file : str, optional
        File name inside the group; default: the manifest's first model.

    Raises
    ------
    ShippedWeightsError
        No manifest for the group in any root, the file is not in it or missing, or its sha256 differs.
    """
    folder = weights_dir(group)
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        raise ShippedWeightsError(
            f"no shipped {group} weights: {manifest} is missing (searched {', '.join(map(str, weights_roots()))}); "
            f"set {WEIGHTS_ENV} to a folder holding {group}/manifest.json or pass the weights file explicitly")
    entries = _manifest_entries(manifest)
    if file is None:
        entry = entries[0]
    else:
        found = [e for e in entries if e.get("file") == file]
        if not found:
            raise ShippedWeightsError(f"{manifest} names no file {file!r} (it names "
                                      f"{', '.join(str(e.get('file')) for e in entries)})")
        entry = found[0]
    path = folder / entry["file"]
    if not path.is_file():
        raise ShippedWeightsError(f"{manifest} names {entry['file']}, which is missing from {folder}")
    _verify(path, entry.get("sha256"))
    return path
