"""Tests of stellarnn.runner.engine: end-to-end runs, faults, rerun, kill -9 and resume, the survey job."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from stellarnn.runner.engine import run_pipeline, run_survey
from stellarnn.runner.fields import RunnerFlag
from stellarnn.runner.store import ResultsStore
from test_runner_inputs import write_test_grid
from test_runner_task import write_test_apstars

TESTS_DIR = Path(__file__).resolve().parent


def all_rows(db_url, pipeline="runner_test_stats"):
    with ResultsStore(db_url) as store:
        return [r for part in store.iter_results(pipeline) for r in part]


def test_run_with_corrupt_file_then_skip_then_rerun(tmp_path):
    paths = write_test_apstars(tmp_path, [0.3, 1.0, 1.2], nvisits=[1, 3, 1])
    (tmp_path / "apStar-zzz-corrupt.fits").write_bytes(b"SIMPLE  =   garbage")
    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    rep = run_pipeline("runner_test_stats", [str(tmp_path / "apStar-*.fits")], db, workers=0, batch_size=2,
                       include_visits=True, progress=False)
    assert rep.status == "finished" and rep.n_items == 4 and rep.n_items_done == 4
    assert rep.n_rows == 1 + 4 + 1 + 1 and rep.n_unreadable == 1 and rep.n_spectra == 6
    assert rep.process_seconds > 0 and rep.read_seconds > 0
    assert rep.n_flagged_bad == 1 and rep.n_pipeline_failures == 0  # the 0.3 file: low flux, flagged bad
    assert any("low flux" in reason for reason in rep.reasons)
    rows = all_rows(db)
    assert len(rows) == 7 and len({r["spectrum_id"] for r in rows}) == 7
    bad = [r for r in rows if r["runner_flags"]]
    assert len(bad) == 1 and bad[0]["runner_flags"] == RunnerFlag.INPUT_UNREADABLE and "SIMPLE" in bad[0]["reason"]
    again = run_pipeline("runner_test_stats", [str(tmp_path / "apStar-*.fits")], db, workers=0,
                         include_visits=True, progress=False)
    assert again.n_items_skipped == 4 and again.n_items_done == 0 and len(all_rows(db)) == 7
    forced = run_pipeline("runner_test_stats", [str(tmp_path / "apStar-*.fits")], db, workers=0,
                          include_visits=True, rerun=True, progress=False)
    rows = all_rows(db)
    assert forced.n_items_done == 4 and len(rows) == 7 and {r["run_id"] for r in rows} == {forced.run_id}
    other = run_pipeline("runner_test_stats", paths[:1], db, workers=0, pipeline_kwargs={"version": "stats-2"},
                         progress=False)
    assert other.version == "stats-2" and other.n_items_done == 1 and len(all_rows(db)) == 8


def test_grid_input_on_postgres_or_sqlite(tmp_path):
    write_test_grid(tmp_path / "grid")
    db = os.environ.get("STELLARNN_TEST_POSTGRES_URL") or f"sqlite:///{tmp_path / 'g.sqlite'}"
    rep = run_pipeline("runner_test_stats", [tmp_path / "grid"], db, workers=0, batch_size=3, progress=False,
                       pipeline_kwargs={"version": f"grid-{os.getpid()}-{time.time_ns()}"})
    assert rep.n_items == 4 and rep.n_rows == 4 and rep.n_unreadable == 0
    with ResultsStore(db) as store:
        rows = [r for part in store.iter_results("runner_test_stats", rep.version) for r in part]
    assert sorted(r["row"] for r in rows) == [0, 2, 3, 4] and all(r["kind"] == "synthetic" for r in rows)
    assert all(0.8 < r["median_flux"] < 1.0 for r in rows)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="no file matches"):
        run_pipeline("runner_test_stats", [str(tmp_path / "*.fits")], workers=0, out_dir=tmp_path)
    (p,) = write_test_apstars(tmp_path, [1.0])
    with pytest.raises(KeyError, match="unknown pipeline"):
        run_pipeline("no_such_pipeline", [p], workers=0, out_dir=tmp_path)
    with pytest.raises(ValueError, match="no pipeline"):
        run_survey([], [p], out_dir=tmp_path)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        run_pipeline("runner_test_stats", [p], workers=0, out_dir=tmp_path, batch_size=0)
    assert not (tmp_path / "stellarnn_results.sqlite").exists()  # rejected before any run is recorded


def comparable(rows):
    """Rows keyed by spectrum_id without the columns that name the run that wrote them."""
    return {r["spectrum_id"]: {k: v for k, v in r.items() if k not in ("run_id", "updated_at")} for r in rows}


def test_kill_9_workers_die_then_resume_gives_the_uninterrupted_table(tmp_path):
    """SIGKILL of the runner alone (not its process group): its pool workers and the
    multiprocessing resource tracker must follow within 5 s; the resumed table must equal an
    uninterrupted run's; the killed run is marked interrupted by the resuming one."""
    import psutil

    n = 12
    write_test_apstars(tmp_path, [0.3 + 0.1 * i for i in range(n)], nvisits=[1, 2] * (n // 2))
    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    log1, log2 = tmp_path / "computed1.log", tmp_path / "computed2.log"
    cmd = [sys.executable, "-c", "import sys; from stellarnn.cli import main; sys.exit(main())",
           "runner", "run", "runner_test_stats", str(tmp_path / "apStar-*.fits"), "--db", db, "--workers", "2",
           "--batch-size", "1", "--visits", "--import", "test_runner_task", "--option", "sleep=0.3",
           "--option", f"log_path={log1}", "-q"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]))
    out_path = tmp_path / "run.out"  # a file, not a pipe: surviving workers would hold a pipe open
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=out, stderr=subprocess.STDOUT)
    engine = sa.create_engine(db)
    deadline = time.monotonic() + 150
    done = 0
    children: list = []
    alive: list = []
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            try:
                with engine.connect() as conn:
                    done = conn.execute(sa.text("SELECT count(*) FROM runner_items")).scalar()
            except sa.exc.OperationalError:
                continue  # tables not created yet
            if done >= 3:
                children = psutil.Process(proc.pid).children(recursive=True)
                os.kill(proc.pid, signal.SIGKILL)  # the runner only: nothing of it runs afterwards
                break
        t_kill = time.monotonic()
        _, alive = psutil.wait_procs(children, timeout=5)
        outlived = time.monotonic() - t_kill
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        names = []
        for c in alive:  # never leave them behind, even when the test fails
            try:
                names.append(" ".join(c.cmdline())[-80:])
                c.kill()
            except psutil.Error:
                pass
        proc.wait(30)
        engine.dispose()
    output = out_path.read_text(errors="replace")
    assert proc.returncode == -signal.SIGKILL, f"the run ended before it was killed: {output[-2000:]}"
    assert len(children) >= 3  # two pool workers and the resource tracker
    assert not alive, f"{len(alive)} of {len(children)} children outlived the killed runner: {names}"
    assert outlived < 5
    assert 3 <= done < n
    committed = {r["spectrum_id"] for r in all_rows(db)}
    with ResultsStore(db) as store:
        assert [r["status"] for r in store.runs_summary()] == ["running"]  # the killed run never finished
    rep = run_pipeline("runner_test_stats", [str(tmp_path / "apStar-*.fits")], db, workers=0, batch_size=5,
                       include_visits=True, pipeline_kwargs={"sleep": 0.0, "log_path": str(log2)}, progress=False)
    assert rep.status == "finished" and rep.n_items_skipped == len({c.rsplit(":", 1)[0] for c in committed})
    with ResultsStore(db) as store:
        assert [r["status"] for r in store.runs_summary()] == ["interrupted", "finished"]
    recomputed = {line.strip() for line in log2.read_text().splitlines()}
    assert not recomputed & committed  # nothing finished was recomputed
    reference = f"sqlite:///{tmp_path / 'uninterrupted.sqlite'}"
    run_pipeline("runner_test_stats", [str(tmp_path / "apStar-*.fits")], reference, workers=0, batch_size=4,
                 include_visits=True, progress=False)
    resumed, uninterrupted = comparable(all_rows(db)), comparable(all_rows(reference))
    assert len(uninterrupted) == n // 2 * (1 + 3) and resumed == uninterrupted


def test_two_runners_on_one_sqlite_file_split_the_work(tmp_path):
    """Started together on a fresh file: each item processed exactly once in total, table complete."""
    import threading

    n = 16
    write_test_apstars(tmp_path, [0.4 + 0.05 * i for i in range(n)])
    db = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    barrier = threading.Barrier(2)
    reports, errors = [], []

    def runner(log):
        try:
            barrier.wait()
            reports.append(run_pipeline("runner_test_stats", [str(tmp_path / "apStar-*.fits")], db, workers=0,
                                        batch_size=1, progress=False,
                                        pipeline_kwargs={"sleep": 0.05, "log_path": str(log)}))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=runner, args=(log,)) for log in logs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[0]
    computed = [[line.strip() for line in log.read_text().splitlines()] if log.exists() else [] for log in logs]
    assert all(computed), "both runners should have taken part"
    assert len(computed[0]) + len(computed[1]) == n and len(set(computed[0]) | set(computed[1])) == n
    assert sum(r.n_items_done for r in reports) == n
    # each runner accounts for every item: done by itself, claimed by the other, or already finished by the other
    # when it listed the work (a runner that starts late, e.g. on a loaded machine, skips those as done)
    for r in reports:
        assert r.n_items_done + r.n_items_claimed_elsewhere + r.n_items_skipped == n, r
    assert sum(r.n_items_claimed_elsewhere + r.n_items_skipped for r in reports) == n
    rows = all_rows(db)
    assert len(rows) == n and len({r["spectrum_id"] for r in rows}) == n and all(r["teff"] for r in rows)


def test_database_outage_stops_with_one_line_then_resume_loses_nothing(tmp_path):
    from stellarnn.runner.store import DatabaseUnavailable
    from test_runner_store import FailingWrites

    paths = write_test_apstars(tmp_path, [0.4 + 0.1 * i for i in range(6)])
    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    with FailingWrites() as outage:
        outage.active = False
        calls = {"n": 0}
        original = ResultsStore.write_task

        def write_task(self, *args, **kwargs):  # the database goes away after two tasks
            calls["n"] += 1
            outage.active = calls["n"] > 2
            return original(self, *args, **kwargs)

        ResultsStore.write_task = write_task
        try:
            with pytest.raises(DatabaseUnavailable, match="unavailable for 0.5 s") as err:
                run_pipeline("runner_test_stats", paths, db, workers=0, batch_size=1, progress=False,
                             db_retry_seconds=0.5)
        finally:
            ResultsStore.write_task = original
    assert "\n" not in str(err.value) and outage.n_failed >= 2
    assert len(all_rows(db)) == 2
    rep = run_pipeline("runner_test_stats", paths, db, workers=0, batch_size=4, progress=False)
    assert rep.n_items_skipped == 2 and rep.n_items_done == 4
    reference = f"sqlite:///{tmp_path / 'ref.sqlite'}"
    run_pipeline("runner_test_stats", paths, reference, workers=0, progress=False)
    assert comparable(all_rows(db)) == comparable(all_rows(reference))


def test_run_survey_outputs(tmp_path):
    write_test_apstars(tmp_path / "data", [0.3, 1.0, 1.2, 1.3], nvisits=[1, 2, 1, 1])
    out = tmp_path / "out"
    summary = run_survey(["runner_test_stats", "runner_test_flaky"], [str(tmp_path / "data" / "*.fits")],
                         out_dir=out, workers=0, export_formats=("fits", "csv"), progress=False)
    assert Path(summary["db_url"].split("///", 1)[1]) == out / "stellarnn_results.sqlite"
    assert summary["runs"]["runner_test_stats"]["n_rows"] == 6 and summary["runs"]["runner_test_flaky"]["n_rows"] == 6
    for name in ("runner_test_stats", "runner_test_flaky"):
        assert Path(summary["exports"][name]["fits"]).stat().st_size > 0
        assert Path(summary["exports"][name]["csv"]).read_text().count("\n") == 7
        assert Path(summary["plots"][name]["flags"]).read_bytes()[:4] == b"\x89PNG"
    assert Path(summary["plots"]["runner_test_stats"]["kiel"]).exists()
    assert summary["plots"]["runner_test_flaky"]["kiel"] is None  # no teff/logg columns
