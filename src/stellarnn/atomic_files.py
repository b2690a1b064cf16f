"""Atomic file writes that honour the umask.

Every file stellarnn writes in place of an existing one (exports, apStar files, checkpoints,
trainer resume files, cached data files, grid chunks) goes through :func:`atomic_write`: the
content is written to a temporary file in the destination folder, which then replaces the
destination with ``os.replace`` (atomic on POSIX within one file system), so a reader never
sees a half-written file and an interrupted write leaves nothing behind.

``tempfile.mkstemp`` creates its file with mode 0600 whatever the umask; the temporary file is
given ``0o666 & ~umask`` before it replaces the destination, as ``open()`` would have created it.

This module imports nothing from stellarnn, so every layer (``data`` included) may use it.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

#: longest file-name prefix (bytes) given to the temporary file; with mkstemp's random part and
#: the suffix it stays under the usual 255-byte limit of a file name
_MAX_PREFIX_BYTES = 200


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows.

    Linux reports it in ``/proc/self/status`` (since 4.7); elsewhere it is read by setting and
    restoring it with ``os.umask``.
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: ``0o666 & ~umask``."""
    return 0o666 & ~current_umask()


def _temporary_prefix(name: str) -> str:
    """``name + "."``, the name first cut to ``_MAX_PREFIX_BYTES`` bytes (whole characters)."""
    while len(os.fsencode(name)) > _MAX_PREFIX_BYTES:
        name = name[:-1]
    return name + "."


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, suffix: str = ".part") -> Iterator[str]:
    """Context manager yielding a temporary path to write; on success it replaces ``path``.

    Parameters
    ----------
    path : path-like
        The destination; its folder must exist.
    suffix : str
        End of the temporary file's name (``".part.npz"`` for writers such as ``numpy.savez``
        that append an extension otherwise).

    Yields
    ------
    str
        The temporary file (already created, empty), in the destination folder.  The writer may
        overwrite or truncate it.

    Notes
    -----
    On a clean exit the temporary file gets mode ``0o666 & ~umask`` and is moved onto ``path``
    with ``os.replace``; on any exception (``KeyboardInterrupt`` included) it is deleted and the
    exception propagates, leaving ``path`` as it was.

    Examples
    --------
    >>> with atomic_write(out) as tmp:          # doctest: +SKIP
    ...     torch.save(payload, tmp)
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path.name), suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
