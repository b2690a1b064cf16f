"""Tests of stellarnn.runner.store against SQLite and a real PostgreSQL server.

PostgreSQL tests need ``STELLARNN_TEST_POSTGRES_URL`` (CI sets it from scripts/ci_postgres.sh,
which installs and starts a server); without it they are skipped with that reason.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest
import sqlalchemy as sa

from stellarnn.labels.pipeline import FieldInfo
from stellarnn.runner.fields import RUNNER_FIELDS
from stellarnn.runner.store import (DatabaseUnavailable, ResultsStore, default_db_url, hide_password, mask_passwords,
                                    masked_command, normalise_db_url, process_alive, results_table_name)
from stellarnn.runner.task import TaskResult

POSTGRES_URL = os.environ.get("STELLARNN_TEST_POSTGRES_URL")
FIELDS = {"teff": FieldInfo("K", "effective temperature", "float64"),
          "result_flags": FieldInfo("", "bits", "int64"), "flag_bad": FieldInfo("", "bad", "bool")}


def postgres_or_skip() -> str:
    if not POSTGRES_URL:
        pytest.skip("no PostgreSQL server configured: set STELLARNN_TEST_POSTGRES_URL "
                    "(export STELLARNN_TEST_POSTGRES_URL=\"$(bash scripts/ci_postgres.sh)\")")
    return POSTGRES_URL


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    """(store URL, unique pipeline name); PostgreSQL tables of the test are dropped afterwards."""
    name = f"t{uuid.uuid4().hex[:10]}"
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'r.sqlite'}", name
        return
    url = postgres_or_skip()
    yield url, name
    engine = sa.create_engine(normalise_db_url(url))
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {results_table_name(name)}"))
        for t in ("runner_items", "runner_fields", "runner_runs"):
            conn.execute(sa.text(f"DELETE FROM {t} WHERE pipeline = :p"), {"p": name})
    engine.dispose()


def rows_for(item: str, rows: list[int], teff: float, flags: int = 0) -> list[dict]:
    return [{"spectrum_id": f"{item}:{r}", "item": item, "source": item, "kind": "combined" if r == 0 else "visit",
             "row": r, "object_id": "2M0", "runner_flags": flags, "reason": "", "teff": teff + r,
             "result_flags": 0, "flag_bad": False} for r in rows]


def result(task_id: int, items: dict[str, list[dict]]) -> TaskResult:
    return TaskResult(task_id, list(items), [r for rows in items.values() for r in rows], 1, 0.1, 0.2, "host:1")


def test_urls(tmp_path):
    assert default_db_url(tmp_path) == f"sqlite:///{tmp_path / 'stellarnn_results.sqlite'}"
    assert normalise_db_url(tmp_path / "x.db") == f"sqlite:///{tmp_path / 'x.db'}"
    assert normalise_db_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert results_table_name("APOGEENet-3") == "results_apogeenet_3"
    with pytest.raises(ValueError, match="cannot use database URL"):
        ResultsStore("nosuchdialect://x/y")


def test_write_rerun_updates_never_duplicates(db):
    url, name = db
    with ResultsStore(url) as store:
        store.ensure_pipeline(name, "v1", FIELDS)
        run1 = store.start_run(name, "v1", "inline", 1, 2, 0)
        store.write_task(run1, name, "v1", result(0, {"a.fits": rows_for("a.fits", [0, 2, 3], 5000.0),
                                                      "b.fits": rows_for("b.fits", [0], 4000.0)}))
        assert store.count(name) == 4 and store.done_items(name, "v1") == {"a.fits", "b.fits"}
        run2 = store.start_run(name, "v1", "inline", 1, 2, 0)
        store.write_task(run2, name, "v1", result(0, {"a.fits": rows_for("a.fits", [0, 2, 3], 6000.0)}))
        assert store.count(name) == 4
        rows = {r["spectrum_id"]: r for part in store.iter_results(name) for r in part}
        assert rows["a.fits:2"]["teff"] == 6002.0 and rows["a.fits:2"]["run_id"] == run2
        assert rows["b.fits:0"]["teff"] == 4000.0 and rows["b.fits:0"]["run_id"] == run1
        # a new model version is a new row per spectrum, the old version's rows stay
        store.ensure_pipeline(name, "v2", FIELDS)
        run3 = store.start_run(name, "v2", "inline", 1, 1, 0)
        store.write_task(run3, name, "v2", result(0, {"b.fits": rows_for("b.fits", [0], 4100.0)}))
        assert store.count(name) == 5 and store.count(name, "v2") == 1
        assert store.done_items(name, "v2") == {"b.fits"} and store.latest_version(name) == "v2"
        timing = store.batch_timing(run1)
        assert len(timing) == 1 and timing[0]["n_items"] == 2 and timing[0]["process_seconds"] == 0.2
        assert timing[0]["write_seconds"] > 0


def test_repaired_file_replaces_unreadable_row(db):
    url, name = db
    with ResultsStore(url) as store:
        store.ensure_pipeline(name, "v1", FIELDS)
        bad = [{"spectrum_id": "c.fits:-1", "item": "c.fits", "source": "c.fits", "kind": "unreadable", "row": -1,
                 "object_id": "c", "runner_flags": 1, "reason": "truncated", "teff": None}]
        store.write_task(store.start_run(name, "v1", "x", 1, 1, 0), name, "v1", result(0, {"c.fits": bad}))
        run2 = store.start_run(name, "v1", "x", 1, 1, 0)
        store.write_task(run2, name, "v1", result(0, {"c.fits": rows_for("c.fits", [0], 4500.0)}))
        rows = [r for part in store.iter_results(name) for r in part]
        assert [(r["spectrum_id"], r["runner_flags"]) for r in rows] == [("c.fits:0", 0)]


def test_schema_glossary_and_new_columns(db):
    url, name = db
    with ResultsStore(url) as store:
        store.ensure_pipeline(name, "v1", FIELDS)
        g = store.glossary(name, "v1")
        assert list(g)[:len(RUNNER_FIELDS)] == list(RUNNER_FIELDS)
        assert g["teff"] == FieldInfo("K", "effective temperature", "float64")
        table = store.results_table(name)
        assert isinstance(table.c.flag_bad.type, sa.Boolean) and isinstance(table.c.result_flags.type, sa.BigInteger)
        if not store.is_sqlite:  # column comments carry the glossary on servers that keep them
            comments = {c["name"]: c.get("comment") for c in sa.inspect(store.engine).get_columns(table.name)}
            assert comments["teff"] == "effective temperature [K]"
        more = dict(FIELDS, logg=FieldInfo("dex", "surface gravity", "float64"))
        store.ensure_pipeline(name, "v2", more)
        assert "logg" in ResultsStore(url).results_table(name).c
        assert "logg" not in store.glossary(name, "v1") and "logg" in store.glossary(name, "v2")
        with pytest.raises(KeyError, match="no results for pipeline"):
            store.results_table("never_ran_" + name)
        with pytest.raises(ValueError, match="clash"):
            store.ensure_pipeline(name, "v3", {"row": FieldInfo("", "x", "int64")})


def test_runs_are_recorded(db):
    url, name = db
    with ResultsStore(url) as store:
        store.ensure_pipeline(name, "v1", FIELDS)
        run = store.start_run(name, "v1", "dask", 2, 10, 3)
        store.finish_run(run, "finished")
        mine = [r for r in store.runs_summary() if r["pipeline"] == name]
        assert len(mine) == 1 and mine[0]["status"] == "finished" and mine[0]["n_items_skipped"] == 3
        assert mine[0]["finished_at"] >= mine[0]["started_at"]


def test_unreachable_postgres_is_a_clear_error():
    with pytest.raises(ValueError, match="cannot open database"):
        ResultsStore("postgresql://nobody@127.0.0.1:1/none")


# ------------------------------------------------ issue 20: masking, interrupted runs, claims, outages, races


class FailingWrites:
    """Make every statement containing ``marker`` fail like a lost connection while ``active``.

    Installed on all SQLAlchemy engines; raises the DB-API's own OperationalError so SQLAlchemy
    wraps it exactly as it wraps a real server failure.
    """

    def __init__(self, marker: str = "INSERT INTO results_"):
        self.marker = marker
        self.active = True
        self.n_failed = 0

    def __call__(self, conn, cursor, statement, params, context, executemany):
        if self.active and self.marker in statement:
            self.n_failed += 1
            message = ("disk I/O error (injected)" if conn.dialect.name == "sqlite"
                       else "server closed the connection unexpectedly (injected)")
            raise conn.dialect.dbapi.OperationalError(message)

    def __enter__(self):
        sa.event.listen(sa.engine.Engine, "before_cursor_execute", self)
        return self

    def __exit__(self, *exc):
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", self)
        return False


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_passwords_are_masked_in_urls_and_commands(tmp_path):
    url = "postgresql+psycopg://alice:s3cr%40t@db.example:5432/survey"
    assert hide_password(url) == "postgresql+psycopg://alice:***@db.example:5432/survey"
    assert "s3cr" not in mask_passwords(f"--db={url} --db2 postgresql://bob:pw@h/x")
    assert mask_passwords("postgresql://bob:pw@h/x") == "postgresql://bob:***@h/x"
    assert mask_passwords("sqlite:////tmp/a.sqlite user:pass@ok") == "sqlite:////tmp/a.sqlite user:pass@ok"
    cmd = masked_command(["stellarnn", "runner", "run", "p", "--db", url, f"--db={url}"])
    assert "s3cr" not in cmd and cmd.count("alice:***@") == 2
    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    with ResultsStore(db) as store:
        store.ensure_pipeline("pw", "v1", FIELDS)
        run = store.start_run("pw", "v1", "inline", 1, 1, 0, command=["stellarnn", "--db", url])
        (row,) = [r for r in store.runs_summary() if r["run_id"] == run]
    assert row["command"] == "stellarnn --db postgresql+psycopg://alice:***@db.example:5432/survey"
    assert row["pid"] == os.getpid() and row["host"] == socket.gethostname() and row["heartbeat_at"] > 0


def test_killed_runs_are_marked_interrupted(tmp_path):
    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    with ResultsStore(db) as store:
        store.ensure_pipeline("k", "v1", FIELDS)
        killed = store.start_run("k", "v1", "local", 2, 5, 0)
        alive = store.start_run("k", "v1", "local", 2, 5, 0)
        other_host = store.start_run("k", "v1", "local", 2, 5, 0)
        with store.engine.begin() as conn:
            conn.execute(store.runs.update().where(store.runs.c.run_id == killed).values(pid=dead_pid()))
            conn.execute(store.runs.update().where(store.runs.c.run_id == alive).values(pid=os.getppid()))
            conn.execute(store.runs.update().where(store.runs.c.run_id == other_host)
                         .values(pid=dead_pid(), host="elsewhere.invalid"))
        assert store.start_run("k", "v1", "local", 2, 5, 0) > other_host  # marks before recording itself
        status = {r["run_id"]: r["status"] for r in store.runs_summary()}
    assert status[killed] == "interrupted"
    assert status[alive] == "running" and status[other_host] == "running"  # alive, or not ours to judge
    assert process_alive(os.getpid()) and not process_alive(dead_pid())
    assert not process_alive(os.getpid(), started_before=time.time() - 1e6)  # pid reused since


def test_older_database_gets_the_new_run_columns(tmp_path):
    path = tmp_path / "old.sqlite"
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:  # runner_runs as the first release created it
        conn.execute(sa.text("CREATE TABLE runner_runs (run_id INTEGER PRIMARY KEY, pipeline TEXT NOT NULL, "
                             "version TEXT NOT NULL, started_at FLOAT, finished_at FLOAT, status TEXT, "
                             "executor TEXT, n_workers INTEGER, n_items INTEGER, n_items_skipped INTEGER, "
                             "host TEXT, command TEXT)"))
        conn.execute(sa.text("INSERT INTO runner_runs (pipeline, version, status) VALUES ('o', 'v', 'running')"))
    engine.dispose()
    with ResultsStore(path) as store:
        store.ensure_pipeline("o", "v", FIELDS)
        run = store.start_run("o", "v", "inline", 1, 1, 0)
        assert store.claim_items(run, "o", "v", ["a"]) == ["a"]  # the old run (no heartbeat) holds nothing
        runs = store.runs_summary()
    assert [r["status"] for r in runs] == ["running", "running"] and runs[1]["pid"] == os.getpid()


def test_claims_split_items_between_concurrent_runs(db):
    url, name = db
    with ResultsStore(url, claim_lease_seconds=60) as store:
        store.ensure_pipeline(name, "v1", FIELDS)
        a = store.start_run(name, "v1", "local", 1, 3, 0)
        b = store.start_run(name, "v1", "local", 1, 3, 0)
        assert store.claim_items(a, name, "v1", ["x", "y"]) == ["x", "y"]
        assert store.claim_items(b, name, "v1", ["y", "x", "z"]) == ["z"]  # x, y held by live run a
        assert store.claim_items(a, name, "v1", ["x"]) == ["x"]  # a claim is its holder's to repeat
        store.write_task(a, name, "v1", result(0, {"x": rows_for("x", [0], 5000.0)}))
        store.finish_run(a, "failed")  # y was never written
        assert store.claim_items(b, name, "v1", ["x", "y"]) == ["y"]  # x done, y free again
        assert store.claim_items(b, name, "v1", ["x"], skip_done=False) == ["x"]  # --rerun takes done items
        c = store.start_run(name, "v1", "local", 1, 3, 0)
        assert store.claim_items(c, name, "v1", ["y", "z"]) == []
        with store.engine.begin() as conn:  # b stops beating (another host that died silently)
            conn.execute(store.runs.update().where(store.runs.c.run_id == b).values(heartbeat_at=time.time() - 61))
        assert store.claim_items(c, name, "v1", ["y", "z"]) == ["y", "z"]
        store.finish_run(c, "finished")
        with store.engine.connect() as conn:
            left = conn.execute(sa.select(store.claims.c.run_id).where(store.claims.c.pipeline == name)).scalars()
            assert set(left) == {b}  # a finished run releases its claims


def test_write_retries_through_an_outage_then_gives_a_one_line_error(db):
    url, name = db
    with ResultsStore(url, retry_seconds=30) as store:
        store.ensure_pipeline(name, "v1", FIELDS)
        run = store.start_run(name, "v1", "inline", 1, 2, 0)
        with FailingWrites() as outage:
            threading.Timer(1.2, lambda: setattr(outage, "active", False)).start()  # the server comes back
            t0 = time.monotonic()
            store.write_task(run, name, "v1", result(0, {"a.fits": rows_for("a.fits", [0, 2], 5000.0)}))
            assert time.monotonic() - t0 > 1.0 and outage.n_failed >= 2
        assert store.count(name) == 2 and store.done_items(name, "v1") == {"a.fits"}
    with ResultsStore(url, retry_seconds=0.6) as store:
        with FailingWrites() as outage:
            t0 = time.monotonic()
            with pytest.raises(DatabaseUnavailable) as err:
                store.write_task(run, name, "v1", result(1, {"b.fits": rows_for("b.fits", [0], 4000.0)}))
            assert 0.5 < time.monotonic() - t0 < 5 and outage.n_failed >= 2
        message = str(err.value)
        assert "\n" not in message and "unavailable for 0.6 s" in message and "run the same command" in message
        assert err.value.__cause__ is None and err.value.__suppress_context__  # no chained tracebacks
        assert store.count(name) == 2 and store.done_items(name, "v1") == {"a.fits"}  # nothing half-written


def test_non_transient_errors_are_not_retried(tmp_path):
    with ResultsStore(tmp_path / "r.sqlite", retry_seconds=30) as store:
        t0 = time.monotonic()
        with pytest.raises(sa.exc.OperationalError, match="no such table"):
            store._retry("reading", lambda: store.engine.connect().execute(sa.text("SELECT * FROM missing_table")))
        assert time.monotonic() - t0 < 1
    with pytest.raises(ValueError, match="retry_seconds"):
        ResultsStore(tmp_path / "r.sqlite", retry_seconds=-1)


def test_not_a_database_is_a_clear_error(tmp_path):
    bad = tmp_path / "notes.sqlite"
    bad.write_text("this is not a database\n" * 100)
    with pytest.raises(ValueError, match="not a database"):
        ResultsStore(bad)


def fresh_database_or_sqlite(kind: str, tmp_path):
    """(URL of an empty database, clean-up function)."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.sqlite'}", lambda: None
    url = sa.engine.make_url(normalise_db_url(postgres_or_skip()))
    dbname = f"stellarnn_fresh_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {dbname}"))

    def drop():
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)"))
        admin.dispose()

    return url.set(database=dbname).render_as_string(hide_password=False), drop


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_runners_starting_together_on_a_fresh_database(kind, tmp_path):
    url, drop = fresh_database_or_sqlite(kind, tmp_path)
    n = 6
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def start():
        try:
            barrier.wait()
            with ResultsStore(url) as store:
                store.ensure_pipeline("race", "v1", FIELDS)
                store.start_run("race", "v1", "local", 1, 1, 0)
        except BaseException as exc:  # collected: the assertion below names it
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(n)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors[0]
        with ResultsStore(url) as store:
            assert len(store.runs_summary()) == n and list(store.glossary("race", "v1"))[-1] == "flag_bad"
    finally:
        drop()


def test_status_of_an_empty_postgres_database_hides_the_password(tmp_path, capsys):
    from stellarnn.cli import main

    url, drop = fresh_database_or_sqlite("postgresql", tmp_path)
    try:
        with_password = sa.engine.make_url(url).set(password="hunter2").render_as_string(hide_password=False)
        assert main(["runner", "status", "--db", with_password]) == 0  # trust auth: the password is unused
        out = capsys.readouterr().out
        assert out.startswith("no runs in") and "hunter2" not in out and ":***@" in out
    finally:
        drop()


def test_schema_change_on_sqlite_waits_out_a_locked_file_but_not_other_errors(tmp_path):
    """Runners opening a fresh file together: SQLite answers one of two schema writers 'database is locked' at once
    (no busy wait in that deadlock), which must be retried, not turned into 'cannot open database'."""
    import sqlite3

    store = ResultsStore(tmp_path / "lock.sqlite")
    calls = []

    def locked_three_times(conn):
        calls.append(1)
        if len(calls) <= 3:
            raise sa.exc.OperationalError("CREATE TABLE t", {}, sqlite3.OperationalError("database is locked"))
        return "created"

    assert store._schema_change(locked_three_times) == "created" and len(calls) == 4

    def broken(conn):
        calls.append(1)
        raise sa.exc.OperationalError("SELECT", {}, sqlite3.OperationalError("no such column: x"))

    calls.clear()
    with pytest.raises(sa.exc.OperationalError, match="no such column"):
        store._schema_change(broken)
    assert len(calls) == 1
    store.close()
