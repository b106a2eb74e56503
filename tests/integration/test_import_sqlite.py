"""``import-sqlite`` on a data dir really written by the SQLite release 0.1 (commit 27fec69).

tests/data/sqlite-release-0.1.tar.gz: three runs of its ``contactstream up``, stopped with
SIGTERM: the first 1,200 events of its demo population (``DemoPopulation(seed=7,
customers=400).history(days=120)``, what ``up --demo`` publishes first) sent with its
``publish``, SLA policies, a calendar, a webhook that fails, agents working cases, an
erasure and an unmerge; then its *.sqlite files (VACUUM INTO copies, WAL mode kept),
schemas.json, tokens.json and master.key.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tarfile
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from contactstream.adapters.figurestore import FIGURE_TABLES
from contactstream.adapters.import_sqlite import ImportRefused, import_sqlite, summary

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "sqlite-release-0.1.tar.gz"

# where each PostgreSQL table's rows were in the old data dir
SOURCE_COUNTS = {
    "timeline_rows": ("readstore", "SELECT COUNT(*) FROM timeline"),
    "identifiers": ("readstore", "SELECT COUNT(*) FROM identifiers"),
    "customers": ("readstore", "SELECT COUNT(*) FROM customers"),
    "cases": ("readstore", "SELECT COUNT(*) FROM cases"),
    "identity_edges": ("readstore", "SELECT COUNT(*) FROM identity_edges"),
    "identity_bases": ("readstore", "SELECT COUNT(*) FROM identity_bases"),
    "customer_links": ("readstore", "SELECT COUNT(*) FROM customer_links"),
    "identity_separations": ("readstore", "SELECT COUNT(*) FROM identity_separations"),
    "offsets": ("readstore", "SELECT COUNT(*) FROM offsets"),
    "ingest_journal_rows": ("ingest", "SELECT COUNT(*) FROM accepted"),
    "sla_policies": ("control", "SELECT COUNT(*) FROM sla_policies"),
    "calendars": ("control", "SELECT COUNT(*) FROM calendars"),
    "webhooks": ("control", "SELECT COUNT(*) FROM webhooks"),
    "webhook_failures": ("control", "SELECT COUNT(*) FROM webhook_failures"),
    "case_index": ("control", "SELECT COUNT(*) FROM case_index"),
    "complaints": ("control", "SELECT COUNT(*) FROM complaints"),
    "alerts": ("control", "SELECT COUNT(*) FROM alerts"),
    "positions": ("control", "SELECT COUNT(*) FROM positions"),
    "erasures": ("control", "SELECT COUNT(*) FROM erasures"),
    "unmerge_requests": ("control", "SELECT COUNT(*) FROM unmerge_requests"
                                    " WHERE kind = 'unmerge'"),
    "erasure_requests": ("control", "SELECT COUNT(*) FROM unmerge_requests WHERE kind = 'erase'"),
    "access_log": ("audit", "SELECT COUNT(*) FROM access_log"),
    "contactstream_cases_events": ("cases", "SELECT COUNT(*) FROM stored_events"),
    "contactstream_identity_events": ("identity", "SELECT COUNT(*) FROM stored_events"),
}
# PostgreSQL tables the import leaves empty: the data keys stay in keys.sqlite; 0.1 kept
# no case routes (each interaction's case, recorded from migration 3 on); the customer
# figures (migration 4) the worker builds from the imported timeline at its first start
# avro_subjects: 0.1 kept no subject versions; every process registers its subjects at start
NOT_IMPORTED = {"schema_migrations", "key_meta", "key_customers", "data_keys", "case_route_rows",
                "avro_subjects", "erased_groups", "retention_policy", *FIGURE_TABLES,
                "leases", "workers", "identity_epoch",  # issue 9's, of running processes
                "ingest_blocks"}  # the old journal's records stay in their rows


@pytest.fixture
def old_dir(tmp_path: Path) -> Path:
    target = tmp_path / "old-data"
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(target, filter="data")
    return target


@pytest.fixture
def pg(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


def lite(old_dir: Path, name: str) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{old_dir / name}.sqlite?mode=ro", uri=True)


def lite_all(old_dir: Path, name: str, query: str) -> list[tuple[Any, ...]]:
    with closing(lite(old_dir, name)) as conn:
        return conn.execute(query).fetchall()


def pg_count(pg: psycopg.Connection[Any], table: str) -> int:
    row = pg.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()
    assert row is not None
    return int(row[0])


def archive_keys(old_dir: Path) -> set[tuple[str, int, int]]:
    """The records of both old archives (the cases topic is in both)."""
    query = 'SELECT topic, partition, "offset" FROM archive'
    return set(lite_all(old_dir, "readstore", query)) | set(lite_all(old_dir, "control", query))


def test_every_row_of_the_old_data_dir_arrives(old_dir: Path, database_url: str,
                                               pg: psycopg.Connection[Any]) -> None:
    counts = import_sqlite(old_dir, database_url)

    expected = {table: lite_all(old_dir, name, query)[0][0]
                for table, (name, query) in SOURCE_COUNTS.items()}
    expected["broker_archive"] = len(archive_keys(old_dir))
    expected["avro_schemas"] = len(json.loads((old_dir / "schemas.json").read_text()))
    assert counts == expected
    assert {table: pg_count(pg, table) for table in counts} == expected
    assert min(expected.values()) >= 1, "the fixture has a row for every table"

    tables = {r[0] for r in pg.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert tables - NOT_IMPORTED == set(counts), "every table of the schema is filled"
    assert pg_count(pg, "data_keys") == 0

    text = summary(counts, old_dir)
    assert f"{sum(counts.values())} rows" in text and "keys.sqlite" in text


def test_rows_arrive_unchanged(old_dir: Path, database_url: str,
                               pg: psycopg.Connection[Any]) -> None:
    import_sqlite(old_dir, database_url)

    # the whole timeline, payloads as JSON values
    columns = ("event_id, customer_id, occurred_ms, occurred_at, received_at, type, channel,"
               " source, agent_id, queue, case_id, payload, key_id")
    old = {r[0]: (*r[:11], json.loads(r[11]), r[12])
           for r in lite_all(old_dir, "readstore", f"SELECT {columns} FROM timeline")}
    new = {r[0]: r for r in pg.execute(f"SELECT {columns} FROM timeline")}
    assert new == old
    erased = [r for r in new.values() if r[1].startswith("erased-")]
    assert erased, "the erasure's pseudonymous rows came along"

    # an SLA alert, its detail as JSON
    alert_cols = "seq, id, kind, case_id, customer_id, metric, due_at, at, level, detail"
    (last,) = lite_all(old_dir, "control", f"SELECT {alert_cols} FROM alerts WHERE"
                       " kind = 'sla.breached' ORDER BY seq DESC LIMIT 1")
    row = pg.execute(f"SELECT {alert_cols} FROM alerts WHERE seq = %s", (last[0],)).fetchone()
    assert row == (*last[:9], json.loads(last[9]))

    # identity flags become booleans
    strong = lite_all(old_dir, "readstore", "SELECT kind, value FROM identifiers WHERE strong")
    assert set(pg.execute("SELECT kind, value FROM identifiers WHERE strong")) == set(strong)

    # the broker archive: of a record both archives hold (the cases topic), the worker's
    # copy with the broker's timestamp, as the old restore chose
    query = 'SELECT topic, partition, "offset", key, value, headers, timestamp_ms FROM archive'
    relays, worker = ({r[:3]: (*r[:5], json.loads(r[5]), r[6])
                       for r in lite_all(old_dir, name, query)}
                      for name in ("control", "readstore"))
    assert any(relays[k] != worker[k] for k in relays.keys() & worker.keys())
    got = pg.execute(query.replace("archive", "broker_archive")).fetchall()
    assert {r[:3]: r for r in got} == relays | worker


def test_requests_split_by_kind(old_dir: Path, database_url: str,
                                pg: psycopg.Connection[Any]) -> None:
    import_sqlite(old_dir, database_url)
    old = lite_all(old_dir, "control", "SELECT seq, survivor, member, by, reason, at, done_at,"
                   " error, kind, payload, result FROM unmerge_requests ORDER BY seq")
    # SQLite's datetime('now'): UTC without an offset
    done = {r[0]: datetime.fromisoformat(r[6]).replace(tzinfo=UTC) for r in old}
    (erase,) = [r for r in old if r[8] == "erase"]
    (unmerge,) = [r for r in old if r[8] == "unmerge"]

    got = pg.execute("SELECT seq, customer_id, requested_by, at, payload, done_at, error,"
                     " result FROM erasure_requests").fetchall()
    assert got == [(erase[0], erase[1], erase[3], erase[5], json.loads(erase[9]),
                    done[erase[0]], None, json.loads(erase[10]))]
    got = pg.execute("SELECT seq, survivor, member, requested_by, reason, at, done_at, error,"
                     " result FROM unmerge_requests").fetchall()
    assert got == [(*unmerge[:6], done[unmerge[0]], None, None)]


def test_stored_events_keep_ids_versions_and_notification_ids(
        old_dir: Path, database_url: str, pg: psycopg.Connection[Any]) -> None:
    import_sqlite(old_dir, database_url)
    for name, table in (("cases", "contactstream_cases_events"),
                        ("identity", "contactstream_identity_events")):
        per_originator = lite_all(old_dir, name, "SELECT originator_id, COUNT(*) FROM"
                                  " stored_events GROUP BY originator_id")
        got = {r[0].hex: r[1] for r in pg.execute(
            f"SELECT originator_id, COUNT(*) FROM {table} GROUP BY originator_id")}
        assert got == dict(per_originator)

        (busiest, _n), *_ = sorted(per_originator, key=lambda r: (-r[1], r[0]))
        old = lite_all(old_dir, name, "SELECT originator_version, topic, state, rowid FROM"
                       f" stored_events WHERE originator_id = '{busiest}'"
                       " ORDER BY originator_version")
        new = pg.execute(f"SELECT originator_version, topic, state, notification_id FROM {table}"
                         " WHERE originator_id = %s ORDER BY originator_version",
                         (busiest,)).fetchall()
        assert new == old and len(new) > 1


def test_numbering_continues_after_the_imported_rows(
        old_dir: Path, database_url: str, pg: psycopg.Connection[Any]) -> None:
    import_sqlite(old_dir, database_url)
    ((top_alert,),) = lite_all(old_dir, "control", "SELECT MAX(seq) FROM alerts")
    ((top_request,),) = lite_all(old_dir, "control", "SELECT MAX(seq) FROM unmerge_requests")
    ((top_access,),) = lite_all(old_dir, "audit", "SELECT MAX(seq) FROM access_log")
    ((top_case_event,),) = lite_all(old_dir, "cases", "SELECT MAX(rowid) FROM stored_events")

    def new(sql: str) -> int:
        row = pg.execute(sql).fetchone()
        assert row is not None
        return int(row[0])

    assert new("INSERT INTO alerts (id, kind, at, level, detail) VALUES"
               " ('new-alert', 'sla.breached', 'now', 'critical', '{}') RETURNING seq"
               ) == top_alert + 1
    assert new("INSERT INTO unmerge_requests (survivor, member, requested_by, reason, at)"
               " VALUES ('c-1', 'c-2', 'admin:x', 'test', 'now') RETURNING seq") > top_request
    assert new("INSERT INTO erasure_requests (customer_id, requested_by, at, payload)"
               " VALUES ('c-1', 'admin:x', 'now', '{}') RETURNING seq") > top_request
    assert new("INSERT INTO access_log (at, method, path, action, status) VALUES"
               " ('now', 'GET', '/x', 'x', 200) RETURNING seq") == top_access + 1
    assert new("INSERT INTO contactstream_cases_events (originator_id, originator_version,"
               " topic, state) VALUES (gen_random_uuid(), 1, 't', '') RETURNING notification_id"
               ) == top_case_event + 1


def test_a_database_with_data_is_refused(old_dir: Path, database_url: str,
                                         pg: psycopg.Connection[Any]) -> None:
    first = import_sqlite(old_dir, database_url)
    with pytest.raises(ImportRefused,
                       match=r"already holds data \(timeline_rows, identifiers, .* and 22"
                             " more tables"):
        import_sqlite(old_dir, database_url)
    assert {table: pg_count(pg, table) for table in first} == first


def test_one_event_row_is_enough_to_refuse(old_dir: Path, database_url: str,
                                           pg: psycopg.Connection[Any]) -> None:
    pg.execute("INSERT INTO contactstream_identity_events (originator_id, originator_version,"
               " topic, state) VALUES (gen_random_uuid(), 1, 't', '')")
    with pytest.raises(ImportRefused, match=r"already holds data \(contactstream_identity"):
        import_sqlite(old_dir, database_url)
    assert pg_count(pg, "timeline") == 0


def test_a_row_postgresql_refuses_leaves_nothing_behind(
        old_dir: Path, database_url: str, pg: psycopg.Connection[Any]) -> None:
    with closing(sqlite3.connect(old_dir / "control.sqlite")) as conn, conn:
        conn.execute("UPDATE unmerge_requests SET payload = NULL WHERE kind = 'erase'")
    with pytest.raises(ImportRefused, match=r"erasure_requests: .*payload"):
        import_sqlite(old_dir, database_url)
    assert pg_count(pg, "timeline") == 0 and pg_count(pg, "alerts") == 0


def test_the_old_files_are_only_read(old_dir: Path, database_url: str) -> None:
    kept = {name: (old_dir / name).read_bytes() for name in ("keys.sqlite", "master.key",
                                                              "tokens.json", "audit.sqlite")}
    import_sqlite(old_dir, database_url)
    assert {name: (old_dir / name).read_bytes() for name in kept} == kept


def test_not_a_data_dir(tmp_path: Path, old_dir: Path, database_url: str) -> None:
    with pytest.raises(ImportRefused, match="is not a directory"):
        import_sqlite(tmp_path / "nowhere", database_url)
    (old_dir / "readstore.sqlite").unlink()
    with pytest.raises(ImportRefused, match=r"readstore\.sqlite is missing"):
        import_sqlite(old_dir, database_url)


def test_a_running_release_is_refused(old_dir: Path, database_url: str) -> None:
    (old_dir / "up.pid").write_text(str(os.getpid()))
    with pytest.raises(ImportRefused, match="is running on"):
        import_sqlite(old_dir, database_url)
