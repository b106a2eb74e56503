"""Schema migrations on the real server: applied once under a lock however many processes
start at once, recorded by version, and a schema newer than the code is refused."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from contactstream.adapters import migrations
from contactstream.adapters.database import EmbeddedPostgres, create_database, with_database

pytestmark = pytest.mark.integration


@pytest.fixture
def empty_url(pg_server: EmbeddedPostgres) -> Iterator[str]:
    """A database with no schema at all (not a copy of the migrated template)."""
    name = "empty_for_migrations"
    url = create_database(pg_server.admin_url, name)
    yield url
    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def _migrate(url: str) -> int:
    return migrations.migrate(url)


def test_eight_processes_starting_at_once_apply_each_step_once(empty_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(8) as pool:
        versions = pool.map(_migrate, [empty_url] * 8)
    assert versions == [migrations.latest()] * 8
    with psycopg.connect(empty_url) as conn:
        rows = conn.execute("SELECT version, name FROM schema_migrations ORDER BY version"
                            ).fetchall()
        tables = {t for (t,) in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' UNION"
            " SELECT viewname FROM pg_views WHERE schemaname = 'public'")}
    assert [v for v, _ in rows] == list(range(1, migrations.latest() + 1))
    assert [n for _, n in rows][:3] == ["initial", "event_store", "case_routes"]
    assert {"timeline", "alerts", "contactstream_cases_events", "case_routes",
            "timeline_rows"} <= tables


def test_a_second_run_changes_nothing(database_url: str) -> None:
    before = migrations.version(database_url)
    assert before == migrations.latest()
    assert migrations.migrate(database_url) == before
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT COUNT(*) FROM schema_migrations").fetchone() == (before,)


def test_a_schema_newer_than_the_code_is_refused(database_url: str) -> None:
    newer = migrations.latest() + 1
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, 'future')",
                     (newer,))
    with pytest.raises(migrations.SchemaTooNew, match=f"version {newer}"):
        migrations.migrate(database_url)


def test_a_sqlite_url_is_refused_naming_the_import() -> None:
    from contactstream.adapters.database import DatabaseError, check_url

    with pytest.raises(DatabaseError, match="import-sqlite"):
        check_url("sqlite:///tmp/readstore.sqlite")


def _before_19(conn: psycopg.Connection[Any]) -> None:
    """Undo 19 (and 21, which changed its timeline): the tables keyed by an event id in
    text, as 18 left them."""
    for name, rows in (("timeline", "timeline_rows"), ("case_routes", "case_route_rows"),
                       ("ingest_journal", "ingest_journal_rows")):
        conn.execute(f"CREATE TABLE {name}_ AS SELECT * FROM {name}")  # noqa: S608
        conn.execute(f"DROP VIEW {name}")
        conn.execute(f"DROP TABLE {rows}")
        conn.execute(f"ALTER TABLE {name}_ RENAME TO {name}")
        conn.execute(f"ALTER TABLE {name} ADD PRIMARY KEY (event_id)")
    conn.execute("CREATE INDEX timeline_by_customer ON timeline (customer_id, occurred_ms)")
    conn.execute("DROP FUNCTION event_uuids, event_etext, event_uuid, event_time")
    conn.execute("ALTER TABLE customer_channels DROP COLUMN last_tz")


def test_event_ids_stored_in_text_before_version_19_are_split_and_read_the_same(
        database_url: str) -> None:
    ids = ["0b6f4a3e-9c1d-4e2f-8a7b-5c6d7e8f9a0b", "0B6F4A3E-9C1D-4E2F-8A7B-5C6D7E8F9A0B",
           "pbx-42"]
    with psycopg.connect(database_url) as conn:
        _before_19(conn)
        for i, event_id in enumerate(ids):
            conn.execute("INSERT INTO timeline VALUES (%s,'c-1',%s,'2026-11-01T00:00:00+00:00',"
                         "0,'call.started','voice','t',NULL,NULL,NULL,'{}'::jsonb,NULL)",
                         (event_id, i))
            conn.execute("INSERT INTO case_routes VALUES (%s, %s)", (event_id, f"case-{i}"))
            conn.execute('INSERT INTO ingest_journal (event_id, topic, partition, "offset",'
                         " value, received_at) VALUES (%s,'t',0,%s,'\\x00',0)", (event_id, i))
        (step,) = [s for s in migrations.steps() if s.version == 19]
        step.apply(conn)  # as migrate() runs it, on the rows of before
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT event_id FROM timeline ORDER BY occurred_ms").fetchall() \
            == [(e,) for e in ids]
        assert conn.execute("SELECT event_id, case_id FROM case_routes ORDER BY case_id"
                            ).fetchall() == [(e, f"case-{i}") for i, e in enumerate(ids)]
        assert conn.execute('SELECT event_id FROM ingest_journal ORDER BY "offset"'
                            ).fetchall() == [(e,) for e in ids]
        for table in ("timeline_rows", "case_route_rows", "ingest_journal_rows"):
            assert conn.execute(f"SELECT eid::text, etext FROM {table}"  # noqa: S608
                                " ORDER BY etext NULLS FIRST").fetchall() == [
                (ids[0], None), (None, ids[1]), (None, ids[2])]


def test_complaints_recorded_before_version_6_get_the_case_their_envelope_named(
        database_url: str) -> None:
    with psycopg.connect(database_url) as conn:  # back to version 5, with two complaints
        _before_19(conn)
        conn.execute("ALTER TABLE complaints DROP COLUMN case_id")
        conn.execute("DROP TABLE avro_subjects")  # and without the steps after 6
        conn.execute("DROP TABLE erased_groups, retention_policy")
        conn.execute("ALTER TABLE access_log DROP COLUMN items")
        conn.execute("DROP TABLE workers, leases, identity_epoch")  # and of 10
        conn.execute("DROP SEQUENCE identity_seq")
        # the edges as 1 made them (22 made them compact; 10 adds seq, 16 and 18 the keys)
        conn.execute("DROP TABLE identity_edges")
        conn.execute('CREATE TABLE identity_edges (edge TEXT COLLATE "C" PRIMARY KEY,'
                     ' claim_ms BIGINT NOT NULL, claim_event TEXT COLLATE "C" NOT NULL)')
        conn.execute("ALTER TABLE identity_bases DROP COLUMN seq")
        conn.execute("DROP TABLE score_queue")  # and of 11
        conn.execute("CREATE TABLE customer_activity (base TEXT)")  # which 12 drops
        # and of 13 (with it goes 17's check, which names the column)
        conn.execute("ALTER TABLE ingest_journal DROP COLUMN block")
        conn.execute("DROP TABLE ingest_blocks")
        conn.execute("ALTER TABLE ingest_journal ALTER COLUMN value SET NOT NULL")
        conn.execute("DELETE FROM schema_migrations WHERE version >= 6")
        for event_id, case_id in (("cmp-1", "case-9"), ("cmp-2", None)):
            conn.execute("INSERT INTO timeline VALUES (%s,'c-1',0,'2026-11-01T00:00:00+00:00',"
                         "0,'complaint.filed','web','t',NULL,NULL,%s,'{}'::jsonb,NULL)",
                         (event_id, case_id))
            conn.execute("INSERT INTO complaints VALUES (%s, 'c-1', 0)", (event_id,))
    assert migrations.migrate(database_url) == migrations.latest()
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT event_id, case_id FROM complaints ORDER BY event_id"
                            ).fetchall() == [("cmp-1", "case-9"), ("cmp-2", None)]
