"""Weights manifests: ``manifest.json`` next to shipped checkpoints, one format for every network.

A manifest is ``{"models": [entry, ...]}``; each entry names a checkpoint (``file``, relative to
the manifest) with its sha256 and size, its kind and hyperparameters (read from the checkpoint),
the training data, the command that regenerates it, the checkpoint's own training metrics and any
further (benchmark) metrics.  Entries are keyed by ``name``: updating a name replaces its entry.
"""
from __future__ import annotations

import json
from pathlib import Path

from .checkpoint import file_sha256, read_checkpoint


def read_manifest(path) -> list[dict]:
    """The entries of a manifest (also reads the older bare-list and file-keyed layouts)."""
    data = json.loads(Path(path).read_text())
    if isinstance(data, list):
        return data
    if "models" in data:
        return list(data["models"])
    return [dict({"name": Path(key).stem, "file": key}, **value) for key, value in data.items()]


def update_manifest(manifest_path, checkpoint_path, name: str, command: str, training_data: str = "",
                    metrics: dict | None = None, **extra) -> dict:
    """Add or replace the entry ``name`` of ``manifest_path`` for ``checkpoint_path``; return the entry.

    ``extra`` keys (JSON-serialisable) are stored in the entry as given.
    """
    manifest_path, checkpoint_path = Path(manifest_path), Path(checkpoint_path)
    entries = read_manifest(manifest_path) if manifest_path.is_file() else []
    ck = read_checkpoint(checkpoint_path)
    entry = {"name": name, "file": checkpoint_path.resolve().relative_to(manifest_path.parent.resolve()).as_posix(),
             "sha256": file_sha256(checkpoint_path), "bytes": checkpoint_path.stat().st_size,
             "kind": ck["kind"], "hyperparameters": ck["hyperparameters"], "training_data": training_data,
             "command": command, "training_metrics": ck.get("metrics", {}), "metrics": metrics or {}, **extra}
    entries = [e for e in entries if e.get("name") != name] + [entry]
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps({"models": entries}, indent=1, default=float) + "\n")
    return entry
