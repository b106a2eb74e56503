"""The ingest journal and the restore of the embedded broker.

Every event accepted over HTTP is produced to Kafka (acks=all) and then written with its
partition and offset to ``ingest.sqlite`` (fsync on commit) *before* the 202 goes out.
The table's primary key is the event id, which makes it the duplicate index too.

The embedded broker forgets everything when it stops. On start, ``restore`` puts every
record back at its old partition and offset, taken from this journal and from the
worker's archive (adapters/readstore.py), so projections, stored offsets and the log
agree again. A record missing from both (produced straight to the memory broker and
never consumed before a crash) cannot come back; its offset is filled with an empty
placeholder record marked by the header ``contactstream-gap`` so later offsets stay put.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaProducer

from .logging import get_logger
from .readstore import ArchivedRecord
from .sqlite import connect

log = get_logger(__name__)

GAP_HEADER = "contactstream-gap"

SCHEMA = """
CREATE TABLE IF NOT EXISTS accepted (
  event_id TEXT PRIMARY KEY,
  topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
  key BLOB, value BLOB NOT NULL, received_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS accepted_by_position ON accepted (topic, partition, offset);
"""


@dataclass(frozen=True, slots=True)
class Accepted:
    event_id: str
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    received_at: int


class IngestJournal:
    def __init__(self, path: Path) -> None:
        self.conn = connect(path, durable=True)
        self.conn.executescript(SCHEMA)

    def close(self) -> None:
        self.conn.close()

    def known(self, event_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(event_ids), 500):
            chunk = event_ids[i:i + 500]
            rows = self.conn.execute(
                f"SELECT event_id FROM accepted WHERE event_id IN ({','.join('?' * len(chunk))})",
                chunk)
            found.update(r[0] for r in rows)
        return found

    def record(self, rows: Sequence[Accepted]) -> None:
        c = self.conn
        c.execute("BEGIN")
        try:
            c.executemany("INSERT OR IGNORE INTO accepted VALUES (?,?,?,?,?,?,?)",
                          [(a.event_id, a.topic, a.partition, a.offset, a.key, a.value,
                            a.received_at) for a in rows])
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM accepted").fetchone()[0])

    def records(self) -> Iterable[ArchivedRecord]:
        rows = self.conn.execute(
            "SELECT topic, partition, offset, key, value, received_at FROM accepted")
        for t, p, o, k, v, ts in rows:
            yield ArchivedRecord(t, p, o, k, v, [], ts)


async def restore(producer: AIOKafkaProducer, sources: Iterable[Iterable[ArchivedRecord]],
                  ) -> dict[str, int]:
    """Produce every saved record back at its old offset; returns records per topic."""
    by_position: dict[tuple[str, int], dict[int, ArchivedRecord]] = {}
    for source in sources:
        for rec in source:
            by_position.setdefault((rec.topic, rec.partition), {}).setdefault(rec.offset, rec)
    restored: dict[str, int] = {}
    gaps = 0
    for (topic, partition), records in sorted(by_position.items()):
        futures = []
        for offset in range(max(records) + 1):
            rec = records.get(offset)
            if rec is None:
                gaps += 1
                fut = await producer.send(topic, b"", partition=partition,
                                          headers=[(GAP_HEADER, b"1")])
            else:
                fut = await producer.send(topic, rec.value, key=rec.key, partition=partition,
                                          headers=rec.headers or None,
                                          timestamp_ms=rec.timestamp_ms or None)
            futures.append((offset, fut))
        for expected, fut in futures:
            meta = await fut
            if meta.offset != expected:
                raise RuntimeError(
                    f"restore of {topic}[{partition}] put offset {expected} at {meta.offset};"
                    " the broker was not empty")
        restored[topic] = restored.get(topic, 0) + len(records)
    log.info("broker.restored", records=restored, gaps=gaps)
    return restored
