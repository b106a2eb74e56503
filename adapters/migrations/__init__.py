"""Versioned schema migrations, applied at start under a database-wide lock.

Each step is ``NNNN_name.sql`` in this folder or a Python step registered below; the
table ``schema_migrations`` records what ran. Many processes starting at once are safe
(``pg_advisory_xact_lock``: one applies, the others wait and then find nothing to do),
and a database migrated by newer code than this one is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from ..database import DatabaseError
from ..logging import get_logger

log = get_logger(__name__)

HERE = Path(__file__).resolve().parent
LOCK_KEY = 0x636F6E74  # "cont": pg_advisory_xact_lock key of every migration run


class SchemaTooNew(DatabaseError):
    """The database was migrated by a newer contactstream than this one."""


@dataclass(frozen=True)
class Step:
    version: int
    name: str
    apply: Callable[[psycopg.Connection[Any]], None]


def _sql_step(path: Path) -> Step:
    version, name = path.stem.split("_", 1)

    def apply(conn: psycopg.Connection[Any]) -> None:
        conn.execute(path.read_text())  # type: ignore[call-overload]
    return Step(int(version), name, apply)


def _event_store(conn: psycopg.Connection[Any]) -> None:
    """The eventsourcing library's tables for the Case and CustomerLink aggregates, in its
    own DDL (types, tables, indexes), created through this transaction's connection."""
    from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

    info = conn.info
    datastore = PostgresDatastore(
        dbname=info.dbname, host=info.host, port=str(info.port), user=info.user,
        password=info.password or "", pool_size=1, max_overflow=0)
    try:
        for table in ("contactstream_cases_events", "contactstream_identity_events"):
            recorder = PostgresApplicationRecorder(datastore, events_table_name=table)
            for statement in recorder.sql_create_statements:
                conn.execute("SAVEPOINT es")
                try:
                    conn.execute(statement)
                    conn.execute("RELEASE SAVEPOINT es")
                except psycopg.errors.DuplicateObject:  # the shared row type, made once
                    conn.execute("ROLLBACK TO SAVEPOINT es")
    finally:
        datastore.close()


def steps() -> list[Step]:
    found = [_sql_step(p) for p in sorted(HERE.glob("[0-9][0-9][0-9][0-9]_*.sql"))]
    found.append(Step(2, "event_store", _event_store))
    found.sort(key=lambda s: s.version)
    versions = [s.version for s in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migration versions must be 1..n without gaps: {versions}")
    return found


def latest() -> int:
    return len(steps())


def migrate(url: str) -> int:
    """Bring the database of ``url`` to the newest schema; returns its version."""
    known = steps()
    with psycopg.connect(url, connect_timeout=10) as conn:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations ("
                         " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                         " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
            row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations"
                               ).fetchone()
            current = int(row[0]) if row else 0
            if current > len(known):
                raise SchemaTooNew(
                    f"the database is at schema version {current}, newer than this"
                    f" contactstream knows ({len(known)}): upgrade contactstream")
            for step in known[current:]:
                step.apply(conn)
                conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                             (step.version, step.name))
                log.info("database.migrated", version=step.version, step=step.name)
    return max(current, len(known))


def version(url: str) -> int:
    with psycopg.connect(url, connect_timeout=10, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()
        if not exists or exists[0] is None:
            return 0
        row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
        return int(row[0]) if row else 0


