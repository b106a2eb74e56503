"""``contactstream import-sqlite DIR``: every row of a data dir written by the last SQLite
release (0.1) copied into an empty PostgreSQL database, in one transaction.

The SQLite files are only read. ``keys.sqlite``, ``master.key`` and ``tokens.json`` are not
copied: they stay in DIR, where the embedded default keeps using them.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from . import edges, migrations
from .config import Settings
from .database import Database, DatabaseError, check_url, split_event_id
from .keystore import shown_hash
from .logging import get_logger

log = get_logger(__name__)

# the SQLite files of 0.1 (all in DIR), attached under these names
SOURCES = ("readstore", "ingest", "cases", "control", "identity", "audit")
KEPT = ("keys.sqlite", "master.key", "tokens.json")
LOCK_TIMEOUT = "10s"

Row = tuple[Any, ...]


class ImportRefused(Exception):
    """The import cannot start or cannot finish; nothing was written."""


@dataclass(frozen=True)
class Copy:
    source: str                       # "file.table" in the old data dir, for messages
    target: str                       # table in PostgreSQL
    columns: tuple[str, ...]          # its columns, in the order ``select`` yields them
    select: str                       # over the attached SQLite files
    convert: Callable[[Row], Row] | None = None


def _utc(text: str | None) -> datetime | None:
    """SQLite's ``datetime('now')`` text (UTC, no offset) as an aware instant."""
    if text is None:
        return None
    at = datetime.fromisoformat(text)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _strong(row: Row) -> Row:
    return (*row[:3], bool(row[3]), row[4])


def _unmerge(row: Row) -> Row:
    return (*row[:6], _utc(row[6]), *row[7:])


def _erasure(row: Row) -> Row:
    return (*row[:5], _utc(row[5]), *row[6:])


def _edge(row: Row) -> Row:
    return (*edges.row((k, v) for k, v in json.loads(row[0])), *row[1:])


def _event(row: Row) -> Row:
    return (uuid.UUID(hex=row[0]), *row[1:])


def _event_id(row: Row) -> Row:
    """The event id first, into ``eid`` and ``etext`` (migration 19)."""
    return (*split_event_id(row[0]), *row[1:])


def _columns(*names: str) -> str:
    return ", ".join(f'"{n}"' for n in names)


def _same(target: str, source: str, *cols: str, convert: Callable[[Row], Row] | None = None,
          tail: str = "") -> Copy:
    """A table copied column for column (``tail``: what follows ``FROM source``)."""
    return Copy(source, target, cols, f"SELECT {_columns(*cols)} FROM {source} {tail}",
                convert)


ARCHIVE = ("topic", "partition", "offset", "key", "value", "headers", "timestamp_ms")
EVENTS = ("originator_id", "originator_version", "topic", "state")
TIMELINE = ("event_id", "customer_id", "occurred_ms", "occurred_at", "received_at", "type",
            "channel", "source", "agent_id", "queue", "case_id", "payload", "key_id")

COPIES: tuple[Copy, ...] = (
    Copy("readstore.timeline", "timeline_rows", ("eid", "etext", *TIMELINE[1:]),
         f"SELECT {_columns(*TIMELINE)} FROM readstore.timeline", _event_id),
    _same("identifiers", "readstore.identifiers", "kind", "value", "customer_id", "strong",
          "display", convert=_strong),
    _same("customers", "readstore.customers", "customer_id", "name", "name_ms", "name_event"),
    _same("cases", "readstore.cases", "case_id", "customer_id", "status", "priority",
          "channel", "queue", "agent_id", "policy", "opened_at", "opened_ms",
          "first_response_ms", "resolved_ms", "version", "updated_ms"),
    # the old readstore's JSON edges in their compact form (adapters/edges.py, migration 22)
    Copy("readstore.identity_edges", "identity_edges",
         ("edge_id", "edge", "claim_ms", "claim_event"),
         "SELECT edge, claim_ms, claim_event FROM readstore.identity_edges", _edge),
    _same("identity_bases", "readstore.identity_bases", "base", "kind", "value"),
    _same("customer_links", "readstore.customer_links", "base", "survivor"),
    _same("identity_separations", "readstore.identity_separations", "a_kind", "a_value",
          "b_kind", "b_value"),
    _same("offsets", "readstore.offsets", "consumer", "topic", "partition", "next_offset"),
    # both archives hold the records of the cases topic: the worker's copy (with the
    # broker's timestamp) wins, as it did in the old restore
    _same("broker_archive", "readstore.archive", *ARCHIVE),
    _same("broker_archive", "control.archive", *ARCHIVE,
          tail='AS c WHERE NOT EXISTS (SELECT 1 FROM readstore.archive AS r WHERE'
               ' r.topic = c.topic AND r.partition = c.partition AND r."offset" = c."offset")'),
    Copy("ingest.accepted", "ingest_journal_rows",
         ("eid", "etext", "topic", "partition", "offset", "key", "value", "received_at"),
         "SELECT event_id, topic, partition, \"offset\", key, value, received_at"
         " FROM ingest.accepted", _event_id),
    _same("sla_policies", "control.sla_policies", "name", "position", "body"),
    _same("calendars", "control.calendars", "name", "body"),
    _same("webhooks", "control.webhooks", "name", "body"),
    _same("webhook_failures", "control.webhook_failures", "webhook", "alert_seq", "error", "at"),
    _same("case_index", "control.case_index", "customer_id", "channel", "case_id"),
    # the case each complaint's envelope named, from the timeline (as migration 6 does)
    Copy("control.complaints", "complaints", ("event_id", "customer_id", "occurred_ms",
                                              "case_id"),
         "SELECT c.event_id, c.customer_id, c.occurred_ms, t.case_id FROM control.complaints"
         " AS c LEFT JOIN readstore.timeline AS t ON t.event_id = c.event_id"),
    _same("alerts", "control.alerts", "seq", "id", "kind", "case_id", "customer_id", "metric",
          "due_at", "at", "level", "detail"),
    _same("positions", "control.positions", "name", "position"),
    _same("erasures", "control.erasures", "customer_id", "at_ms", "pseudonym"),
    # one old table held both kinds of request, numbered together: each keeps its number,
    # and both tables number new requests after all the old ones (SEQUENCES)
    Copy("control.unmerge_requests", "unmerge_requests",
         ("seq", "survivor", "member", "requested_by", "reason", "at", "done_at", "error",
          "result"),
         "SELECT seq, survivor, member, by, reason, at, done_at, error, result"
         " FROM control.unmerge_requests WHERE kind = 'unmerge'", _unmerge),
    Copy("control.unmerge_requests", "erasure_requests",
         ("seq", "customer_id", "requested_by", "at", "payload", "done_at", "error", "result"),
         "SELECT seq, survivor, by, at, payload, done_at, error, result"
         " FROM control.unmerge_requests WHERE kind = 'erase'", _erasure),
    _same("access_log", "audit.access_log", "seq", "at", "role", "token_id", "method", "path",
          "action", "customer_id", "case_id", "status"),
    # the eventsourcing recorder's table; its rowid is the notification id
    Copy("cases.stored_events", "contactstream_cases_events", (*EVENTS, "notification_id"),
         f"SELECT {_columns(*EVENTS)}, rowid FROM cases.stored_events", _event),
    Copy("identity.stored_events", "contactstream_identity_events", (*EVENTS, "notification_id"),
         f"SELECT {_columns(*EVENTS)}, rowid FROM identity.stored_events", _event),
)
SCHEMAS = "avro_schemas"  # from schemas.json, not SQLite
TARGETS = tuple(dict.fromkeys([c.target for c in COPIES] + [SCHEMAS]))

# (table, column, where SQLite kept the counter of its AUTOINCREMENT column)
SEQUENCES = (("alerts", "seq", ("control", "alerts")),
             ("unmerge_requests", "seq", ("control", "unmerge_requests")),
             ("erasure_requests", "seq", ("control", "unmerge_requests")),
             ("access_log", "seq", ("audit", "access_log")),
             ("contactstream_cases_events", "notification_id", None),
             ("contactstream_identity_events", "notification_id", None))


# the data keys, for a database that keeps them itself (an external one: adapters/privacy.py)
# (the customer hash as text, also from a keys.sqlite of format 2: adapters/keystore.py)
KEY_COPIES: tuple[Copy, ...] = (
    _same("key_customers", "keys.customers", "customer_hash", "generation",
          convert=lambda row: (shown_hash(row[0]), *row[1:])),
    _same("data_keys", "keys.data_keys", "key_id", "customer_hash", "generation", "wrapped",
          "created_at", "destroyed_at",
          convert=lambda row: (row[0], shown_hash(row[1]), *row[2:])),
)


def import_sqlite(src: Path, url: str, *, keys: bool = False) -> dict[str, int]:
    """Copy every row of the 0.1 data dir ``src`` into the database of ``url`` (migrated
    first), in one transaction; returns the rows written per table. Raises
    ``ImportRefused`` (nothing written) when ``src`` is not such a data dir, the old release
    still runs on it, the database cannot be reached or already holds data."""
    started = time.monotonic()
    src = _check_dir(src)
    schemas = _avro_schemas(src / "schemas.json")
    try:
        migrations.migrate(check_url(url))
        db = Database(url, min_size=1, max_size=1, name="import-sqlite")
    except (DatabaseError, psycopg.OperationalError) as exc:
        raise ImportRefused(f"cannot use the database: {_first_line(exc)}") from exc
    try:
        with _open_sqlite(src, keys=keys) as lite, db.tx() as conn:
            _check_request_kinds(lite)
            _lock_and_check_empty(conn)
            counts = dict.fromkeys(TARGETS, 0)
            for c in COPIES + (KEY_COPIES if keys else ()):
                counts[c.target] = counts.get(c.target, 0) + _copy(
                    conn, c.source, c.target, c.columns, _rows(lite, c))
            if keys:
                _copy_key_meta(conn, lite)
            counts[SCHEMAS] = _copy(conn, "schemas.json", SCHEMAS, ("id", "schema"), schemas)
            _continue_sequences(conn, lite)
    finally:
        db.close()
    log.info("import.done", tables=len(counts), rows=sum(counts.values()),
             seconds=round(time.monotonic() - started, 2))
    return counts


def summary(counts: dict[str, int], src: Path, keys_copied: bool = False) -> str:
    """What the command prints when done."""
    lines = [f"imported {sum(counts.values())} rows from {src} in one transaction:"]
    lines += [f"  {table:<32}{n:>10}" for table, n in counts.items()]
    if keys_copied:
        lines.append(f"the data keys are in the database now; keep master.key (or"
                     f" CONTACTSTREAM_MASTER_KEY) and tokens.json of {src}")
    else:
        lines.append(f"left in place in {src}: {', '.join(KEPT)} (the data keys stay in the"
                     " SQLite key store there; keep these files with the data dir)")
    return "\n".join(lines)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _check_dir(src: Path) -> Path:
    if not src.is_dir():
        raise ImportRefused(f"{src} is not a directory")
    src = src.resolve()
    for name in SOURCES:
        if not (src / f"{name}.sqlite").is_file():
            raise ImportRefused(
                f"{src / f'{name}.sqlite'} is missing: {src} is not a data dir of the SQLite"
                " release (its *.sqlite files and schemas.json belong in one folder for the"
                " import)")
    pid_file = src / "up.pid"
    if pid_file.is_file() and _running(pid_file.read_text().strip()):
        raise ImportRefused(f"contactstream is running on {src} (pid in {pid_file}): stop it"
                            " first")
    return src


def _running(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # somebody else's process
        return True
    return True


def _avro_schemas(path: Path) -> list[Row]:
    """schemas.json (embedded registry only): {id: schema as JSON text}."""
    if not path.exists():
        log.info("import.no_schemas", reason="no embedded registry file")
        return []
    try:
        return [(int(sid), text) for sid, text in json.loads(path.read_text()).items()]
    except (ValueError, AttributeError) as exc:
        raise ImportRefused(f"{path} is not a schema file of the SQLite release") from exc


@contextmanager
def _open_sqlite(src: Path, keys: bool = False) -> Iterator[sqlite3.Connection]:
    """Every file attached read-only to one connection, read in one read transaction."""
    conn = sqlite3.connect(":memory:", uri=True, isolation_level=None)
    try:
        try:
            conn.execute("PRAGMA busy_timeout=10000")
            for name in SOURCES + (("keys",) if keys else ()):
                uri = f"{(src / f'{name}.sqlite').as_uri()}?mode=ro"
                conn.execute(f"ATTACH DATABASE ? AS {name}", (uri,))
            conn.execute("BEGIN")
        except sqlite3.Error as exc:
            raise ImportRefused(f"cannot read the SQLite files in {src}: {exc}") from exc
        yield conn
    finally:
        conn.close()


def _select(lite: sqlite3.Connection, source: str, query: str, args: Row = ()
            ) -> sqlite3.Cursor:
    try:
        return lite.execute(query, args)
    except sqlite3.Error as exc:
        raise ImportRefused(f"{source}: {exc}: not a data dir of the SQLite release 0.1"
                            ) from exc


def _check_request_kinds(lite: sqlite3.Connection) -> None:
    """Each request goes to the table of its kind: an unknown kind has none."""
    source = "control.unmerge_requests"
    kinds = {k for (k,) in _select(lite, source, f"SELECT DISTINCT kind FROM {source}")}
    if kinds - {"unmerge", "erase"}:
        raise ImportRefused(f"{source}: requests of unknown kinds"
                            f" {sorted(kinds - {'unmerge', 'erase'})}")


def _rows(lite: sqlite3.Connection, copy: Copy) -> Iterator[Row]:
    for row in _select(lite, copy.source, copy.select):
        try:
            yield copy.convert(row) if copy.convert else row
        except (ValueError, TypeError) as exc:
            raise ImportRefused(f"{copy.source}: a row of an unexpected form"
                                f" ({type(exc).__name__})") from exc


def _lock_and_check_empty(conn: psycopg.Connection[Any]) -> None:
    """Writers wait until the import is committed; a database with data is refused."""
    conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
    tables = sql.SQL(", ").join(sql.Identifier(t) for t in TARGETS)
    try:
        conn.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(tables))
    except psycopg.errors.LockNotAvailable as exc:
        raise ImportRefused("the database is in use: stop contactstream first") from exc
    filled = [t for t in TARGETS if _scalar(
        conn, sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(t)))]
    if filled:
        more = f" and {len(filled) - 4} more tables" if len(filled) > 4 else ""
        raise ImportRefused(f"the database already holds data ({', '.join(filled[:4])}{more}):"
                            " import-sqlite only fills an empty one")


def _copy(conn: psycopg.Connection[Any], source: str, target: str, columns: tuple[str, ...],
          rows: Iterable[Row]) -> int:
    """COPY (it writes identity columns as given, like OVERRIDING SYSTEM VALUE)."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(target), sql.SQL(", ").join(map(sql.Identifier, columns)))
    n = 0
    try:
        with conn.cursor().copy(statement) as out:
            for row in rows:
                out.write_row(row)
                n += 1
    except psycopg.Error as exc:
        # the primary message names columns and constraints, never the values
        raise ImportRefused(f"{source} -> {target}: PostgreSQL refused a row:"
                            f" {exc.diag.message_primary or type(exc).__name__}") from exc
    log.info("import.table", source=source, target=target, rows=n)
    return n


def _continue_sequences(conn: psycopg.Connection[Any], lite: sqlite3.Connection) -> None:
    """New rows are numbered after the imported ones, and after any number SQLite handed
    out for a row since deleted (AUTOINCREMENT never reused one)."""
    for table, column, counter in SEQUENCES:
        floor = 0
        if counter is not None:
            schema, name = counter
            row = _select(lite, f"{schema}.sqlite_sequence", "SELECT seq FROM"
                          f" {schema}.sqlite_sequence WHERE name = ?", (name,)).fetchone()
            floor = int(row[0]) if row else 0
        top = _scalar(conn, sql.SQL("SELECT COALESCE(MAX({}), 0) FROM {}").format(
            sql.Identifier(column), sql.Identifier(table)))
        last = max(int(top), floor)
        if last > 0:
            conn.execute("SELECT setval(pg_get_serial_sequence(%s, %s), %s)",
                         (table, column, last))


def _scalar(conn: psycopg.Connection[Any], query: sql.Composed) -> Any:
    row = conn.execute(query).fetchone()
    return row[0] if row else None


def _copy_key_meta(conn: psycopg.Connection[Any], lite: sqlite3.Connection) -> None:
    """The master-key check value and the destruction counter of the old key store."""
    for name, value in _select(lite, "keys.meta", "SELECT name, value FROM keys.meta"):
        conn.execute("INSERT INTO key_meta (name, value) VALUES (%s, %s) ON CONFLICT (name)"
                     " DO UPDATE SET value = excluded.value", (name, str(value)))


def run_import(src: Path, settings: Settings) -> int:
    """The command: into CONTACTSTREAM_DATABASE_URL (with the data keys, which that
    deployment keeps in PostgreSQL), or into the embedded server of DIR itself (the keys
    stay in DIR's forgetting key store). The imported files then move to
    DIR/sqlite-imported/, so `up` on DIR starts on PostgreSQL."""
    import sys

    from .database import EmbeddedPostgres

    server = None
    try:
        if settings.database_url:
            url, keys = settings.database_url, settings.key_store != "file"
        else:
            if not (src / "readstore.sqlite").exists():
                raise ImportRefused(f"{src}: no readstore.sqlite: not a data dir of the"
                                    " SQLite release")
            server = EmbeddedPostgres(src / "postgres").start()
            url, keys = server.url, False
        counts = import_sqlite(src, url, keys=keys)
    except ImportRefused as exc:
        print(f"import-sqlite: {exc}", file=sys.stderr)
        return 1
    finally:
        if server is not None:
            server.stop()
    done = src / "sqlite-imported"
    done.mkdir(exist_ok=True)
    moved = [*(f"{n}.sqlite" for n in SOURCES), "schemas.json"] + (["keys.sqlite"] if keys
                                                                    else [])
    for name in moved:
        for path in src.glob(f"{name}*"):  # with its -wal and -shm files
            path.replace(done / path.name)
    print(summary(counts, src, keys_copied=keys))
    print(f"the imported files are in {done}; contactstream up --data-dir {src} now runs"
          " on PostgreSQL")
    return 0
