"""Run pipelines over many spectra: resolve inputs, skip finished items, batch, execute, store.

:func:`run_pipeline` is one pipeline over one set of inputs (``stellarnn runner run``);
:func:`run_survey` is the README's main job: several pipelines into one database, then the
exported summaries and plots.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from .executors import InlineExecutor, make_executor
from .fields import RunnerFlag
from .inputs import DEFAULT_GRID_SNR, WorkItem, resolve_inputs
from .store import DEFAULT_RETRY_SECONDS, DatabaseUnavailable, ResultsStore, default_db_url, hide_password
from .task import _WORKER_PIPELINES, PipelineSpec, make_tasks


@dataclass
class RunReport:
    """What one run did.  Times in seconds (wall clock)."""

    pipeline: str
    version: str
    run_id: int
    db_url: str
    executor: str
    n_workers: int
    n_items: int
    n_items_skipped: int
    n_items_done: int = 0
    n_rows: int = 0
    n_unreadable: int = 0
    #: spectra on which the pipeline raised or returned no row (``runner_flags`` 2 or 4)
    n_pipeline_failures: int = 0
    #: spectra the pipeline itself flagged bad (its ``flag_bad`` field true), with labels it does not vouch for
    n_flagged_bad: int = 0
    #: items left to another run processing them at the same time (claimed by it, or finished by it)
    n_items_claimed_elsewhere: int = 0
    n_spectra: int = 0
    wall_seconds: float = 0.0
    read_seconds: float = 0.0
    process_seconds: float = 0.0
    write_seconds: float = 0.0
    status: str = "running"
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def pipeline_spec(name: str, kwargs: dict | None = None, modules: Sequence[str] = ()):
    """Build the pipeline once here (for its name, version and fields) and the spec workers use.

    The module defining the pipeline's class is added to the spec's imports, so worker
    processes find pipelines registered outside :mod:`stellarnn.labels`.
    """
    spec = PipelineSpec.create(name, kwargs, modules)
    pipe = spec.build()
    module = type(pipe).__module__
    if module not in ("__main__", "__mp_main__") and module not in spec.modules:
        spec = PipelineSpec(spec.name, spec.kwargs, spec.modules + (module,))
    for attr in ("name", "version", "fields"):
        if not hasattr(pipe, attr):
            raise TypeError(f"pipeline {name!r} has no attribute {attr!r} (see stellarnn.labels.pipeline.Pipeline)")
    if not isinstance(pipe.fields, dict) or not pipe.fields:
        raise TypeError(f"pipeline {name!r}: fields must be a non-empty dict name -> FieldInfo")
    return spec, pipe


def check_device(device: str | None) -> str | None:
    """``device`` if this machine has it (``auto``, ``cpu``, ``cuda``, ``cuda:N``), else a one-line ``ValueError``."""
    if device is None:
        return None
    import argparse

    from ..cli_arguments import torch_device

    try:
        return torch_device(str(device))
    except argparse.ArgumentTypeError as exc:
        raise ValueError(f"device {exc}") from None


def with_device(pipeline_kwargs: dict | None, device: str | None) -> dict:
    """The pipeline's constructor keywords with ``device`` added (``None``: the pipeline's own default)."""
    kwargs = dict(pipeline_kwargs or {})
    if device is None:
        return kwargs
    if "device" in kwargs and kwargs["device"] != device:
        raise ValueError(f"two devices given: device={device!r} and the pipeline option device={kwargs['device']!r}")
    kwargs["device"] = device
    return kwargs


def run_pipeline(pipeline: str, inputs: Sequence[str | os.PathLike] | Sequence[WorkItem], db_url: str | None = None,
                 *, out_dir: str | os.PathLike = ".", batch_size: int = 32, workers: int | None = None,
                 scheduler: str | None = None, dask: bool = False, include_visits: bool = False,
                 grid_snr: float = DEFAULT_GRID_SNR, pipeline_kwargs: dict | None = None,
                 modules: Sequence[str] = (), rerun: bool = False, progress: bool = True,
                 max_in_flight: int | None = None, db_retry_seconds: float = DEFAULT_RETRY_SECONDS,
                 device: str | None = None, prefetch: int = 1) -> RunReport:
    """Run one pipeline over inputs into the results database; resumable.

    Parameters
    ----------
    pipeline : str
        Registered pipeline name (``stellarnn.labels.pipeline.get_pipeline``).
    inputs : sequence of str or WorkItem
        apStar files or globs, list files, grid folders (see :mod:`stellarnn.runner.inputs`).
    db_url : str, optional
        SQLAlchemy URL or SQLite path; default ``<out_dir>/stellarnn_results.sqlite``.
    batch_size : int
        Input items per task (an apStar file with visits gives several spectra).
    workers : int, optional
        Local worker processes (0: in this process; default: CPU count), or the LocalCluster size with Dask.
    scheduler : str, optional
        Dask scheduler address; with ``dask=True`` and no address a LocalCluster is started.
    include_visits : bool
        Also process the visits of multi-visit apStar files.
    grid_snr : float
        S/N given to noiseless grid spectra.
    pipeline_kwargs : dict, optional
        Keyword arguments of the pipeline's constructor.
    device : str, optional
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N``, passed to the pipeline's constructor as ``device=``
        (default None: not passed, the pipeline's own default).  ``cuda`` and ``auto`` on a machine
        with GPUs give worker i the GPU ``cuda:(i mod n_gpus)``
        (:func:`~stellarnn.runner.task.worker_device`); a CUDA device this machine lacks is a
        ``ValueError`` before any work.
    modules : sequence of str
        Modules to import in workers before building the pipeline (user-registered pipelines).
    prefetch : int
        With ``workers=0``: tasks whose files are read ahead in a background thread while the current
        one runs (default 1; 0: none), see :class:`~stellarnn.runner.executors.InlineExecutor`.
    rerun : bool
        Process every item again (rows are updated in place, never duplicated); default skips
        items already complete for this pipeline version.
    db_retry_seconds : float
        How long a database failing with a connection-level error (a PostgreSQL restart, an
        SQLite lock) is retried, with back-off, before the run stops with
        :class:`~stellarnn.runner.store.DatabaseUnavailable` (default 120 s).

    Returns
    -------
    RunReport

    Notes
    -----
    Items are claimed batch by batch just before they are submitted
    (:meth:`ResultsStore.claim_items`): runners started at the same time on one database split
    the items between them, each item processed once in total.  A run killed with ``kill -9``
    stays ``running`` in ``runner_runs`` until the next run on the same host marks it
    ``interrupted``; with the local executor its worker processes die with it
    (:class:`~stellarnn.runner.executors.LocalExecutor`).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pipeline_kwargs = with_device(pipeline_kwargs, check_device(device))
    db_url = db_url or default_db_url(out_dir)
    items = list(inputs) if inputs and all(isinstance(i, WorkItem) for i in inputs) else resolve_inputs(inputs)
    spec, pipe = pipeline_spec(pipeline, pipeline_kwargs, modules)
    name, version, fields = str(pipe.name), str(pipe.version), dict(pipe.fields)
    executor = make_executor(workers, scheduler, dask, max_in_flight, prefetch)
    if isinstance(executor, InlineExecutor):
        _WORKER_PIPELINES[spec] = pipe  # reuse the instance built above
        torch_threads = 0
    else:
        del pipe
        torch_threads = 1
    store = ResultsStore(db_url, retry_seconds=db_retry_seconds)
    try:
        store.ensure_pipeline(name, version, fields)
        done = set() if rerun else store.done_items(name, version)
        todo = [it for it in items if it.key not in done]
        report = RunReport(name, version, 0, hide_password(store.url), executor.name, executor.n_workers,
                           len(items), len(items) - len(todo))
        t_start = time.perf_counter()
        report.run_id = store.start_run(name, version, executor.name, executor.n_workers, len(items),
                                        report.n_items_skipped)

        def claimed(work: list[WorkItem]):
            """The items of ``work`` this run may process, claimed one batch at a time (lazily)."""
            for start in range(0, len(work), batch_size):
                chunk = work[start:start + batch_size]
                mine = set(store.claim_items(report.run_id, name, version, [it.key for it in chunk],
                                             skip_done=not rerun))
                report.n_items_claimed_elsewhere += len(chunk) - len(mine)
                yield from (it for it in chunk if it.key in mine)

        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=f"{name} {version}", unit="item", disable=not progress)
        status = "failed"
        db_down = False
        try:
            if todo:
                with executor:
                    report.n_workers = executor.n_workers
                    tasks = make_tasks(claimed(todo), batch_size, spec, include_visits, grid_snr,
                                       torch_threads=torch_threads)
                    for result in executor.run(tasks):
                        t_write = time.perf_counter()
                        report.write_seconds += store.write_task(report.run_id, name, version, result, t_write)
                        report.n_items_done += len(result.item_keys)
                        report.n_rows += len(result.rows)
                        report.n_spectra += result.n_spectra
                        report.read_seconds += result.read_seconds
                        report.process_seconds += result.process_seconds
                        for r in result.rows:
                            flags = r.get("runner_flags") or 0
                            if flags & RunnerFlag.INPUT_UNREADABLE:
                                report.n_unreadable += 1
                            elif flags:
                                report.n_pipeline_failures += 1
                            elif r.get("flag_bad"):
                                report.n_flagged_bad += 1
                            if (flags or r.get("flag_bad")) and len(report.reasons) < 20:
                                report.reasons.append(f"{r['spectrum_id']}: {r.get('reason', '')}")
                        bar.update(len(result.item_keys))
                    bar.update(len(todo) - bar.n)  # items another run claimed
            status = "finished"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        except DatabaseUnavailable:
            db_down = True
            raise
        finally:
            bar.close()
            report.status = status
            report.wall_seconds = time.perf_counter() - t_start
            store.finish_run(report.run_id, status, retry=not db_down)
        return report
    finally:
        store.close()
        _WORKER_PIPELINES.pop(spec, None)


def run_survey(pipeline_names: Sequence[str], inputs: Sequence[str | os.PathLike], db_url: str | None = None,
               out_dir: str | os.PathLike = "outputs", *, batch_size: int = 32, workers: int | None = None,
               scheduler: str | None = None, include_visits: bool = True, pipeline_kwargs: dict | None = None,
               export_formats: Sequence[str] = ("fits",), plots: bool = True, rerun: bool = False,
               progress: bool = True, db_retry_seconds: float = DEFAULT_RETRY_SECONDS,
               device: str | None = None, prefetch: int = 1) -> dict:
    """The survey job: every pipeline over the inputs into one database, then summaries and plots.

    Parameters
    ----------
    pipeline_names : sequence of str
        e.g. ``("apogeenet", "astronn")``.
    inputs : sequence of str
        apStar files or globs, list files, grid folders.
    db_url : str, optional
        Default: the SQLite file ``<out_dir>/stellarnn_results.sqlite``.
    out_dir : path
        Where the database (by default), ``<pipeline>_summary.<fmt>`` and the PNG plots go.
    pipeline_kwargs : dict, optional
        Per-pipeline constructor arguments: ``{"apogeenet": {...}, ...}``.
    export_formats : sequence of {"fits", "parquet", "csv"}
    db_retry_seconds : float
        See :func:`run_pipeline`.
    device : str, optional
        Every pipeline's ``device=`` (see :func:`run_pipeline`).
    prefetch : int
        Read-ahead with ``workers=0`` (see :func:`run_pipeline`).

    Returns
    -------
    dict
        ``{"db_url", "runs": {name: RunReport dict}, "exports": {name: {fmt: path}},
        "plots": {name: {"kiel": path | None, "flags": path}}}``
    """
    from .export import export_results
    from .plotting import write_survey_plots

    if not pipeline_names:
        raise ValueError("no pipeline given")
    device = check_device(device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    db_url = db_url or default_db_url(out)
    items = resolve_inputs(inputs)
    summary: dict = {"db_url": hide_password(db_url), "runs": {}, "exports": {}, "plots": {}}
    for name in pipeline_names:
        report = run_pipeline(name, items, db_url, out_dir=out, batch_size=batch_size, workers=workers,
                              scheduler=scheduler, include_visits=include_visits,
                              pipeline_kwargs=(pipeline_kwargs or {}).get(name), rerun=rerun, progress=progress,
                              db_retry_seconds=db_retry_seconds, device=device, prefetch=prefetch)
        summary["runs"][name] = report.to_dict()
        pname = report.pipeline
        summary["exports"][pname] = {fmt: str(export_results(db_url, pname, fmt, out / f"{pname}_summary.{fmt}",
                                                             version=report.version))
                                     for fmt in export_formats}
        if plots:
            summary["plots"][pname] = {kind: None if path is None else str(path) for kind, path in
                                       write_survey_plots(db_url, pname, out, report.version).items()}
    return summary
