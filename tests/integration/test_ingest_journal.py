"""The ingest journal in PostgreSQL: the duplicate index and the record of every accepted
event's place in the log, committed before the 202."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from contactstream.adapters.database import Database
from contactstream.adapters.journal import Accepted, IngestJournal

pytestmark = pytest.mark.integration


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url, max_size=2)
    yield database
    database.close()


def accepted(i: int, partition: int = 0, offset: int | None = None) -> Accepted:
    return Accepted(f"ev-{i}", "interactions.v1", partition, i if offset is None else offset,
                    f"c-{i}".encode(), b"\x00avro\xff" + bytes([i % 256]), 1_795_000_000_000 + i)


def test_recorded_events_are_known_and_counted(db: Database) -> None:
    journal = IngestJournal(db)
    assert journal.count() == 0 and journal.known(["ev-1"]) == set() and journal.known([]) == set()
    journal.record([accepted(i) for i in range(5)])
    journal.record([])
    assert journal.count() == 5
    assert journal.known(["ev-0", "ev-3", "ev-9", "ev-3"]) == {"ev-0", "ev-3"}
    assert journal.known([f"ev-{i}" for i in range(2000)]) == {f"ev-{i}" for i in range(5)}


def test_a_duplicate_keeps_its_first_place(db: Database) -> None:
    journal = IngestJournal(db)
    journal.record([accepted(1)])
    journal.record([accepted(1, partition=2, offset=40), accepted(2)])
    assert journal.count() == 2
    first = next(r for r in journal.records() if r.offset == 1)
    assert (first.partition, first.offset) == (0, 1)


def test_records_come_back_whole_at_their_positions(db: Database) -> None:
    journal = IngestJournal(db)
    rows = [accepted(3, partition=1), accepted(1, partition=0), accepted(2, partition=1),
            accepted(0, partition=0)]
    journal.record(rows)
    back = list(journal.records())  # in no particular order: the restore places them
    assert sorted((r.partition, r.offset) for r in back) == [(0, 0), (0, 1), (1, 2), (1, 3)]
    by_offset = {a.offset: a for a in rows}
    for r in back:
        a = by_offset[r.offset]
        assert (r.topic, r.key, r.value, r.timestamp_ms) == (a.topic, a.key, a.value,
                                                             a.received_at)
        assert r.headers == []


def test_a_request_s_records_on_a_partition_are_kept_in_one_compressed_block(
        db: Database) -> None:
    journal = IngestJournal(db)
    value = b"\x00" + b"enc1:0123456789abcdef0123:" * 12  # compressible, like the events
    rows = [Accepted(f"ev-{i}", "interactions.v1", i % 2, 100 + i, None if i == 3 else
                     f"c-{i}".encode(), value + bytes([i]), 1_795_000_000_000 + i)
            for i in range(10)]
    journal.record(rows)
    journal.record([accepted(50, partition=2)])  # alone on its partition: in its row
    blocks = db.all("SELECT partition, octet_length(records) FROM ingest_blocks"
                    " ORDER BY partition")
    assert [p for p, _ in blocks] == [0, 1]
    assert sum(n for _, n in blocks) < sum(len(a.value) for a in rows) / 2
    # a block's rows keep the id and the offset; key, value, topic and time are the block's
    assert db.all("SELECT count(*) FROM ingest_journal WHERE block IS NOT NULL AND key IS"
                  " NULL AND value IS NULL AND topic IS NULL AND received_at IS NULL"
                  )[0][0] == 10
    assert db.all("SELECT event_id FROM ingest_journal WHERE block IS NULL") == [("ev-50",)]
    back = {r.offset: r for r in journal.records()}
    assert sorted(back) == [*range(50, 51), *range(100, 110)]
    for a in [*rows, accepted(50, partition=2)]:
        r = back[a.offset]
        assert (r.topic, r.partition, r.key, r.value, r.timestamp_ms, r.headers) == (
            a.topic, a.partition, a.key, a.value, a.received_at, [])


def test_rows_journalled_before_blocks_come_back_too(db: Database) -> None:
    """A journal of before migration 13 (or an import) has every record in its row."""
    db.execute('INSERT INTO ingest_journal_rows (etext, topic, partition, "offset", key, value,'
               " received_at) VALUES ('old-1', 'interactions.v1', 0, 7, 'k', '\\x0001',"
               " 1795000000000)")
    IngestJournal(db).record([accepted(8), accepted(9)])
    back = {r.offset: (r.key, r.value) for r in IngestJournal(db).records()}
    assert back == {7: (b"k", b"\x00\x01"), 8: (b"c-8", accepted(8).value),
                    9: (b"c-9", accepted(9).value)}


def test_a_recorded_event_is_committed_when_record_returns(db: Database,
                                                           database_url: str) -> None:
    IngestJournal(db).record([accepted(7)])
    with psycopg.connect(database_url) as other:  # another process, at once
        assert other.execute("SELECT event_id FROM ingest_journal").fetchall() == [("ev-7",)]


def test_synchronous_commit_off_is_overridden(database_url: str) -> None:
    """A database configured not to wait for the WAL flush would break the promise behind
    the 202: the journal notices and waits anyway."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        name = sql.Identifier(conn.info.dbname)
        conn.execute(sql.SQL("ALTER DATABASE {} SET synchronous_commit = off")
                     .format(name))
    db = Database(database_url, max_size=2)
    try:
        journal = IngestJournal(db)
        assert journal._force_sync
        journal.record([accepted(1)])
        assert journal.known(["ev-1"]) == {"ev-1"}
    finally:
        db.close()


def test_the_archive_leaves_out_a_record_the_journal_holds_at_its_place(db: Database) -> None:
    """The archive's check finds a consumed record in the journal by its event id and
    place (migration 20); any other record is archived: another place, another topic, no
    id (it did not decode), an id the journal does not hold."""
    from contactstream.adapters.archive import archive, archived
    from contactstream.streams.ports import ArchivedRecord

    uid = "0b6f4a3e-9c1d-4e2f-8a7b-5c6d7e8f9a0b"
    held = [Accepted(uid, "interactions.v1", 0, 5, b"k", b"v", 1),
            *(accepted(i, partition=1) for i in (6, 7)),  # a block
            accepted(8, partition=2)]  # alone in its row
    IngestJournal(db).record(held)

    def rec(topic: str, partition: int, offset: int, event_id: str | None) -> ArchivedRecord:
        return ArchivedRecord(topic, partition, offset, b"k", b"v", [], 1, event_id)

    consumed = [rec("interactions.v1", 0, 5, uid), rec("interactions.v1", 1, 6, "ev-6"),
                rec("interactions.v1", 1, 7, "ev-7"), rec("interactions.v1", 2, 8, "ev-8"),
                rec("interactions.v1", 0, 9, uid),  # the same id again, at another offset
                rec("interactions.v1", 1, 10, None),  # did not decode
                rec("cases.v1", 1, 6, "ev-6"),  # another topic
                rec("interactions.v1", 2, 11, "ev-11")]  # not journalled
    with db.tx() as conn:
        archive(conn, consumed)
    assert [(r.topic, r.partition, r.offset) for r in archived(db)] == [
        ("cases.v1", 1, 6), ("interactions.v1", 0, 9), ("interactions.v1", 1, 10),
        ("interactions.v1", 2, 11)]
