"""Tests of stellarnn.runner.store against SQLite and a real PostgreSQL server.

PostgreSQL tests need ``STELLARNN_TEST_POSTGRES_URL`` (CI sets it from scripts/ci_postgres.sh,
which installs and starts a server); without it they are skipped with that reason.
"""
from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy as sa

from stellarnn.labels.pipeline import FieldInfo
from stellarnn.runner.fields import RUNNER_FIELDS
from stellarnn.runner.store import ResultsStore, default_db_url, normalise_db_url, results_table_name
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
