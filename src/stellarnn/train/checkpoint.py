"""One self-describing checkpoint format for every stellarnn network.

A checkpoint is a ``torch.save`` dictionary::

    {"format": "stellarnn-checkpoint", "format_version": 1,
     "kind": "<registered model kind>", "hyperparameters": {...},   # enough to rebuild the module
     "state_dict": {...}, "normalisation": {...},                    # arrays/tensors/scalars
     "metrics": {...}, "provenance": {...}, "stellarnn_version": "..."}

Modules are rebuilt from ``kind`` + ``hyperparameters`` through :func:`register_model`
and the weights are always loaded with ``strict=True``.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import os
import pickle
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..atomic_files import atomic_write

FORMAT = "stellarnn-checkpoint"
FORMAT_VERSION = 1

_BUILDERS: dict[str, Callable[..., torch.nn.Module]] = {}


class CheckpointError(RuntimeError):
    """A file that is not a valid stellarnn checkpoint, or one that does not match its model."""


def describe_load_error(exc: BaseException) -> str:
    """One line saying why ``torch.load(weights_only=True)`` refused a file.

    A file holding pickled objects other than tensors and plain values (a crafted file, or one
    written for full unpickling) is reported with the first such object's name.
    """
    if isinstance(exc, pickle.UnpicklingError):
        found = re.search(r"GLOBAL\s+([\w.]+)", str(exc))
        what = f" (it refers to {found.group(1)})" if found else ""
        return f"it holds objects other than tensors and plain values, which are never loaded{what}"
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:200]


def register_model(kind: str):
    """Class/function decorator: ``kind`` -> ``callable(**hyperparameters)`` returning an ``nn.Module``."""

    def deco(builder):
        if kind in _BUILDERS and _BUILDERS[kind] is not builder:
            raise ValueError(f"model kind {kind!r} registered twice")
        _BUILDERS[kind] = builder
        return builder

    return deco


def _to_storable(obj: Any) -> Any:
    """``obj`` with numpy arrays as tensors and numpy scalars as Python numbers (recursively): what
    ``torch.load(weights_only=True)`` reads back."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: _to_storable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_storable(v) for v in obj)
    return obj


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, kind: str,
                    hyperparameters: dict, normalisation: dict | None = None,
                    metrics: dict | None = None, provenance: dict | None = None,
                    half: bool = False) -> Path:
    """Write a checkpoint atomically.

    ``half=True`` stores floating parameters as float16 (smaller files); buffers (normalisation
    constants such as label ranges or mean spectra) keep their precision.
    """
    from .. import __version__

    if kind not in _BUILDERS:
        raise CheckpointError(f"model kind {kind!r} is not registered; known: {sorted(_BUILDERS)}")
    buffers = {name for name, _ in model.named_buffers()}
    state = {k: (v.detach().cpu().half() if half and v.is_floating_point() and k not in buffers else v.detach().cpu())
             for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind,
        "hyperparameters": _to_storable(dict(hyperparameters)), "state_dict": state,
        "normalisation": _to_storable(normalisation or {}), "metrics": _to_storable(dict(metrics or {})),
        "provenance": _to_storable({"created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                                    **(provenance or {})}),
        "stellarnn_version": __version__,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Read and validate the checkpoint dictionary (no module is built)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt/truncated/not a torch file, or objects refused by weights_only
        raise CheckpointError(f"{path} is not a readable checkpoint: {describe_load_error(exc)}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a stellarnn checkpoint (missing format tag)")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} has format version {payload['format_version']}, newer than this "
                              f"stellarnn understands ({FORMAT_VERSION})")
    return payload


def load_checkpoint(path: str | os.PathLike, expected_kind: str | None = None,
                    device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild the module from a checkpoint, load its weights with ``strict=True``.

    Returns the module (in eval mode, float32) and the full checkpoint dictionary.
    """
    payload = read_checkpoint(path)
    kind = payload["kind"]
    if expected_kind is not None and kind != expected_kind:
        raise CheckpointError(f"{path} holds a {kind!r} model, expected {expected_kind!r}")
    if kind not in _BUILDERS:
        raise CheckpointError(f"{path}: model kind {kind!r} is not registered (import its module first); "
                              f"known: {sorted(_BUILDERS)}")
    model = _BUILDERS[kind](**payload["hyperparameters"])
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in payload["state_dict"].items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match the {kind!r} architecture: {exc}") from exc
    model.to(device).eval()
    return model, payload


def warm_start(model: torch.nn.Module, path: str | os.PathLike, expected_kind: str) -> dict:
    """Copy the weights of checkpoint ``path`` into ``model`` (``strict=True``) to start training from them.

    The checkpoint must hold the same kind of network with the same hyper-parameters; returns
    ``{"init_from": path, "init_sha256": ...}`` for the new checkpoint's provenance.

    Raises
    ------
    CheckpointError
        Another kind of model, or weights that do not fit ``model``.
    """
    source, _ = load_checkpoint(path, expected_kind=expected_kind)
    try:
        model.load_state_dict(source.state_dict(), strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: its weights do not fit this network (other widths?): {exc}") from exc
    return {"init_from": str(path), "init_sha256": file_sha256(path)}


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
