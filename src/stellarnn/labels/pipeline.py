"""The contract between label pipelines (APOGEENet, AstroNN, ...) and the survey runner.

A pipeline takes a batch of :class:`~stellarnn.spectra.Spectrum` objects (apStar combined
spectra or visits, 8575 px) and returns one row (a dict) per spectrum, in order.  It never
raises for a bad spectrum: such a spectrum gets its documented flag and a ``reason``.
The runner owns files, batching, databases and exports; pipelines never touch a database.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from ..spectra import APOGEE_N_PIXELS, Spectrum


@dataclass(frozen=True)
class FieldInfo:
    """One output column: its unit (astropy string, '' if none), description, and numpy dtype."""

    unit: str
    description: str
    dtype: str = "float64"


@runtime_checkable
class Pipeline(Protocol):
    """What every label pipeline provides."""

    #: short name, e.g. "apogeenet" or "astronn"
    name: str
    #: model version (e.g. the first 12 hex digits of the weights' sha256)
    version: str
    #: the columns each row holds (besides "reason"), in a fixed order: name -> FieldInfo
    fields: dict[str, FieldInfo]

    def process(self, spectra: Sequence[Spectrum]) -> list[dict]:
        """One row per spectrum, same order; bad spectra get flags and a non-empty "reason"."""
        ...


WEIGHTS_ENV = "STELLARNN_WEIGHTS_DIR"


def default_weights_dir(name: str) -> Path:
    """``$STELLARNN_WEIGHTS_DIR/<name>`` or the repository's ``weights/<name>``."""
    root = os.environ.get(WEIGHTS_ENV)
    return Path(root) / name if root else Path(__file__).resolve().parents[3] / "weights" / name


def resolve_shipped_weights(name: str, weights=None) -> Path:
    """The checkpoint to load: ``weights`` if given, else the one named by ``weights/<name>/manifest.json``."""
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"{name} weights {path} do not exist")
        return path
    import json

    manifest = default_weights_dir(name) / "manifest.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"no shipped {name} weights: {manifest} is missing; train a network "
                                f"(`stellarnn train {name} ...`) and pass weights=PATH (CLI: --weights PATH)")
    entries = json.loads(manifest.read_text())
    entries = entries if isinstance(entries, list) else entries.get("models", [entries])
    path = manifest.parent / entries[0]["file"]
    if not path.is_file():
        raise FileNotFoundError(f"{manifest} names {path.name}, which is missing")
    return path


def spectrum_problem(spectrum) -> str:
    """Why a spectrum cannot go through an apStar-grid pipeline ('' if it can)."""
    if not isinstance(spectrum, Spectrum):
        return f"not a Spectrum (got {type(spectrum).__name__})"
    if spectrum.flux.shape != (APOGEE_N_PIXELS,):
        return f"has {spectrum.flux.shape[0]} pixels, expected {APOGEE_N_PIXELS} (apStar grid)"
    if not np.any(np.isfinite(spectrum.ivar) & (spectrum.ivar > 0)):
        return "no pixel with positive inverse variance"
    return ""


def failed_row(fields, flag: int, reason: str, flag_bad_value: bool, flag_warn_value: bool) -> dict:
    """A row of NaN values carrying ``flag`` and ``reason``."""
    row = {}
    for key, info in fields.items():
        row[key] = np.nan if info.dtype.startswith("float") else None
    row.update(result_flags=int(flag), flag_warn=bool(flag_warn_value), flag_bad=bool(flag_bad_value),
               reason=reason)
    return row


def process_in_batches(spectra: Sequence, batch_size: int, run_batch: Callable[[list], list[dict]],
                       failed: Callable[[str], dict], log) -> list[dict]:
    """One row per spectrum, in order, never raising for a bad spectrum.

    Spectra that :func:`spectrum_problem` refuses get ``failed(reason)``; the others go through
    ``run_batch`` ``batch_size`` at a time.  A batch that raises is retried one spectrum at a time, so
    only the offending spectrum gets ``failed("ExceptionName: message")``.
    """
    rows: list[dict | None] = [None] * len(spectra)
    good = []
    for i, s in enumerate(spectra):
        problem = spectrum_problem(s)
        if problem:
            rows[i] = failed(problem)
        else:
            good.append(i)
    for start in range(0, len(good), batch_size):
        idx = good[start:start + batch_size]
        try:
            for i, row in zip(idx, run_batch([spectra[i] for i in idx])):
                rows[i] = row
        except Exception as exc:  # isolate the offending spectrum; the others still get results
            log.warning("batch failed (%s: %s); retrying one by one", type(exc).__name__, exc)
            for i in idx:
                try:
                    rows[i] = run_batch([spectra[i]])[0]
                except Exception as exc_i:
                    rows[i] = failed(f"{type(exc_i).__name__}: {exc_i}")
    return rows


_REGISTRY: dict[str, type] = {}


def register_pipeline(name: str):
    """Class decorator: make a pipeline constructible by name (``get_pipeline(name, **kwargs)``)."""

    def deco(cls):
        _REGISTRY[name] = cls
        return cls

    return deco


def _import_builtin_pipelines() -> None:
    import importlib

    for module in ("stellarnn.labels.apogeenet", "stellarnn.labels.astronn"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def get_pipeline(name: str, **kwargs) -> Pipeline:
    """Build a registered pipeline by name (built-in ones are imported first)."""
    _import_builtin_pipelines()
    if name not in _REGISTRY:
        raise KeyError(f"unknown pipeline {name!r}; known: {sorted(_REGISTRY)}")
    return _REGISTRY[name](**kwargs)


def available_pipelines() -> list[str]:
    _import_builtin_pipelines()
    return sorted(_REGISTRY)
