"""The task abstraction: a batch of work items in, one result row per spectrum out, with timing.

A :class:`Task` is small and picklable (item descriptions, no spectra): the worker reads the
spectra itself (:func:`~stellarnn.runner.inputs.read_items`), calls the pipeline once on the
whole batch and returns a :class:`TaskResult`.  Each worker process builds the pipeline once
(:func:`worker_pipeline`) and keeps it for all its tasks.

Faults: unreadable items get a row flagged ``INPUT_UNREADABLE``.  A pipeline must not raise
for a bad spectrum, but if it raises on a batch anyway the batch is processed again spectrum
by spectrum so only the culprit gets ``PIPELINE_EXCEPTION``; a missing or malformed row gets
``PIPELINE_NO_ROW``.
"""
from __future__ import annotations

import importlib
import math
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import numpy as np

from ..labels.pipeline import FieldInfo, get_pipeline
from .fields import RunnerFlag
from .inputs import DEFAULT_GRID_SNR, ReadResult, WorkItem, read_items


@dataclass(frozen=True)
class PipelineSpec:
    """How a worker builds a pipeline: registry name, keyword arguments, modules to import first.

    ``modules`` lets pipelines registered outside :mod:`stellarnn.labels` (a user's own, or
    the tests') be found in fresh worker processes: each is imported before ``get_pipeline``.
    """

    name: str
    kwargs: tuple = ()
    modules: tuple[str, ...] = ()

    @classmethod
    def create(cls, name: str, kwargs: dict | None = None, modules: Sequence[str] = ()) -> "PipelineSpec":
        return cls(name, tuple(sorted((kwargs or {}).items())), tuple(modules))

    def build(self):
        for module in self.modules:
            importlib.import_module(module)
        return get_pipeline(self.name, **dict(self.kwargs))


@dataclass(frozen=True)
class Task:
    """One batch: items to read and process with one pipeline."""

    task_id: int
    items: tuple[WorkItem, ...]
    pipeline: PipelineSpec
    include_visits: bool = False
    grid_snr: float = DEFAULT_GRID_SNR
    #: torch intra-op threads for the worker (set once, when it builds the pipeline); 0 leaves torch's default
    torch_threads: int = 1


@dataclass
class TaskResult:
    """Rows of one task (identity + pipeline fields + ``runner_flags`` + ``reason``) and its timing.

    Times are wall-clock seconds spent in the worker: reading spectra (in a read-ahead thread, overlapped
    with the previous task's processing, when the executor prefetches), and in ``pipeline.process``.
    """

    task_id: int
    item_keys: list[str]
    rows: list[dict] = field(default_factory=list)
    n_spectra: int = 0
    read_seconds: float = 0.0
    process_seconds: float = 0.0
    worker: str = ""


_WORKER_PIPELINES: dict[PipelineSpec, object] = {}
#: this process's worker number (0, 1, ... set by the local executor's initializer; 0 elsewhere)
_WORKER_INDEX: int | None = None


def set_worker_index(index: int) -> None:
    """Record this worker process's number (picks its GPU, :func:`worker_device`)."""
    global _WORKER_INDEX
    _WORKER_INDEX = int(index)


def worker_index() -> int:
    """This process's worker number: the local executor's, a Dask worker's integer name, else 0."""
    if _WORKER_INDEX is not None:
        return _WORKER_INDEX
    try:
        from distributed import get_worker

        name = get_worker().name
        return int(name) if isinstance(name, int) or str(name).isdigit() else 0
    except (ImportError, ValueError):
        return 0


def worker_device(device: str, index: int, n_gpus: int) -> str:
    """The device worker ``index`` uses for the runner's ``--device``: one GPU per worker, round robin.

    ``"cuda"`` (no index) and ``"auto"`` on a machine with ``n_gpus`` > 0 GPUs give ``cuda:(index mod n_gpus)``;
    ``"auto"`` without a GPU gives ``"cpu"``; an explicit ``"cuda:N"``, ``"cpu"`` or other name is kept.
    """
    if device in ("auto", "cuda"):
        if n_gpus > 0:
            return f"cuda:{int(index) % n_gpus}"
        return "cpu" if device == "auto" else device
    return device


def spec_for_worker(spec: PipelineSpec, index: int) -> PipelineSpec:
    """``spec`` with its ``device`` keyword (when it has one) resolved for worker ``index``."""
    kwargs = dict(spec.kwargs)
    device = kwargs.get("device")
    if not isinstance(device, str) or device not in ("auto", "cuda"):
        return spec
    import torch

    n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    kwargs["device"] = worker_device(device, index, n_gpus)
    return PipelineSpec.create(spec.name, kwargs, spec.modules)


def worker_pipeline(spec: PipelineSpec, torch_threads: int = 0):
    """The pipeline for ``spec`` in this process, built on first use and then reused.

    A ``device`` of ``"cuda"`` or ``"auto"`` in the spec's keywords becomes this worker's GPU
    (:func:`worker_device`).
    """
    pipe = _WORKER_PIPELINES.get(spec)
    if pipe is None:
        if torch_threads > 0:
            import torch

            torch.set_num_threads(torch_threads)
        pipe = _WORKER_PIPELINES[spec] = spec_for_worker(spec, worker_index()).build()
    return pipe


def field_kind(info: FieldInfo) -> str:
    """numpy kind letter of a field's dtype ('f', 'i', 'u', 'b'; 'U' for strings and anything else)."""
    try:
        return np.dtype(info.dtype).kind
    except TypeError:
        return "U"


def clean_value(value, info: FieldInfo):
    """A pipeline value as a plain Python value for the database (None for missing)."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    kind = field_kind(info)
    try:
        if kind == "f":
            value = float(value)
            return None if math.isnan(value) else value
        if kind in "iu":
            return int(value)
        if kind == "b":
            return bool(value)
        return str(value)
    except (TypeError, ValueError):
        return None


def empty_fields(fields: dict[str, FieldInfo]) -> dict:
    return {k: None for k in fields if k != "reason"}


def rows_from_pipeline(pipeline, spectra: Sequence, fields: dict[str, FieldInfo]) -> list[dict]:
    """Run ``pipeline.process`` on a batch; isolate failures spectrum by spectrum.

    Returns one dict per spectrum with the pipeline's fields, ``reason`` and ``runner_flags``.
    """
    if not spectra:
        return []
    try:
        out = pipeline.process(list(spectra))
        if not isinstance(out, list) or len(out) != len(spectra):
            raise RuntimeError(f"pipeline returned {len(out) if isinstance(out, list) else type(out).__name__}"
                               f" rows for {len(spectra)} spectra")
    except Exception:
        if len(spectra) == 1:
            raise
        rows = []
        for s in spectra:  # isolate the culprit(s): fallback path only
            try:
                rows.extend(rows_from_pipeline(pipeline, [s], fields))
            except Exception as exc:
                rows.append({**empty_fields(fields), "runner_flags": int(RunnerFlag.PIPELINE_EXCEPTION),
                             "reason": f"pipeline exception: {type(exc).__name__}: {exc}"})
        return rows
    rows = []
    for r in out:
        if not isinstance(r, dict):
            rows.append({**empty_fields(fields), "runner_flags": int(RunnerFlag.PIPELINE_NO_ROW),
                         "reason": f"pipeline returned {type(r).__name__} instead of a row"})
            continue
        row = {k: clean_value(r.get(k), info) for k, info in fields.items() if k != "reason"}
        row["reason"] = str(r.get("reason") or "")
        row["runner_flags"] = 0
        rows.append(row)
    return rows


def read_task(task: Task) -> tuple[ReadResult, float]:
    """Read a task's spectra (:func:`~stellarnn.runner.inputs.read_items`): the result and the seconds it took.

    An unreadable item becomes one of the result's failures (a flagged row), not an exception.
    """
    t0 = time.perf_counter()
    read = read_items(task.items, task.include_visits, task.grid_snr)
    return read, time.perf_counter() - t0


def run_task(task: Task, prefetched: tuple[ReadResult, float] | None = None) -> TaskResult:
    """Read a batch, run its pipeline, return rows and timing (runs inside a worker).

    ``prefetched``: the task's :func:`read_task` result when its files were already read (e.g. by
    :func:`~stellarnn.runner.prefetch.read_ahead` while the previous batch ran); the rows are the
    same either way.
    """
    pipeline = worker_pipeline(task.pipeline, task.torch_threads)
    fields = dict(pipeline.fields)
    read, read_seconds = read_task(task) if prefetched is None else prefetched
    t1 = time.perf_counter()
    if read.spectra:
        try:
            results = rows_from_pipeline(pipeline, read.spectra, fields)
        except Exception as exc:  # a single spectrum whose pipeline call raised
            results = [{**empty_fields(fields), "runner_flags": int(RunnerFlag.PIPELINE_EXCEPTION),
                        "reason": f"pipeline exception: {type(exc).__name__}: {exc}"}]
    else:
        results = []
    t2 = time.perf_counter()
    rows = [{**ident, **res} for ident, res in zip(read.identities, results)]
    for fail in read.failures:
        rows.append({**empty_fields(fields), **fail, "runner_flags": int(RunnerFlag.INPUT_UNREADABLE)})
    return TaskResult(task.task_id, [it.key for it in task.items], rows, len(read.spectra), read_seconds, t2 - t1,
                      f"{socket.gethostname()}:{os.getpid()}")


def make_tasks(items: Iterable[WorkItem], batch_size: int, pipeline: PipelineSpec, include_visits: bool = False,
               grid_snr: float = DEFAULT_GRID_SNR, first_id: int = 0, torch_threads: int = 1) -> Iterator[Task]:
    """Cut items into tasks of ``batch_size`` items (lazily, so memory stays flat)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    batch: list[WorkItem] = []
    task_id = first_id
    for it in items:
        batch.append(it)
        if len(batch) == batch_size:
            yield Task(task_id, tuple(batch), pipeline, include_visits, grid_snr, torch_threads)
            task_id += 1
            batch = []
    if batch:
        yield Task(task_id, tuple(batch), pipeline, include_visits, grid_snr, torch_threads)
