"""Tests of stellarnn.runner.prefetch (read-ahead thread) and the inline executor's prefetch."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from stellarnn.runner.executors import InlineExecutor, make_executor
from stellarnn.runner.fields import RunnerFlag
from stellarnn.runner.inputs import file_item
from stellarnn.runner.prefetch import READ_AHEAD_THREAD, read_ahead
from stellarnn.runner.task import PipelineSpec, make_tasks
from test_runner_task import write_test_apstars

SPEC = PipelineSpec.create("runner_test_stats", modules=("test_runner_task",))
TESTS_DIR = Path(__file__).resolve().parent


def read_ahead_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == READ_AHEAD_THREAD and t.is_alive()]


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    folder = tmp_path_factory.mktemp("prefetch")
    paths = write_test_apstars(folder, [0.3, 0.8, 1.0, 1.2, 1.4], nvisits=[1, 2, 1, 2, 1])
    corrupt = folder / "apStar-zzz-corrupt.fits"
    corrupt.write_bytes(b"SIMPLE  =   garbage")
    return [file_item(p) for p in paths[:2]] + [file_item(corrupt)] + [file_item(p) for p in paths[2:]]


@pytest.mark.parametrize("depth", [1, 3])
def test_read_ahead_keeps_order_reads_in_its_thread_and_bounds_the_lead(depth):
    consumed, read_in = [], []

    def source():
        for i in range(7):
            consumed.append(i)
            yield i

    def read(i):
        read_in.append(threading.current_thread().name)
        return i * i

    out = []
    for task, value in read_ahead(source(), read, depth):
        assert len(consumed) - len(out) <= depth + 1  # the task being yielded plus ``depth`` ahead
        out.append((task, value))
    assert out == [(i, i * i) for i in range(7)]
    assert set(read_in) == {READ_AHEAD_THREAD}
    assert not read_ahead_threads()
    assert list(read_ahead(range(3), read, 0)) == [(0, 0), (1, 1), (2, 4)]  # no thread: read in the caller
    assert read_in[-1] == threading.current_thread().name
    with pytest.raises(ValueError, match="depth"):
        list(read_ahead(range(3), read, -1))


def test_read_ahead_raises_a_read_error_at_its_task_and_stops_its_thread():
    def read(i):
        if i == 2:
            raise OSError("disk gone")
        return i

    got = []
    with pytest.raises(OSError, match="disk gone"):
        for task, value in read_ahead(range(5), read, 2):
            got.append(value)
    assert got == [0, 1]
    assert not read_ahead_threads()


def test_abandoned_read_ahead_stops_its_thread():
    started = threading.Event()

    def read(i):
        started.set()
        time.sleep(0.05)
        return i

    gen = read_ahead(range(100), read, 4)
    assert next(gen) == (0, 0) and started.is_set()
    gen.close()
    assert not read_ahead_threads()


def test_inline_rows_identical_with_and_without_prefetch_and_unreadable_file_is_its_own_row(items):
    results = {}
    for prefetch in (0, 1, 3):
        with InlineExecutor(prefetch) as ex:
            out = list(ex.run(make_tasks(items, 2, SPEC, include_visits=True)))
        assert [r.task_id for r in out] == [0, 1, 2]
        results[prefetch] = [row for r in out for row in r.rows]
        assert all(r.read_seconds > 0 for r in out)
    assert results[1] == results[0] and results[3] == results[0]
    bad = [r for r in results[1] if r["runner_flags"]]
    assert len(bad) == 1 and bad[0]["runner_flags"] == RunnerFlag.INPUT_UNREADABLE
    assert "corrupt" in bad[0]["spectrum_id"] and "SIMPLE" in bad[0]["reason"]
    assert len(results[1]) == 1 + 3 + 1 + 1 + 3 + 1  # combined and visits of the five files, the corrupt row
    assert not read_ahead_threads()
    assert make_executor(0, prefetch=2).prefetch == 2
    with pytest.raises(ValueError, match="prefetch"):
        InlineExecutor(-1)


@pytest.fixture
def interrupting_pipeline(monkeypatch):
    """The stats pipeline raising KeyboardInterrupt on its second batch."""
    from test_runner_task import StatsPipeline

    calls = []
    original = StatsPipeline.process

    def process(self, spectra):
        calls.append(len(spectra))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, spectra)

    monkeypatch.setattr(StatsPipeline, "process", process)
    return calls


def test_interrupted_inline_run_leaves_no_read_ahead_thread(items, interrupting_pipeline):
    with pytest.raises(KeyboardInterrupt):
        with InlineExecutor(2) as ex:
            for _ in ex.run(make_tasks(items, 1, SPEC)):
                pass
    assert len(interrupting_pipeline) == 2
    assert not read_ahead_threads()


def test_interrupted_runner_process_exits_promptly(tmp_path):
    """SIGINT to ``runner run --workers 0`` with read-ahead: the process ends (no thread keeps it alive)."""
    import sqlalchemy as sa

    write_test_apstars(tmp_path, [0.5 + 0.1 * i for i in range(8)], nvisits=[1] * 8)
    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    # SIGINT's default handler restored first: a process started from a non-interactive shell's background job
    # inherits SIGINT ignored, and then Python installs no KeyboardInterrupt handler (the run would simply finish)
    cmd = [sys.executable, "-c", "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                                 "from stellarnn.cli import main; sys.exit(main())",
           "runner", "run", "runner_test_stats", str(tmp_path / "apStar-*.fits"), "--db", db, "--workers", "0",
           "--batch-size", "1", "--prefetch", "2", "--import", "test_runner_task", "--option", "sleep=2.0", "-q"]
    # 8 items x 2 s: the run cannot finish between the first item and the SIGINT, even on a loaded machine
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]))
    with open(tmp_path / "run.out", "wb") as out:
        proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=out, stderr=subprocess.STDOUT)
    engine = sa.create_engine(db)
    try:
        deadline = time.monotonic() + 120
        done = 0
        while time.monotonic() < deadline and proc.poll() is None and done < 1:
            time.sleep(0.2)
            try:
                with engine.connect() as conn:
                    done = conn.execute(sa.text("SELECT count(*) FROM runner_items")).scalar()
            except sa.exc.OperationalError:
                continue
        assert proc.poll() is None, (tmp_path / "run.out").read_text(errors="replace")[-2000:]
        os.kill(proc.pid, signal.SIGINT)
        t0 = time.monotonic()
        proc.wait(20)
        assert time.monotonic() - t0 < 20
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        engine.dispose()
    assert proc.returncode != 0  # interrupted, not finished
