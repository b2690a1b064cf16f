"""Tests of stellarnn.runner.executors: inline, local process pool and a Dask LocalCluster of 2 workers."""
from __future__ import annotations

import pytest

from stellarnn.runner.executors import DaskExecutor, InlineExecutor, LocalExecutor, make_executor
from stellarnn.runner.inputs import file_item
from stellarnn.runner.task import PipelineSpec, make_tasks
from test_runner_task import write_test_apstars

SPEC = PipelineSpec.create("runner_test_stats", modules=("test_runner_task",))


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    folder = tmp_path_factory.mktemp("exec")
    return [file_item(p) for p in write_test_apstars(folder, [0.3, 0.8, 1.0, 1.2, 1.4, 2.0], nvisits=[1, 2] * 3)]


def collect(executor, items, batch_size=2):
    with executor:
        results = list(executor.run(make_tasks(items, batch_size, SPEC, include_visits=True)))
    return results, {r["spectrum_id"]: r for res in results for r in res.rows}


def counting(tasks, pulled):
    for t in tasks:
        pulled.append(t.task_id)
        yield t


def test_inline_local_and_dask_give_the_same_rows(items):
    inline, rows_inline = collect(InlineExecutor(), items)
    assert sorted(r.task_id for r in inline) == [0, 1, 2] and len(rows_inline) == 6 + 3 * 2
    local, rows_local = collect(LocalExecutor(2), items)
    dask, rows_dask = collect(DaskExecutor(n_workers=2), items)
    for rows in (rows_local, rows_dask):
        assert rows.keys() == rows_inline.keys()
        for k, r in rows.items():
            assert r["teff"] == rows_inline[k]["teff"] and r["flag_bad"] == rows_inline[k]["flag_bad"]
    assert len({r.worker for r in local}) >= 1 and all(r.worker != inline[0].worker for r in local)
    assert sorted(r.task_id for r in dask) == [0, 1, 2]


def test_local_pool_keeps_few_tasks_in_flight(items):
    pulled: list[int] = []
    ex = LocalExecutor(1, max_in_flight=2)
    with ex:
        gen = ex.run(counting(make_tasks(items, 1, SPEC), pulled))
        next(gen)
        assert len(pulled) <= 2  # six tasks exist; only the in-flight ones were taken
        rest = list(gen)
    assert len(rest) == 5 and len(pulled) == 6


def test_make_executor_choices():
    assert isinstance(make_executor(0), InlineExecutor)
    assert isinstance(make_executor(3), LocalExecutor) and make_executor(3).n_workers == 3
    assert isinstance(make_executor(None, dask=True), DaskExecutor)
    ex = make_executor(4, scheduler="tcp://127.0.0.1:1")
    assert isinstance(ex, DaskExecutor) and ex.scheduler == "tcp://127.0.0.1:1"
    with pytest.raises(ValueError, match="workers"):
        make_executor(-1)
    with pytest.raises(ValueError, match="workers"):
        LocalExecutor(0)
    with pytest.raises(RuntimeError, match="outside its 'with' block"):
        next(LocalExecutor(1).run([]))


def test_pipeline_that_cannot_be_built_raises(items):
    bad = PipelineSpec.create("no_such_pipeline")
    with InlineExecutor() as ex, pytest.raises(KeyError, match="unknown pipeline"):
        list(ex.run(make_tasks(items[:1], 1, bad)))
