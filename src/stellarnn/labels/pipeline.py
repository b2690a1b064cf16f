"""The contract between label pipelines (APOGEENet, AstroNN, ...) and the survey runner.

A pipeline takes a batch of :class:`~stellarnn.spectra.Spectrum` objects (apStar combined
spectra or visits, 8575 px) and returns one row (a dict) per spectrum, in order.  It never
raises for a bad spectrum: such a spectrum gets its documented flag and a ``reason``.
The runner owns files, batching, databases and exports; pipelines never touch a database.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

from ..spectra import Spectrum


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
