"""An event id is kept once in the timeline, the ingest journal and the case routes,
whoever writes it (migration 15 had put exclusion constraints on hash indexes instead of
the primary keys, and 18 put the keys back: what these tests ask held for both; since 19
a UUID is kept in a uuid column and any other id in a text one, each unique)."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from contactstream.adapters.database import split_event_id

pytestmark = pytest.mark.integration

# each row as the code writes it: into the table under the view, the id split in two
ROW = {
    "timeline": "INSERT INTO timeline_rows (eid, etext, customer_id, occurred_ms, occurred_at,"
                " received_at, type, channel, source, payload) SELECT event_uuid(i),"
                " event_etext(i), 'c-1',0,'2026-11-01T00:00:00+00:00',0,'web.visit','web','t',"
                "'{}'::jsonb FROM (SELECT %s::text) AS x(i)",
    "case_routes": "INSERT INTO case_route_rows (eid, etext, case_id) SELECT event_uuid(i),"
                   " event_etext(i), NULL FROM (SELECT %s::text) AS x(i)",
    "ingest_journal": "INSERT INTO ingest_journal_rows (eid, etext, topic, partition,"
                      " \"offset\", value, received_at) SELECT event_uuid(i), event_etext(i),"
                      " 't',0,0,'\\x00',0 FROM (SELECT %s::text) AS x(i)",
}
UNDER = {"timeline": "timeline_rows", "case_routes": "case_route_rows",
         "ingest_journal": "ingest_journal_rows"}
RETURNING = " ON CONFLICT DO NOTHING RETURNING coalesce(eid::text, etext)"
# an id of any text, and a UUID in its canonical text (kept as a uuid)
IDS = {"text": "ev-1", "uuid": "0b6f4a3e-9c1d-4e2f-8a7b-5c6d7e8f9a0b"}


@pytest.mark.parametrize("kind", sorted(IDS))
@pytest.mark.parametrize("table", sorted(ROW))
def test_a_second_row_with_an_id_is_refused_or_skipped(database_url: str, table: str,
                                                       kind: str) -> None:
    eid = IDS[kind]
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(ROW[table], (eid,))
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(ROW[table], (eid,))
        assert conn.execute(ROW[table] + RETURNING, (eid,)).fetchall() == []
        # the view shows the id as it was given, and finds it by it
        assert conn.execute(f"SELECT event_id FROM {table} WHERE event_id = ANY(%s)",  # noqa: S608
                            ([eid, "ev-2"],)).fetchall() == [(eid,)]
        stored = conn.execute(f"SELECT eid IS NOT NULL FROM {UNDER[table]}").fetchone()  # noqa: S608
        assert stored == (kind == "uuid",)


@pytest.mark.parametrize("table", sorted(ROW))
def test_the_same_id_from_two_transactions_at_once_is_stored_once(database_url: str,
                                                                  table: str) -> None:
    first = psycopg.connect(database_url)
    second = psycopg.connect(database_url)
    try:
        assert first.execute(ROW[table] + RETURNING, ("ev-9",)).fetchall() == [("ev-9",)]
        got: dict[str, list[tuple[str]]] = {}

        def insert() -> None:  # waits for the first transaction to end
            got["second"] = second.execute(ROW[table] + RETURNING, ("ev-9",)).fetchall()
            second.commit()

        thread = threading.Thread(target=insert)
        thread.start()
        time.sleep(0.3)
        assert thread.is_alive()  # the second waits: the first may still roll back
        first.commit()
        thread.join(10)
        assert got["second"] == []
        assert first.execute(f"SELECT count(*) FROM {table} WHERE event_id='ev-9'"  # noqa: S608
                             ).fetchone() == (1,)
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize("event_id", [
    "0b6f4a3e-9c1d-4e2f-8a7b-5c6d7e8f9a0b", "0B6F4A3E-9C1D-4E2F-8A7B-5C6D7E8F9A0B",
    "{0b6f4a3e-9c1d-4e2f-8a7b-5c6d7e8f9a0b}", "0b6f4a3e9c1d4e2f8a7b5c6d7e8f9a0b",
    "0b6f4a3e-9c1d-4e2f-8a7b-5c6d7e8f9a0b ", "x0b6f4a3e-9c1d-4e2f-8a7b-5c6d7e8f9a0b",
    "0b6f4a3e-9c1d-4e2f-8a7b-5c6d7e8f9a0", "ev-1", "ünïcode-✓", "a" * 200])
def test_only_the_canonical_text_of_a_uuid_is_kept_as_a_uuid_the_same_in_sql_and_python(
        database_url: str, event_id: str) -> None:
    """Another spelling of a UUID is another id (as text it differs): it stays text, so
    it comes back exactly as sent; the import splits ids in Python the same way."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT event_uuid(%s)::text, event_etext(%s),"
                           " coalesce(event_uuid(%s)::text, event_etext(%s))",
                           (event_id,) * 4).fetchone()
    assert row is not None
    assert (row[0], row[1]) == split_event_id(event_id)
    assert row[2] == event_id
    assert (row[0] is not None) == (event_id == "0b6f4a3e-9c1d-4e2f-8a7b-5c6d7e8f9a0b")
