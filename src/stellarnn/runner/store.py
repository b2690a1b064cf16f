"""Results store through SQLAlchemy: an SQLite file by default, PostgreSQL (or any server) by URL.

Tables
------
``results_<pipeline>``
    One row per (spectrum_id, pipeline, version) — a unique constraint; writing a row again
    (a rerun) updates it in place.  Columns: the runner's (:data:`~.fields.RUNNER_FIELDS`)
    then the pipeline's fields, typed from their ``FieldInfo.dtype``, commented with their
    description and unit.
``runner_fields``
    The glossary (pipeline, version, column, position, unit, description, dtype) that exports
    and ``--help`` read back.
``runner_items``
    One row per finished input item (item, pipeline, version): written in the same transaction
    as the item's results, so after a crash (even ``kill -9``) an item is either complete or
    absent, and a rerun skips exactly the complete ones.
``runner_runs`` / ``runner_batches``
    Each run (pipeline, version, executor, times, status) and each batch's timing
    (read, process and write seconds, worker).
"""
from __future__ import annotations

import os
import re
import socket
import sys
import time
from pathlib import Path
from typing import Iterator, Sequence

import sqlalchemy as sa

from ..labels.pipeline import FieldInfo
from .fields import RUNNER_FIELDS, describe, glossary
from .task import TaskResult, field_kind

DEFAULT_DB_NAME = "stellarnn_results.sqlite"


def default_db_url(out_dir: str | os.PathLike) -> str:
    """SQLite URL of the default results file in ``out_dir``."""
    return f"sqlite:///{Path(out_dir).expanduser().absolute() / DEFAULT_DB_NAME}"


def normalise_db_url(url_or_path: str | os.PathLike) -> str:
    """A SQLAlchemy URL; a plain path means an SQLite file.  ``postgresql://`` uses psycopg 3."""
    s = str(url_or_path)
    if "://" not in s:
        return f"sqlite:///{Path(s).expanduser().absolute()}"
    if s.startswith("postgresql://") or s.startswith("postgres://"):
        s = "postgresql+psycopg://" + s.split("://", 1)[1]
    return s


def results_table_name(pipeline: str) -> str:
    name = re.sub(r"[^a-z0-9_]", "_", pipeline.lower())
    if not name:
        raise ValueError(f"pipeline name {pipeline!r} gives no table name")
    return f"results_{name}"


def sql_type(info: FieldInfo):
    kind = field_kind(info)
    if kind == "f":
        return sa.Float(precision=53)
    if kind in "iu":
        return sa.BigInteger()
    if kind == "b":
        return sa.Boolean()
    return sa.Text()


def hide_password(url: str) -> str:
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


class ResultsStore:
    """The results database.

    Parameters
    ----------
    url : str or path
        SQLAlchemy URL (``sqlite:///path.sqlite``, ``postgresql+psycopg://user@host/db``) or an
        SQLite file path.  An SQLite file's folder is created; tables are created on first use.
    """

    def __init__(self, url: str | os.PathLike):
        self.url = normalise_db_url(url)
        engine_url = sa.engine.make_url(self.url)
        self.is_sqlite = engine_url.get_backend_name() == "sqlite"
        if self.is_sqlite and engine_url.database not in (None, "", ":memory:"):
            Path(engine_url.database).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.engine = sa.create_engine(self.url, future=True)
        except (ImportError, sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
            raise ValueError(f"cannot use database URL {hide_password(self.url)}: {exc}") from exc
        if self.is_sqlite:
            sa.event.listen(self.engine, "connect", self._sqlite_pragmas)
        self.metadata = sa.MetaData()
        self.runs = sa.Table(
            "runner_runs", self.metadata,
            sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("pipeline", sa.Text, nullable=False), sa.Column("version", sa.Text, nullable=False),
            sa.Column("started_at", sa.Float(53)), sa.Column("finished_at", sa.Float(53)),
            sa.Column("status", sa.Text), sa.Column("executor", sa.Text), sa.Column("n_workers", sa.Integer),
            sa.Column("n_items", sa.Integer), sa.Column("n_items_skipped", sa.Integer),
            sa.Column("host", sa.Text), sa.Column("command", sa.Text))
        self.items = sa.Table(
            "runner_items", self.metadata,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("item", sa.Text, nullable=False), sa.Column("pipeline", sa.Text, nullable=False),
            sa.Column("version", sa.Text, nullable=False), sa.Column("n_rows", sa.Integer),
            sa.Column("run_id", sa.Integer), sa.Column("updated_at", sa.Float(53)),
            sa.UniqueConstraint("item", "pipeline", "version", name="uq_runner_items"))
        self.batches = sa.Table(
            "runner_batches", self.metadata,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("run_id", sa.Integer, index=True), sa.Column("task_id", sa.Integer),
            sa.Column("n_items", sa.Integer), sa.Column("n_spectra", sa.Integer),
            sa.Column("read_seconds", sa.Float(53)), sa.Column("process_seconds", sa.Float(53)),
            sa.Column("write_seconds", sa.Float(53)), sa.Column("worker", sa.Text),
            sa.Column("finished_at", sa.Float(53)))
        self.fields_table = sa.Table(
            "runner_fields", self.metadata,
            sa.Column("pipeline", sa.Text, primary_key=True), sa.Column("version", sa.Text, primary_key=True),
            sa.Column("column", sa.Text, primary_key=True), sa.Column("position", sa.Integer),
            sa.Column("unit", sa.Text), sa.Column("description", sa.Text), sa.Column("dtype", sa.Text))
        try:
            self.metadata.create_all(self.engine)
        except sa.exc.OperationalError as exc:
            raise ValueError(f"cannot open database {hide_password(self.url)}: {exc.orig}") from exc
        self._results: dict[str, sa.Table] = {}

    @staticmethod
    def _sqlite_pragmas(dbapi_conn, _record):
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")  # readers (export, status) never block the writer
        cur.execute("PRAGMA synchronous=NORMAL")  # durable against process kills (not power loss)
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # ------------------------------------------------------------------ schema
    def ensure_pipeline(self, pipeline: str, version: str, fields: dict[str, FieldInfo]) -> sa.Table:
        """Create (or extend with new columns) the pipeline's results table; record its glossary."""
        columns = glossary(fields)
        name = results_table_name(pipeline)
        insp = sa.inspect(self.engine)
        if insp.has_table(name):
            table = sa.Table(name, sa.MetaData(), autoload_with=self.engine)
            missing = [c for c in columns if c not in table.c]
            with self.engine.begin() as conn:
                for col in missing:
                    coltype = sql_type(columns[col]).compile(dialect=self.engine.dialect)
                    conn.execute(sa.text(f'ALTER TABLE {name} ADD COLUMN "{col}" {coltype}'))
            if missing:
                table = sa.Table(name, sa.MetaData(), autoload_with=self.engine)
        else:
            md = sa.MetaData()
            cols = [sa.Column("id", sa.Integer, primary_key=True, autoincrement=True)]
            for col, info in columns.items():
                cols.append(sa.Column(col, sql_type(info), comment=describe(info)[:1000],
                                      nullable=col not in ("spectrum_id", "item", "pipeline", "version")))
            table = sa.Table(name, md, *cols,
                             sa.UniqueConstraint("spectrum_id", "pipeline", "version", name=f"uq_{name}"),
                             sa.Index(f"ix_{name}_item", "item", "pipeline", "version"),
                             comment=f"stellarnn runner results of pipeline {pipeline}")
            md.create_all(self.engine)
        rows = [{"pipeline": pipeline, "version": version, "column": col, "position": i, "unit": info.unit,
                 "description": info.description, "dtype": info.dtype} for i, (col, info) in enumerate(columns.items())]
        with self.engine.begin() as conn:
            conn.execute(self.fields_table.delete().where(self.fields_table.c.pipeline == pipeline,
                                                          self.fields_table.c.version == version))
            conn.execute(self.fields_table.insert(), rows)
        self._results[pipeline] = table
        return table

    def results_table(self, pipeline: str) -> sa.Table:
        """The (reflected) results table of a pipeline; ``KeyError`` if it has none yet."""
        if pipeline not in self._results:
            name = results_table_name(pipeline)
            if not sa.inspect(self.engine).has_table(name):
                raise KeyError(f"no results for pipeline {pipeline!r} in {hide_password(self.url)}; "
                               f"have: {self.pipelines()}")
            self._results[pipeline] = sa.Table(name, sa.MetaData(), autoload_with=self.engine)
        return self._results[pipeline]

    def pipelines(self) -> list[str]:
        with self.engine.connect() as conn:
            return sorted(r[0] for r in conn.execute(sa.select(self.fields_table.c.pipeline).distinct()))

    def glossary(self, pipeline: str, version: str | None = None) -> dict[str, FieldInfo]:
        """Columns of a pipeline's results with unit and description, as recorded at run time."""
        f = self.fields_table
        with self.engine.connect() as conn:
            if version is None:
                version = conn.execute(sa.select(f.c.version).where(f.c.pipeline == pipeline)
                                       .order_by(f.c.version.desc())).scalar()
                latest = self.latest_version(pipeline)
                version = latest if latest is not None else version
            rows = conn.execute(sa.select(f).where(f.c.pipeline == pipeline, f.c.version == version)
                                .order_by(f.c.position)).all()
        if not rows:
            raise KeyError(f"no glossary for pipeline {pipeline!r} (version {version}); have: {self.pipelines()}")
        return {r.column: FieldInfo(r.unit or "", r.description or "", r.dtype or "float64") for r in rows}

    # ------------------------------------------------------------------ runs
    def start_run(self, pipeline: str, version: str, executor: str, n_workers: int, n_items: int,
                  n_skipped: int) -> int:
        with self.engine.begin() as conn:
            res = conn.execute(self.runs.insert().values(
                pipeline=pipeline, version=version, started_at=time.time(), status="running", executor=executor,
                n_workers=n_workers, n_items=n_items, n_items_skipped=n_skipped, host=socket.gethostname(),
                command=" ".join(sys.argv)[:2000]))
            return int(res.inserted_primary_key[0])

    def finish_run(self, run_id: int, status: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(self.runs.update().where(self.runs.c.run_id == run_id)
                         .values(status=status, finished_at=time.time()))

    def latest_version(self, pipeline: str) -> str | None:
        """Version of the pipeline's most recent run (None without runs)."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(self.runs.c.version).where(self.runs.c.pipeline == pipeline)
                                .order_by(self.runs.c.run_id.desc()).limit(1)).scalar()

    def done_items(self, pipeline: str, version: str) -> set[str]:
        """Keys of items whose results are complete for (pipeline, version)."""
        with self.engine.connect() as conn:
            return set(conn.execute(sa.select(self.items.c.item).where(
                self.items.c.pipeline == pipeline, self.items.c.version == version)).scalars())

    # ------------------------------------------------------------------ writes
    def _insert(self, table: sa.Table):
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        elif self.engine.dialect.name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:  # pragma: no cover - other servers are not tested
            raise ValueError(f"upserts are implemented for SQLite and PostgreSQL, not {self.engine.dialect.name}")
        return insert(table)

    def upsert(self, conn, table: sa.Table, rows: Sequence[dict], keys: Sequence[str]) -> None:
        """Insert rows; where ``keys`` already exist, update every other column (one statement)."""
        if not rows:
            return
        stmt = self._insert(table)
        update_cols = [c for c in rows[0] if c not in keys and c != "id"]
        stmt = stmt.on_conflict_do_update(index_elements=list(keys),
                                          set_={c: stmt.excluded[c] for c in update_cols})
        conn.execute(stmt, list(rows))

    def write_task(self, run_id: int, pipeline: str, version: str, result: TaskResult,
                   write_started: float | None = None) -> float:
        """Store a task's rows, mark its items done and record its timing, in one transaction.

        Rows of the task's items left from earlier runs but not produced now (e.g. the
        ``unreadable`` row of a file since repaired) are deleted.  Returns the write time (s).
        """
        t0 = time.perf_counter() if write_started is None else write_started
        table = self.results_table(pipeline)
        now = time.time()
        cols = [c.name for c in table.columns if c.name != "id"]
        rows = []
        for r in result.rows:
            row = {c: r.get(c) for c in cols}
            row.update(pipeline=pipeline, version=version, run_id=run_id, updated_at=now)
            rows.append(row)
        n_rows: dict[str, int] = {k: 0 for k in result.item_keys}
        for r in result.rows:
            n_rows[r["item"]] = n_rows.get(r["item"], 0) + 1
        with self.engine.begin() as conn:
            self.upsert(conn, table, rows, ("spectrum_id", "pipeline", "version"))
            if result.item_keys:
                conn.execute(table.delete().where(table.c.pipeline == pipeline, table.c.version == version,
                                                  table.c.item.in_(result.item_keys), table.c.run_id != run_id))
            self.upsert(conn, self.items, [{"item": k, "pipeline": pipeline, "version": version, "n_rows": n,
                                            "run_id": run_id, "updated_at": now} for k, n in n_rows.items()],
                        ("item", "pipeline", "version"))
            write_seconds = time.perf_counter() - t0
            conn.execute(self.batches.insert().values(
                run_id=run_id, task_id=result.task_id, n_items=len(result.item_keys), n_spectra=result.n_spectra,
                read_seconds=result.read_seconds, process_seconds=result.process_seconds,
                write_seconds=write_seconds, worker=result.worker, finished_at=now))
        return write_seconds

    # ------------------------------------------------------------------ reads
    def count(self, pipeline: str, version: str | None = None) -> int:
        table = self.results_table(pipeline)
        q = sa.select(sa.func.count()).select_from(table)
        if version is not None:
            q = q.where(table.c.version == version)
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar())

    def iter_results(self, pipeline: str, version: str | None = None, chunk_rows: int = 50_000,
                     columns: Sequence[str] | None = None) -> Iterator[list[dict]]:
        """Results rows in chunks (lists of dicts), ordered by spectrum_id; ``version=None``: all versions."""
        table = self.results_table(pipeline)
        sel_cols = [table.c[c] for c in columns] if columns else [c for c in table.columns if c.name != "id"]
        q = sa.select(*sel_cols).order_by(table.c.spectrum_id, table.c.version)
        if version is not None:
            q = q.where(table.c.version == version)
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(q)
            for part in result.mappings().partitions(chunk_rows):
                yield [dict(r) for r in part]

    def runs_summary(self) -> list[dict]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.select(self.runs).order_by(self.runs.c.run_id)).mappings()]

    def batch_timing(self, run_id: int) -> list[dict]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.select(self.batches).where(self.batches.c.run_id == run_id)
                                                  .order_by(self.batches.c.id)).mappings()]
