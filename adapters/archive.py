"""The embedded broker's archive (table broker_archive): every record the system
published or consumed, kept so the memory-only broker can be restored at the same
partitions and offsets (adapters/journal.py)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from ..streams.ports import ArchivedRecord
from .database import Database


def _archive_row(r: ArchivedRecord) -> tuple[Any, ...]:
    hdrs = Jsonb([[k, v.decode("latin-1")] for k, v in r.headers])
    return (r.topic, r.partition, r.offset, r.key, r.value, hdrs, r.timestamp_ms)



def decode_headers(headers: list[list[str]]) -> list[tuple[str, bytes]]:
    return [(k, v.encode("latin-1")) for k, v in headers]


ARCHIVE_INSERT = ('INSERT INTO broker_archive (topic, partition, "offset", key, value, headers,'
                  " timestamp_ms) VALUES (%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING")


def archive(conn: psycopg.Connection[Any], records: Sequence[ArchivedRecord]) -> None:
    """Keep records of the embedded broker (inside the caller's transaction)."""
    if records:
        conn.cursor().executemany(ARCHIVE_INSERT, [_archive_row(r) for r in records])


def archived(db: Database) -> Iterable[ArchivedRecord]:
    """Every archived record, in (topic, partition, offset) order."""
    with db.tx() as conn, conn.cursor(name="archive_scan") as cur:
        cur.execute('SELECT topic, partition, "offset", key, value, headers, timestamp_ms'
                    ' FROM broker_archive ORDER BY topic, partition, "offset"')
        for t, p, o, k, v, h, ts in cur:
            yield ArchivedRecord(t, p, o, k, v, decode_headers(h), ts)
