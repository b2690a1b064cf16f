"""Runner inputs: globs of apStar files, list files, and synthetic grid folders.

The parent process turns command-line inputs into :class:`WorkItem` objects (cheap: no
spectrum is read); workers read the spectra of their batch with :func:`read_items`.

* an apStar file (``*.fits``, ``*.fits.gz``, ``*.fit``) is one item; it yields its combined
  spectrum and, with ``include_visits``, its visits (not for single-visit files, whose only
  visit is the combined row itself); an apVisit file is one item that yields its visit in the star's
  rest frame on the apStar grid, an aspcapStar file one that yields ASPCAP's normalised spectrum, an SDSS-V
  mwmStar file one that yields its APOGEE coadd (:func:`stellarnn.spectra.read_apogee_file`);
* a folder holding ``spec.json`` is a synthetic grid (layout of
  :mod:`stellarnn.synthesis.grid_builder`); each finished spectrum (status ``ok``) is one item;
* a list file is named explicitly: ``@FILE`` (any name), or a file ending in ``.txt``,
  ``.lst`` or ``.list``.  It holds one apStar path, glob or grid folder per line (``#``
  starts a comment; relative paths are relative to the list file).  Every entry must look
  like an input — a glob, a name with an apStar suffix, or an existing file or folder — or
  the whole list is rejected naming the first bad line (a text file that is not a list of
  paths never turns into rows);
* anything else with glob characters is a glob pattern (``**`` recursive).

A file that cannot be read becomes one result row flagged ``INPUT_UNREADABLE`` with the
reason; the run goes on.  So does a folder named like an apStar file (``x.fits/``) matched by
a glob or named in a list ("is a folder, not an apStar file").  On the command line, a
literal path that does not exist, a file that is neither an apStar file nor a list file, a
folder that is not a grid, a glob that matches nothing, or a list file without entries is an
argument error (``ValueError``); a missing apStar file named inside a list file is data and
gets a flagged row.
"""
from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..spectra import Spectrum, apogee_wavelength, read_apogee_file

APSTAR_SUFFIXES = (".fits", ".fits.gz", ".fit", ".fts")
#: suffixes of files read as list files without the ``@`` prefix
LIST_SUFFIXES = (".txt", ".lst", ".list")
GRID_SPEC_FILE = "spec.json"
#: default S/N per pixel given to noiseless, continuum-normalised grid spectra (ivar = snr^2)
DEFAULT_GRID_SNR = 100.0


@dataclass(frozen=True)
class WorkItem:
    """One unit of input: an apStar file or one spectrum of a synthetic grid.

    Attributes
    ----------
    key : str
        Stable, unique identity of the item (absolute path, or ``grid:<folder>#<index>``).
    kind : {"apstar", "grid"}
    path : str
        Absolute path of the file or of the grid folder.
    index : int
        Grid index (-1 for files).
    store : str
        Grid only: the chunk HDF5 file or pending ``.npz`` holding the spectrum.
    position : int
        Grid only: row of the spectrum inside ``store``.
    name : str
        Grid only: the grid's name (from spec.json), for object identifiers.
    """

    key: str
    kind: str
    path: str
    index: int = -1
    store: str = ""
    position: int = -1
    name: str = ""


@dataclass
class ReadResult:
    """Spectra read from a batch of items, with their identities, and rows for unreadable items."""

    spectra: list[Spectrum] = field(default_factory=list)
    identities: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)


def is_apstar_path(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(APSTAR_SUFFIXES)


def file_item(path: str | os.PathLike) -> WorkItem:
    p = os.path.abspath(Path(path).expanduser())  # normalises "..": one key per file
    return WorkItem(key=p, kind="apstar", path=p)


def scan_grid(folder: str | os.PathLike) -> list[WorkItem]:
    """Items for every finished (status ``ok``) spectrum of a grid folder, sorted by index.

    Reads only the small ``index``/``status`` datasets of the packed chunks and the pending
    ``.npz`` records, never the fluxes.
    """
    import h5py

    folder = Path(os.path.abspath(Path(folder).expanduser()))
    spec_file = folder / GRID_SPEC_FILE
    if not spec_file.is_file():
        raise ValueError(f"{folder} is not a synthetic grid folder (no {GRID_SPEC_FILE})")
    try:
        name = str(json.loads(spec_file.read_text())["spec"]["name"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{spec_file}: not a grid specification ({exc})") from exc
    items: dict[int, WorkItem] = {}
    for chunk in sorted((folder / "chunks").glob("chunk_*.h5")):
        with h5py.File(chunk, "r") as h:
            index = h["index"][:]
            status = h["status"][:]
        for pos in np.flatnonzero(np.char.strip(status.astype("S8")) == b"ok"):
            i = int(index[pos])
            items[i] = WorkItem(f"grid:{folder}#{i}", "grid", str(folder), i, str(chunk), int(pos), name)
    for rec in sorted((folder / "pending").glob("*.npz")):
        if rec.name.endswith(".part.npz"):
            continue
        with np.load(rec) as r:
            if str(r["status"]) != "ok":
                continue
            i = int(r["index"])
        items[i] = WorkItem(f"grid:{folder}#{i}", "grid", str(folder), i, str(rec), 0, name)
    return [items[i] for i in sorted(items)]


def is_list_path(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(LIST_SUFFIXES)


def read_list_file(path: Path) -> list[WorkItem]:
    """Items named by a list file (apStar paths, globs or grid folders, one per line).

    Raises
    ------
    ValueError
        Unreadable or empty list, or a line that is not a path to an input (see the module notes).
    """
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read list file ({exc})") from None
    out: list[WorkItem] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        p = Path(entry).expanduser()
        if not p.is_absolute():
            p = path.parent / p
        if glob.has_magic(str(p)):
            out.extend(file_item(m) for m in sorted(glob.glob(str(p), recursive=True)))
        elif p.is_dir() and (p / GRID_SPEC_FILE).is_file():
            out.extend(scan_grid(p))
        elif is_apstar_path(p) or p.exists():
            out.append(file_item(p))  # a missing apStar file or a folder here becomes a flagged row
        else:
            raise ValueError(f"{path}:{lineno}: {entry[:80]!r} is not an apStar path ({', '.join(APSTAR_SUFFIXES)}),"
                             f" a glob or an existing file or folder: {path.name} is not a list of inputs")
    if not out:
        raise ValueError(f"{path}: list file names no input")
    return out


def resolve_inputs(inputs: Sequence[str | os.PathLike]) -> list[WorkItem]:
    """Work items for command-line inputs, in order, without duplicates.

    Raises
    ------
    ValueError
        No inputs, a glob matching nothing, a missing literal path, a file that is neither an
        apStar file nor a list file, a folder that is not a grid, an empty or malformed list file.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if not inputs:
        raise ValueError("no inputs given (apStar files or globs, list files, or grid folders)")
    items: list[WorkItem] = []
    for raw in inputs:
        raw = str(raw)
        if raw.startswith("@"):
            listing = Path(raw[1:]).expanduser()
            if not listing.is_file():
                raise ValueError(f"list file {raw[1:]!r} does not exist or is not a file")
            items.extend(read_list_file(listing))
            continue
        s = str(Path(raw).expanduser())
        if glob.has_magic(s):
            matches = sorted(glob.glob(s, recursive=True))
            if not matches:
                raise ValueError(f"no file matches {s!r}")
            for m in matches:
                mp = Path(m)
                if mp.is_dir() and (mp / GRID_SPEC_FILE).is_file():
                    items.extend(scan_grid(mp))
                elif mp.is_file() or is_apstar_path(mp):
                    items.append(file_item(mp))  # a folder named *.fits gets a flagged row
            continue
        p = Path(s)
        if p.is_dir():
            if not (p / GRID_SPEC_FILE).is_file():
                kind = ", named like an apStar file, and" if is_apstar_path(p) else ""
                raise ValueError(f"input {s!r} is a folder{kind} not a synthetic grid folder (no {GRID_SPEC_FILE}); "
                                 f"for the apStar files inside it give a glob such as '{s}/*.fits'")
            items.extend(scan_grid(p))
        elif not p.exists():
            raise ValueError(f"input {s!r} does not exist")
        elif is_apstar_path(p):
            items.append(file_item(p))
        elif is_list_path(p):
            items.extend(read_list_file(p))
        else:
            raise ValueError(f"input {s!r} is neither an apStar file ({', '.join(APSTAR_SUFFIXES)}) nor a list "
                             f"file (@FILE, or a name ending in {', '.join(LIST_SUFFIXES)}) nor a grid folder")
    seen: set[str] = set()
    unique = []
    for it in items:
        if it.key not in seen:
            seen.add(it.key)
            unique.append(it)
    return unique


def unreadable_row(item: WorkItem, reason: str) -> dict:
    """Identity of the single flagged row an unreadable item gets."""
    return {"spectrum_id": f"{item.key}:-1", "item": item.key, "source": item.path, "kind": "unreadable",
            "row": -1, "object_id": Path(item.path).name if item.kind == "apstar" else f"{item.name}-{item.index}",
            "reason": reason}


def read_apstar_item(item: WorkItem, include_visits: bool, out: ReadResult) -> None:
    if os.path.isdir(item.path):
        out.failures.append(unreadable_row(item, f"{item.path} is a folder, not an apStar file"))
        return
    try:
        star = read_apogee_file(item.path)
    except Exception as exc:  # SpectrumFileError, PermissionError, MemoryError on absurd headers, ...
        out.failures.append(unreadable_row(item, f"{type(exc).__name__}: {exc}"))
        return
    spectra = [star.combined] + (star.visits if include_visits and star.nvisits > 1 else [])
    object_id = str(star.header.get("apogee_id", Path(item.path).name.split(".")[0]))
    for s in spectra:
        row = int(s.meta["row"])
        out.spectra.append(s)
        out.identities.append({"spectrum_id": f"{item.key}:{row}", "item": item.key, "source": item.path,
                               "kind": str(s.meta.get("kind", "combined")), "row": row, "object_id": object_id})


def read_grid_items(items: Sequence[WorkItem], snr: float, out: ReadResult) -> None:
    """Read grid spectra, one HDF5 read per chunk file; flux is continuum-normalised."""
    import h5py

    wavelength = apogee_wavelength()
    by_store: dict[str, list[WorkItem]] = {}
    for it in items:
        by_store.setdefault(it.store, []).append(it)
    ivar_value = float(snr) ** 2
    for store, group in by_store.items():
        group = sorted(group, key=lambda it: it.position)
        try:
            if store.endswith(".npz"):
                with np.load(store) as r:
                    fluxes = np.asarray(r["flux"], dtype=np.float64)[None, :]
            else:
                with h5py.File(store, "r") as h:
                    fluxes = h["flux"][[it.position for it in group]].astype(np.float64)
        except Exception as exc:
            out.failures.extend(unreadable_row(it, f"{type(exc).__name__}: {exc}") for it in group)
            continue
        for it, flux in zip(group, fluxes):
            finite = np.isfinite(flux)
            if not finite.any():
                out.failures.append(unreadable_row(it, f"{store}: grid spectrum {it.index} has no finite flux"))
                continue
            ivar = np.where(finite, ivar_value, 0.0)
            spectrum = Spectrum(wavelength, np.where(finite, flux, 0.0), ivar, None,
                                {"source": it.path, "row": it.index, "kind": "synthetic",
                                 "object_id": f"{it.name}-{it.index}"})
            out.spectra.append(spectrum)
            out.identities.append({"spectrum_id": f"{it.key}:{it.index}", "item": it.key, "source": it.path,
                                   "kind": "synthetic", "row": it.index, "object_id": f"{it.name}-{it.index}"})


def read_items(items: Iterable[WorkItem], include_visits: bool = False,
               grid_snr: float = DEFAULT_GRID_SNR) -> ReadResult:
    """Read the spectra of a batch of items (in the worker).

    Parameters
    ----------
    items : iterable of WorkItem
    include_visits : bool
        Also return the individual visits of multi-visit apStar files.
    grid_snr : float
        S/N per pixel assigned to the noiseless grid spectra (ivar = grid_snr**2, flux normalised).
    """
    if not grid_snr > 0:
        raise ValueError(f"grid_snr must be positive, got {grid_snr}")
    out = ReadResult()
    grid_items = []
    for it in items:
        if it.kind == "apstar":
            read_apstar_item(it, include_visits, out)
        elif it.kind == "grid":
            grid_items.append(it)
        else:
            raise ValueError(f"unknown item kind {it.kind!r}")
    if grid_items:
        read_grid_items(grid_items, grid_snr, out)
    return out
