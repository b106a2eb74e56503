"""The embedded broker's archive (table broker_archive): every record the system
published or consumed that the ingest journal does not hold already, kept so the
memory-only broker can be restored at the same partitions and offsets, the journal and
the archive together (adapters/journal.py)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg

from ..streams.ports import ArchivedRecord
from .database import Database, split_event_id


def _headers_json(r: ArchivedRecord) -> str:
    return json.dumps([[k, v.decode("latin-1")] for k, v in r.headers]) if r.headers else "[]"



def decode_headers(headers: list[list[str]]) -> list[tuple[str, bytes]]:
    return [(k, v.encode("latin-1")) for k, v in headers]


# one statement for a batch's records; a record the ingest journal holds at the same
# position (an event accepted over HTTP) is not copied again: the restore reads both, the
# journal first, so a second copy would only take room (~700 bytes an event). The journal
# is looked up by the record's event id (its unique index; one without an id, a record
# that did not decode or of another topic, is copied), its position then compared: the
# journal needs no index by position (migration 20)
ARCHIVE_BATCH = (
    'INSERT INTO broker_archive (topic, partition, "offset", key, value, headers,'
    " timestamp_ms) SELECT u.t, u.p, u.o, u.k, u.v, u.h::jsonb, u.ts FROM unnest("
    "%b::text[], %b::int4[], %b::int8[], %b::bytea[], %b::bytea[], %b::text[], %b::int8[],"
    " %b::text[], %b::text[]) AS u(t, p, o, k, v, h, ts, e, et)"
    " WHERE (u.e IS NULL AND u.et IS NULL) OR NOT EXISTS (SELECT 1 FROM ingest_journal_rows j"
    " LEFT JOIN ingest_blocks b ON b.id = j.block"  # a block's rows: its topic (migration 17)
    " WHERE (j.eid = u.e::uuid OR j.etext = u.et)"
    ' AND j.partition = u.p AND j."offset" = u.o AND coalesce(j.topic, b.topic) = u.t)'
    " ON CONFLICT DO NOTHING")


def _event_ids(records: Sequence[ArchivedRecord]) -> list[list[str | None]]:
    """The records' event ids split as the journal keeps them (``eid``, ``etext``)."""
    split = [split_event_id(r.event_id) if r.event_id is not None else (None, None)
             for r in records]
    return [[e for e, _ in split], [t for _, t in split]]


def archive(conn: psycopg.Connection[Any], records: Sequence[ArchivedRecord]) -> None:
    """Keep records of the embedded broker (inside the caller's transaction)."""
    if records:
        # planned for each call (not prepared): a check against the journal planned while
        # it was small would scan it on and on as it grows
        conn.execute(ARCHIVE_BATCH, [  # type: ignore[arg-type]
            [r.topic for r in records], [r.partition for r in records],
            [r.offset for r in records], [r.key for r in records],
            [r.value for r in records], [_headers_json(r) for r in records],
            [r.timestamp_ms for r in records], *_event_ids(records)], prepare=False)


def archived(db: Database) -> Iterable[ArchivedRecord]:
    """Every archived record, in (topic, partition, offset) order."""
    with db.tx() as conn, conn.cursor(name="archive_scan") as cur:
        cur.execute('SELECT topic, partition, "offset", key, value, headers, timestamp_ms'
                    ' FROM broker_archive ORDER BY topic, partition, "offset"')
        for t, p, o, k, v, h, ts in cur:
            yield ArchivedRecord(t, p, o, k, v, decode_headers(h), ts)
