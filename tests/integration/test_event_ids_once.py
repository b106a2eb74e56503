"""An event id is kept once in the timeline, the ingest journal and the case routes,
whoever writes it (their primary keys; migration 15 had put exclusion constraints on hash
indexes instead, and 18 put the keys back: what these tests ask held for both)."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

pytestmark = pytest.mark.integration

ROW = {
    "timeline": "INSERT INTO timeline VALUES (%s,'c-1',0,'2026-11-01T00:00:00+00:00',0,"
                "'web.visit','web','t',NULL,NULL,NULL,'{}'::jsonb,NULL)",
    "case_routes": "INSERT INTO case_routes VALUES (%s, NULL)",
    "ingest_journal": "INSERT INTO ingest_journal (event_id, topic, partition, \"offset\","
                      " value, received_at) VALUES (%s,'t',0,0,'\\x00',0)",
}


@pytest.mark.parametrize("table", sorted(ROW))
def test_a_second_row_with_an_id_is_refused_or_skipped(database_url: str, table: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(ROW[table], ("ev-1",))
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(ROW[table], ("ev-1",))
        skipped = conn.execute(ROW[table] + " ON CONFLICT DO NOTHING RETURNING event_id",
                               ("ev-1",)).fetchall()
        assert skipped == []
        assert conn.execute(f"SELECT count(*) FROM {table} WHERE event_id = ANY(%s)",  # noqa: S608
                            (["ev-1", "ev-2"],)).fetchone() == (1,)


@pytest.mark.parametrize("table", sorted(ROW))
def test_the_same_id_from_two_transactions_at_once_is_stored_once(database_url: str,
                                                                  table: str) -> None:
    first = psycopg.connect(database_url)
    second = psycopg.connect(database_url)
    try:
        assert first.execute(ROW[table] + " ON CONFLICT DO NOTHING RETURNING event_id",
                             ("ev-9",)).fetchall() == [("ev-9",)]
        got: dict[str, list[tuple[str]]] = {}

        def insert() -> None:  # waits for the first transaction to end
            got["second"] = second.execute(
                ROW[table] + " ON CONFLICT DO NOTHING RETURNING event_id", ("ev-9",)
            ).fetchall()
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
