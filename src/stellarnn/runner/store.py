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
    Each run (pipeline, version, executor, times, status, host, pid, heartbeat, the command with
    passwords masked) and each batch's timing (read, process and write seconds, worker).  A run
    killed without finishing (``kill -9``, power cut) is marked ``interrupted`` by the next
    store opened on the same host once its process is gone (:meth:`ResultsStore.mark_stale_runs`).
``runner_claims``
    Items being processed: (item, pipeline, version, run_id, claimed_at).  A run claims the
    items of a batch before submitting it (:meth:`ResultsStore.claim_items`), so two runners on
    one database split the work instead of each doing all of it; the claim of a run that is no
    longer running, or whose heartbeat is older than ``claim_lease_seconds``, can be taken over.

Concurrency and faults
----------------------
The schema is created under a PostgreSQL advisory lock (and, on any server, an "already
exists" error from a concurrent creator is caught and the schema checked again), so several
runners may start on a fresh database at once.  Database calls of a run (writes, claims) that
fail with a connection-level error are retried with exponential back-off (0.5 s doubling to
at most 15 s) for ``retry_seconds`` (default :data:`DEFAULT_RETRY_SECONDS`, ``--db-retry`` on
the command line); then :class:`DatabaseUnavailable` is raised with a one-line message.  A
task's rows are written in one transaction, so a retried or abandoned write never leaves a
partial item: resuming afterwards loses and duplicates nothing.
"""
from __future__ import annotations

import logging
import os
import re
import socket
import sys
import time
import zlib
from pathlib import Path
from typing import Callable, Iterator, Sequence, TypeVar

import sqlalchemy as sa

from ..labels.pipeline import FieldInfo
from .fields import RUNNER_FIELDS, describe, glossary
from .task import TaskResult, field_kind

DEFAULT_DB_NAME = "stellarnn_results.sqlite"
#: seconds a run keeps retrying a database that fails with a connection-level error
DEFAULT_RETRY_SECONDS = 120.0
#: a claim whose run has not written (heartbeat) for this long may be taken over by another run
DEFAULT_CLAIM_LEASE_SECONDS = 900.0
#: PostgreSQL advisory-lock key serialising schema changes of the runner's tables
SCHEMA_LOCK_KEY = zlib.crc32(b"stellarnn.runner.schema")
#: how long creating the schema of an SQLite file retries "database is locked" (:meth:`ResultsStore._schema_change`)
SQLITE_SCHEMA_LOCK_SECONDS = 60.0

log = logging.getLogger(__name__)
T = TypeVar("T")


class DatabaseUnavailable(RuntimeError):
    """The results database kept failing for the whole retry time (one-line message)."""


def _first_line(exc) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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
    """``url`` with its password replaced by ``***`` (SQLAlchemy's rendering); other text unchanged."""
    try:
        return sa.engine.make_url(str(url)).render_as_string(hide_password=True)
    except Exception:
        return _URL_PASSWORD.sub(r"\1***@", str(url))


#: ``scheme://user:password@`` anywhere in a string (the password part is group 2)
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)([^@\s]*)@")


def mask_passwords(text: str) -> str:
    """Every ``scheme://user:password@`` inside ``text`` (a command line, an error) with ``***`` as password."""
    return _URL_PASSWORD.sub(r"\1***@", str(text))


def masked_command(argv: Sequence[str] | None = None) -> str:
    """The command line (default ``sys.argv``) as stored in ``runner_runs.command``: passwords masked."""
    import shlex

    return mask_passwords(shlex.join(str(a) for a in (sys.argv if argv is None else argv)))


def process_alive(pid: int, started_before: float | None = None) -> bool:
    """Whether process ``pid`` exists on this host (and, with ``started_before``, was created by then).

    The creation time check tells a reused pid from the original process.
    """
    if pid is None or pid <= 0:
        return False
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil comes with distributed
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started_before is None or proc.create_time() <= started_before + 1.0
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True


def is_transient_error(exc: BaseException, sqlite: bool) -> bool:
    """A database error worth retrying: lost/refused connection, server shutdown, SQLite lock or I/O."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError)):
        if not sqlite:
            return True
        msg = str(exc.orig if getattr(exc, "orig", None) is not None else exc).lower()
        return any(k in msg for k in ("locked", "busy", "disk i/o", "unable to open"))
    return isinstance(exc, sa.exc.TimeoutError)  # connection pool exhausted / timed out


class ResultsStore:
    """The results database.

    Parameters
    ----------
    url : str or path
        SQLAlchemy URL (``sqlite:///path.sqlite``, ``postgresql+psycopg://user@host/db``) or an
        SQLite file path.  An SQLite file's folder is created; tables are created on first use.
    retry_seconds : float
        How long writes and claims of a run retry a database failing with a connection-level
        error (exponential back-off), before :class:`DatabaseUnavailable`; 0 disables retries.
    claim_lease_seconds : float
        A claim of a run whose heartbeat (last write or claim) is older than this may be taken
        over by another run (runs on other hosts that died without a trace).
    """

    def __init__(self, url: str | os.PathLike, *, retry_seconds: float = DEFAULT_RETRY_SECONDS,
                 claim_lease_seconds: float = DEFAULT_CLAIM_LEASE_SECONDS):
        if not retry_seconds >= 0:
            raise ValueError(f"retry_seconds must be >= 0, got {retry_seconds}")
        if not claim_lease_seconds > 0:
            raise ValueError(f"claim_lease_seconds must be > 0, got {claim_lease_seconds}")
        self.retry_seconds = float(retry_seconds)
        self.claim_lease_seconds = float(claim_lease_seconds)
        self.url = normalise_db_url(url)
        engine_url = sa.engine.make_url(self.url)
        self.is_sqlite = engine_url.get_backend_name() == "sqlite"
        if self.is_sqlite and engine_url.database not in (None, "", ":memory:"):
            Path(engine_url.database).parent.mkdir(parents=True, exist_ok=True)
        try:
            # pre-ping: a connection broken by a server restart is replaced, not handed out
            self.engine = sa.create_engine(self.url, future=True, pool_pre_ping=not self.is_sqlite)
        except (ImportError, sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
            raise ValueError(f"cannot use database URL {hide_password(self.url)}: {mask_passwords(exc)}") from None
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
            sa.Column("host", sa.Text), sa.Column("command", sa.Text),
            *[sa.Column(name, type_) for name, type_ in self._RUN_COLUMNS_ADDED])
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
        self.claims = sa.Table(
            "runner_claims", self.metadata,
            sa.Column("item", sa.Text, primary_key=True), sa.Column("pipeline", sa.Text, primary_key=True),
            sa.Column("version", sa.Text, primary_key=True), sa.Column("run_id", sa.Integer, nullable=False),
            sa.Column("claimed_at", sa.Float(53)))
        try:
            self._schema_change(self._create_schema)
        except sa.exc.OperationalError as exc:
            raise ValueError(f"cannot open database {hide_password(self.url)}: "
                             f"{mask_passwords(_first_line(exc.orig))}") from None
        except sa.exc.DatabaseError as exc:  # e.g. a file that is not an SQLite database
            raise ValueError(f"cannot use database {hide_password(self.url)}: "
                             f"{mask_passwords(_first_line(exc.orig))}") from None
        self._results: dict[str, sa.Table] = {}

    #: runner_runs columns added after the first release (added to older databases on open)
    _RUN_COLUMNS_ADDED = (("pid", sa.Integer()), ("heartbeat_at", sa.Float(53)))

    def _create_schema(self, conn) -> None:
        self.metadata.create_all(conn)
        have = {c["name"] for c in sa.inspect(conn).get_columns("runner_runs")}
        for name, type_ in self._RUN_COLUMNS_ADDED:
            if name not in have:
                conn.execute(sa.text(f"ALTER TABLE runner_runs ADD COLUMN {name} "
                                     f"{type_.compile(dialect=self.engine.dialect)}"))

    def _schema_change(self, change: Callable, attempts: int = 6):
        """Run ``change(conn)`` in one transaction, safe against concurrent runners.

        On PostgreSQL the transaction holds an advisory lock, so concurrent creators take turns
        (DDL is transactional there).  On any server, an error saying that a table, type or
        column already exists (another process created it between our check and our CREATE)
        makes us look again, up to ``attempts`` times.  On SQLite, "database is locked" is retried
        too, for up to :data:`SQLITE_SCHEMA_LOCK_SECONDS`: two connections that both read the schema
        and then both write it deadlock, and SQLite answers one of them SQLITE_BUSY at once, without
        waiting in its busy handler (seen with six runners opening a fresh file together on a busy
        machine).
        """
        deadline = time.monotonic() + SQLITE_SCHEMA_LOCK_SECONDS
        delay = 0.02
        attempt = 0
        while True:
            try:
                with self.engine.begin() as conn:
                    if self.engine.dialect.name == "postgresql":
                        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": SCHEMA_LOCK_KEY})
                    return change(conn)
            except (sa.exc.OperationalError, sa.exc.ProgrammingError, sa.exc.IntegrityError) as exc:
                msg = str(exc.orig).lower()
                attempt += 1
                if attempt < attempts and ("already exists" in msg or "duplicate" in msg):
                    time.sleep(0.05 * attempt)
                    continue
                if self.is_sqlite and ("locked" in msg or "busy" in msg) and time.monotonic() < deadline:
                    time.sleep(delay)
                    delay = min(2 * delay, 1.0)
                    continue
                raise

    def _retry(self, what: str, call: Callable[[], T]) -> T:
        """``call()``, retried with exponential back-off while the database fails transiently.

        Waits 0.5 s, then doubles up to 15 s between tries, for ``retry_seconds`` in all; then
        raises :class:`DatabaseUnavailable` (no chained traceback: the message says it all).
        """
        deadline = None
        delay = 0.5
        while True:
            try:
                return call()
            except sa.exc.SQLAlchemyError as exc:
                if not is_transient_error(exc, self.is_sqlite):
                    raise
                reason = mask_passwords(_first_line(getattr(exc, "orig", None) or exc))
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.retry_seconds
                if now >= deadline:
                    raise DatabaseUnavailable(
                        f"database {hide_password(self.url)} unavailable for {self.retry_seconds:g} s while "
                        f"{what} ({reason}); everything written before is kept: run the same command "
                        f"again to resume") from None
                log.warning("database error while %s (%s); retrying in %.1f s", what, reason, delay)
                time.sleep(min(delay, max(deadline - now, 0.0)))
                delay = min(2 * delay, 15.0)

    @staticmethod
    def _sqlite_pragmas(dbapi_conn, _record):
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout=30000")  # first: switching to WAL below may have to wait for a lock
        cur.execute("PRAGMA journal_mode=WAL")  # readers (export, status) never block the writer
        cur.execute("PRAGMA synchronous=NORMAL")  # durable against process kills (not power loss)
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
        """Create (or extend with new columns) the pipeline's results table; record its glossary.

        Safe when several runners call it at once on a fresh database (see :meth:`_schema_change`).
        """
        columns = glossary(fields)
        name = results_table_name(pipeline)

        def change(conn) -> sa.Table:
            if sa.inspect(conn).has_table(name):
                table = sa.Table(name, sa.MetaData(), autoload_with=conn)
                missing = [c for c in columns if c not in table.c]
                for col in missing:
                    coltype = sql_type(columns[col]).compile(dialect=self.engine.dialect)
                    conn.execute(sa.text(f'ALTER TABLE {name} ADD COLUMN "{col}" {coltype}'))
                if missing:
                    table = sa.Table(name, sa.MetaData(), autoload_with=conn)
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
                md.create_all(conn)
            rows = [{"pipeline": pipeline, "version": version, "column": col, "position": i, "unit": info.unit,
                     "description": info.description, "dtype": info.dtype}
                    for i, (col, info) in enumerate(columns.items())]
            conn.execute(self.fields_table.delete().where(self.fields_table.c.pipeline == pipeline,
                                                          self.fields_table.c.version == version))
            conn.execute(self.fields_table.insert(), rows)
            return table

        table = self._retry(f"creating the tables of {pipeline}", lambda: self._schema_change(change))
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
                  n_skipped: int, command: Sequence[str] | None = None) -> int:
        """Record a new run (status ``running``, this host and pid, the command with passwords masked).

        Runs of this host left ``running`` by a process that is gone are marked ``interrupted`` first.
        """
        self.mark_stale_runs()
        now = time.time()

        def insert() -> int:
            with self.engine.begin() as conn:
                res = conn.execute(self.runs.insert().values(
                    pipeline=pipeline, version=version, started_at=now, status="running", executor=executor,
                    n_workers=n_workers, n_items=n_items, n_items_skipped=n_skipped, host=socket.gethostname(),
                    command=masked_command(command)[:2000], pid=os.getpid(), heartbeat_at=now))
                return int(res.inserted_primary_key[0])

        return self._retry("recording the run", insert)

    def finish_run(self, run_id: int, status: str, retry: bool = True) -> None:
        """Set the run's final status and release its claims.

        ``retry=False``: one try, errors logged and ignored (the database is known to be down: the
        run then stays ``running`` until the next run on this host marks it ``interrupted``).
        """
        def update() -> None:
            with self.engine.begin() as conn:
                conn.execute(self.runs.update().where(self.runs.c.run_id == run_id)
                             .values(status=status, finished_at=time.time()))
                conn.execute(self.claims.delete().where(self.claims.c.run_id == run_id))

        if retry:
            self._retry("recording the end of the run", update)
            return
        try:
            update()
        except sa.exc.SQLAlchemyError as exc:
            log.warning("could not record the end of run %s: %s", run_id, _first_line(exc))

    def mark_stale_runs(self) -> list[int]:
        """Mark ``interrupted`` the runs of this host still ``running`` whose process is gone.

        A run killed with ``kill -9`` (or by a crash) never records its end; its pid and start
        time tell whether it is still alive.  Runs of other hosts are left alone (their claims
        expire after ``claim_lease_seconds`` without a heartbeat).  Returns the run ids marked.
        """
        host, me = socket.gethostname(), os.getpid()
        r = self.runs

        def mark() -> list[int]:
            with self.engine.connect() as conn:
                running = conn.execute(sa.select(r.c.run_id, r.c.pid, r.c.started_at, r.c.heartbeat_at).where(
                    r.c.status == "running", r.c.host == host, r.c.pid.is_not(None))).all()
            stale = [row for row in running if row.pid != me and not process_alive(row.pid, row.started_at)]
            if stale:
                with self.engine.begin() as conn:
                    for row in stale:
                        conn.execute(r.update().where(r.c.run_id == row.run_id, r.c.status == "running").values(
                            status="interrupted", finished_at=row.heartbeat_at))
                        conn.execute(self.claims.delete().where(self.claims.c.run_id == row.run_id))
            return [row.run_id for row in stale]

        return self._retry("marking interrupted runs", mark)

    def claim_items(self, run_id: int, pipeline: str, version: str, keys: Sequence[str],
                    skip_done: bool = True) -> list[str]:
        """Claim items for this run; returns the keys it may process, in the given order.

        One transaction: the run's heartbeat is refreshed, then each item is claimed unless a
        live run holds it (an atomic insert-or-take-over whose condition is checked by the
        database under its row lock, so two runners never both get an item), then, with
        ``skip_done``, items complete by now (another runner finished them) are left out.
        A holder is live while its status is ``running`` and its heartbeat is younger than
        ``claim_lease_seconds``.
        """
        keys = list(dict.fromkeys(keys))
        if not keys:
            return []
        c, r = self.claims, self.runs

        def claim() -> set[str]:
            now = time.time()
            with self.engine.begin() as conn:
                # first a write: on SQLite this takes the database's write lock for the transaction
                conn.execute(r.update().where(r.c.run_id == run_id).values(heartbeat_at=now))
                dead = sa.select(r.c.run_id).where(sa.or_(
                    r.c.status != "running", r.c.heartbeat_at.is_(None),
                    r.c.heartbeat_at < now - self.claim_lease_seconds))
                stmt = self._insert(c)
                stmt = stmt.on_conflict_do_update(
                    index_elements=["item", "pipeline", "version"],
                    set_={"run_id": stmt.excluded.run_id, "claimed_at": stmt.excluded.claimed_at},
                    where=sa.or_(c.c.run_id == run_id, c.c.run_id.in_(dead)))
                conn.execute(stmt, [{"item": k, "pipeline": pipeline, "version": version, "run_id": run_id,
                                     "claimed_at": now} for k in sorted(keys)])  # one lock order: no deadlock
                mine = set(conn.execute(sa.select(c.c.item).where(
                    c.c.run_id == run_id, c.c.pipeline == pipeline, c.c.version == version,
                    c.c.item.in_(keys))).scalars())
                if skip_done and mine:
                    mine -= set(conn.execute(sa.select(self.items.c.item).where(
                        self.items.c.pipeline == pipeline, self.items.c.version == version,
                        self.items.c.item.in_(sorted(mine)))).scalars())
                return mine

        mine = self._retry("claiming items", claim)
        return [k for k in keys if k in mine]

    def latest_version(self, pipeline: str) -> str | None:
        """Version of the pipeline's most recent run (None without runs)."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(self.runs.c.version).where(self.runs.c.pipeline == pipeline)
                                .order_by(self.runs.c.run_id.desc()).limit(1)).scalar()

    def done_items(self, pipeline: str, version: str) -> set[str]:
        """Keys of items whose results are complete for (pipeline, version)."""
        def read() -> set[str]:
            with self.engine.connect() as conn:
                return set(conn.execute(sa.select(self.items.c.item).where(
                    self.items.c.pipeline == pipeline, self.items.c.version == version)).scalars())

        return self._retry("reading the finished items", read)

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
        A transient database failure is retried (the transaction is all-or-nothing, so a retry
        never writes a row twice); see :meth:`_retry`.
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

        def write() -> float:
            with self.engine.begin() as conn:
                self.upsert(conn, table, rows, ("spectrum_id", "pipeline", "version"))
                if result.item_keys:
                    conn.execute(table.delete().where(table.c.pipeline == pipeline, table.c.version == version,
                                                      table.c.item.in_(result.item_keys), table.c.run_id != run_id))
                self.upsert(conn, self.items, [{"item": k, "pipeline": pipeline, "version": version, "n_rows": n,
                                                "run_id": run_id, "updated_at": now} for k, n in n_rows.items()],
                            ("item", "pipeline", "version"))
                conn.execute(self.runs.update().where(self.runs.c.run_id == run_id).values(heartbeat_at=now))
                write_seconds = time.perf_counter() - t0
                conn.execute(self.batches.insert().values(
                    run_id=run_id, task_id=result.task_id, n_items=len(result.item_keys),
                    n_spectra=result.n_spectra, read_seconds=result.read_seconds,
                    process_seconds=result.process_seconds, write_seconds=write_seconds, worker=result.worker,
                    finished_at=now))
            return write_seconds

        return self._retry(f"writing the results of task {result.task_id}", write)

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
