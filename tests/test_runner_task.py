"""Tests of stellarnn.runner.task; also home of the small test pipelines the other runner tests import.

The pipelines here are registered under ``runner_test_*`` names.  Worker processes (spawned
pools, Dask workers, the kill -9 subprocess) find them by importing this module (the runner
adds the defining module of a pipeline class to the worker imports).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from stellarnn.labels.pipeline import FieldInfo, register_pipeline
from stellarnn.runner.fields import RunnerFlag
from stellarnn.runner.inputs import file_item
from stellarnn.runner.task import (PipelineSpec, Task, clean_value, make_tasks, rows_from_pipeline, run_task,
                                   worker_pipeline)
from stellarnn.spectra import Spectrum, write_apstar

STATS_FIELDS = {
    "teff": FieldInfo("K", "test value: 4000 K + 1000 K x median flux", "float64"),
    "logg": FieldInfo("dex", "test value: 2 + median flux", "float64"),
    "fe_h": FieldInfo("dex", "test value: median flux - 1", "float64"),
    "median_flux": FieldInfo("", "median flux over pixels with ivar > 0", "float64"),
    "n_good": FieldInfo("", "pixels with ivar > 0", "int64"),
    "result_flags": FieldInfo("", "bit 0: median flux below 0.5, bit 2: fewer than 8000 good pixels", "int64"),
    "flag_bad": FieldInfo("", "any result_flags bit set", "bool"),
}


@register_pipeline("runner_test_stats")
class StatsPipeline:
    """Simple statistics of each spectrum (vectorised over the batch)."""

    name = "runner_test_stats"
    fields = STATS_FIELDS

    def __init__(self, version: str = "stats-1", log_path: str | None = None, sleep: float = 0.0):
        self.version = version
        self.log_path = log_path
        self.sleep = sleep

    def process(self, spectra):
        flux = np.stack([s.flux for s in spectra])
        good = np.stack([s.ivar for s in spectra]) > 0
        med = np.nanmedian(np.where(good, flux, np.nan), axis=1)
        n_good = good.sum(axis=1)
        bits = (med < 0.5).astype(np.int64) | 4 * (n_good < 8000)
        if self.sleep:
            time.sleep(self.sleep * len(spectra))
        if self.log_path:  # record what was computed (for the resume test), appended atomically per batch
            lines = "".join(f"{s.meta.get('source')}:{s.meta.get('row')}\n" for s in spectra)
            fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            os.write(fd, lines.encode())
            os.close(fd)
        return [{"teff": 4000.0 + 1000.0 * m, "logg": 2.0 + m, "fe_h": m - 1.0, "median_flux": m, "n_good": int(n),
                 "result_flags": int(b), "flag_bad": bool(b), "reason": "low flux" if b & 1 else ""}
                for m, n, b in zip(med, n_good, bits)]


@register_pipeline("runner_test_flaky")
class FlakyPipeline:
    """Raises on the whole batch when any spectrum has negative median flux (breaking the contract)."""

    name = "runner_test_flaky"
    version = "flaky-1"
    fields = {"median_flux": FieldInfo("", "median flux", "float64")}

    def process(self, spectra):
        med = np.median(np.stack([s.flux for s in spectra]), axis=1)
        if np.any(med < 0):
            raise ArithmeticError("negative median flux")
        return [{"median_flux": m} for m in med]


@register_pipeline("runner_test_short")
class ShortPipeline:
    """Returns rows that are not dicts for spectra with median flux above 1 (malformed output)."""

    name = "runner_test_short"
    version = "short-1"
    fields = {"median_flux": FieldInfo("", "median flux", "float64")}

    def process(self, spectra):
        med = np.median(np.stack([s.flux for s in spectra]), axis=1)
        return [None if m > 1 else {"median_flux": m} for m in med]


def write_test_apstars(folder: Path, levels, nvisits=None, seed: int = 0) -> list[Path]:
    """apStar files whose flux is ``level`` + 1 % noise; ``nvisits[i]`` visits (1: a single row)."""
    rng = np.random.default_rng(seed)
    paths = []
    for i, level in enumerate(levels):
        nv = 1 if nvisits is None else nvisits[i]
        rows = 1 if nv == 1 else nv + 2
        flux = level + 0.01 * rng.standard_normal((rows, 8575))
        paths.append(write_apstar(folder / f"apStar-test-{i:04d}.fits", flux, np.full_like(flux, 0.01),
                                  header={"OBJID": f"2M{i:08d}", "NVISITS": nv}))
    return paths


def spectrum(level: float) -> Spectrum:
    wl = np.linspace(15000, 17000, 8575)
    return Spectrum(wl, np.full(8575, level), np.ones(8575), None, {"source": "mem", "row": 0})


def test_run_task_rows_identity_and_timing(tmp_path):
    paths = write_test_apstars(tmp_path, [1.0, 0.2, 1.5], nvisits=[3, 1, 2])
    (tmp_path / "broken.fits").write_bytes(b"not fits at all")
    items = tuple(file_item(p) for p in paths + [tmp_path / "broken.fits"])
    task = Task(7, items, PipelineSpec.create("runner_test_stats"), include_visits=True, torch_threads=0)
    res = run_task(task)
    assert res.task_id == 7 and res.item_keys == [it.key for it in items]
    # 1 + 3 visits, 1 (single visit: no duplicate), 1 + 2 visits, 1 unreadable
    assert len(res.rows) == 4 + 1 + 3 + 1 and res.n_spectra == 8
    rows = {r["spectrum_id"]: r for r in res.rows}
    assert [r["row"] for r in res.rows if r["item"] == items[0].key] == [0, 2, 3, 4]
    good = rows[f"{items[0].key}:3"]
    assert good["kind"] == "visit" and good["object_id"] == "2M00000000" and good["runner_flags"] == 0
    assert good["median_flux"] == pytest.approx(1.0, abs=0.002) and good["teff"] == pytest.approx(5000, abs=2)
    assert isinstance(good["n_good"], int) and good["n_good"] == 8575
    low = rows[f"{items[1].key}:0"]
    assert low["flag_bad"] is True and low["result_flags"] == 1 and low["reason"] == "low flux"
    bad = rows[f"{items[3].key}:-1"]
    assert bad["runner_flags"] == RunnerFlag.INPUT_UNREADABLE and bad["kind"] == "unreadable"
    assert "not a readable FITS file" in bad["reason"] and bad["teff"] is None
    assert res.read_seconds > 0 and res.process_seconds > 0 and ":" in res.worker


def test_pipeline_exception_isolated_to_culprit():
    pipe = FlakyPipeline()
    rows = rows_from_pipeline(pipe, [spectrum(1.0), spectrum(-1.0), spectrum(2.0)], pipe.fields)
    assert [r["runner_flags"] for r in rows] == [0, RunnerFlag.PIPELINE_EXCEPTION, 0]
    assert rows[0]["median_flux"] == 1.0 and rows[2]["median_flux"] == 2.0
    assert rows[1]["median_flux"] is None and "ArithmeticError: negative median flux" in rows[1]["reason"]


def test_single_spectrum_exception_in_task(tmp_path):
    (path,) = write_test_apstars(tmp_path, [-1.0])
    res = run_task(Task(0, (file_item(path),), PipelineSpec.create("runner_test_flaky"), torch_threads=0))
    assert len(res.rows) == 1 and res.rows[0]["runner_flags"] == RunnerFlag.PIPELINE_EXCEPTION


def test_malformed_rows_flagged():
    pipe = ShortPipeline()
    rows = rows_from_pipeline(pipe, [spectrum(0.5), spectrum(3.0)], pipe.fields)
    assert rows[0]["runner_flags"] == 0 and rows[0]["median_flux"] == 0.5
    assert rows[1]["runner_flags"] == RunnerFlag.PIPELINE_NO_ROW and "NoneType" in rows[1]["reason"]


def test_clean_value_types():
    f, i, b, s = (FieldInfo("", "", d) for d in ("float32", "int64", "bool", "str"))
    assert clean_value(np.float32(1.5), f) == 1.5 and clean_value(np.nan, f) is None
    assert clean_value(np.int16(3), i) == 3 and type(clean_value(np.int16(3), i)) is int
    assert clean_value(np.bool_(True), b) is True and clean_value("x", s) == "x"
    assert clean_value(None, f) is None and clean_value("not a number", f) is None


def test_make_tasks_batches_lazily():
    items = (file_item(f"/tmp/f{i}.fits") for i in range(7))
    spec = PipelineSpec.create("runner_test_stats")
    tasks = list(make_tasks(items, 3, spec, first_id=10))
    assert [t.task_id for t in tasks] == [10, 11, 12] and [len(t.items) for t in tasks] == [3, 3, 1]
    with pytest.raises(ValueError, match="batch_size"):
        next(make_tasks([], 0, spec))


def test_worker_pipeline_built_once_and_unknown_name():
    spec = PipelineSpec.create("runner_test_stats", {"version": "once"})
    assert worker_pipeline(spec) is worker_pipeline(spec)
    assert worker_pipeline(spec).version == "once"
    with pytest.raises(KeyError, match="unknown pipeline"):
        PipelineSpec.create("no_such_pipeline").build()
