"""The ingest journal and the restore of the embedded broker.

Every event accepted over HTTP is produced to Kafka (acks=all) and then written with its
partition and offset to table ``ingest_journal`` (a PostgreSQL commit that waits for its
WAL flush) *before* the 202 goes out. The table's primary key is the event id, which
makes it the duplicate index too. The records themselves (key, value, time) of a request's
events on one partition are kept compressed together in one row of ``ingest_blocks``
(migration 13); a request's lone record on a partition stays in its journal row.

The embedded broker forgets everything when it stops. On start, ``restore`` puts every
record back at its old partition and offset, taken from this journal and from the
worker's archive (adapters/readstore.py), so projections, stored offsets and the log
agree again. A record missing from both (produced straight to the memory broker and
never consumed before a crash) cannot come back; its offset is filled with an empty
placeholder record marked by the header ``contactstream-gap`` so later offsets stay put.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import psycopg
from aiokafka import AIOKafkaProducer

from ..streams.ports import GAP_HEADER, ArchivedRecord
from .database import EVENT_ID, EVENT_IN, Database, split_event_id, split_event_ids
from .logging import get_logger
from .ownership import BrokerMoved, broker_epoch

log = get_logger(__name__)


INSERT = ('INSERT INTO ingest_journal_rows (eid, etext, topic, partition, "offset", key,'
          " value, received_at, block) VALUES (%s::uuid, %s, %s, %s, %s, %s, %s, %s, %s)"
          " ON CONFLICT DO NOTHING")
BLOCK = "INSERT INTO ingest_blocks (topic, partition, records) VALUES (%s, %s, %s) RETURNING id"

# a record in a block: offset, received_at, key length (-1: no key), value length; then
# the key's and the value's bytes. The block is zlib at level 6: 244 bytes an event
# where level 1 left 263 (issue 12's footprint), for ~9 µs an event of the request's
# CPU instead of ~5 (measured over the blocks of 20,000 bench events; level 9 and lzma
# save little more: the encrypted fields' base64 is most of a record)
RECORD = struct.Struct(">qqii")
LEVEL = 6


def pack(rows: Sequence[Accepted]) -> bytes:
    """The records of ``rows`` (one topic and partition), compressed together."""
    parts: list[bytes] = []
    for a in rows:
        parts.append(RECORD.pack(a.offset, a.received_at,
                                 -1 if a.key is None else len(a.key), len(a.value)))
        parts += (a.key or b"", a.value)
    return zlib.compress(b"".join(parts), LEVEL)


def unpack(topic: str, partition: int, block: bytes) -> Iterable[ArchivedRecord]:
    data = zlib.decompress(block)
    at = 0
    while at < len(data):
        offset, received_at, key_len, value_len = RECORD.unpack_from(data, at)
        at += RECORD.size
        key = None if key_len < 0 else data[at:at + key_len]
        at += max(key_len, 0)
        yield ArchivedRecord(topic, partition, offset, key, data[at:at + value_len], [],
                             received_at)
        at += value_len


@dataclass(frozen=True, slots=True)
class Accepted:
    event_id: str
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    received_at: int


# the ids a request publishes are held, across API replicas, by transaction-level advisory
# locks on hashtextextended(id, CLAIM_SEED) until their journal rows commit (Claim)
CLAIM_SEED = 0x636C61


class Claim:
    """The event ids one request publishes, held in one open transaction from before the
    duplicate check until their journal rows commit: the same id sent to two API replicas
    at once is published by one, and the other finds it journalled (issue 9). Try-locks
    only, all or nothing: if another request holds any of the ids, this one takes none
    (``busy``) and the caller tries the whole set again after a pause, so two requests
    never hold part of each other's ids, and no thread waits on a lock."""

    def __init__(self, journal: IngestJournal, event_ids: Sequence[str]) -> None:
        self.journal = journal
        self._cm: AbstractContextManager[Any] | None = journal.db.tx()
        self.conn = self._cm.__enter__()
        self.epoch = 0
        try:
            busy = self.conn.execute(
                "SELECT count(*) FROM unnest(%s::text[]) AS id"
                " WHERE NOT pg_try_advisory_xact_lock(hashtextextended(id, %s))",
                (sorted(set(event_ids)), CLAIM_SEED)).fetchone()
        except BaseException as exc:
            self._close(exc)
            raise
        self.busy = bool(busy and busy[0])
        if self.busy:  # let go of those it did get: all or nothing
            self.release()
            return
        # the embedded broker's epoch before the produce, checked again at the commit
        self.epoch = broker_epoch(self.conn)

    def known(self, event_ids: Sequence[str]) -> set[str]:
        ids = list(event_ids)
        rows = self.conn.execute(
            f"SELECT {EVENT_ID} FROM ingest_journal_rows WHERE {EVENT_IN}",
            split_event_ids(ids)).fetchall()
        return {r[0] for r in rows}

    def commit(self, rows: Sequence[Accepted]) -> None:
        """Journal ``rows`` and commit: durable on disk when this returns; the ids go."""
        # an embedded broker restarted since the produce (by the `up` this replica joined)
        # may have taken the records before its restore: nothing is journalled then (503)
        if broker_epoch(self.conn, lock=True) != self.epoch:
            raise BrokerMoved("the embedded broker was restarted while these events were"
                              " produced; none was accepted, retry them")
        self.journal.insert(self.conn, rows)
        self._close(None)

    def release(self) -> None:
        """Nothing journalled (a failed produce): the ids go for another request."""
        self._close(RuntimeError("released"))

    def _close(self, error: BaseException | None) -> None:
        if self._cm is None:
            return
        cm, self._cm = self._cm, None
        if error is None:
            cm.__exit__(None, None, None)
        else:
            cm.__exit__(type(error), error, None)


class IngestJournal:
    """The accepted events, in the database the composition root hands over (``close``
    leaves that database open: it is not the journal's)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        # A journal commit is the promise behind a 202, so it must wait for the WAL flush.
        # That is PostgreSQL's default; a server, database or role configured with
        # synchronous_commit=off would silently break the promise, so it is put back per
        # transaction then (and a stronger setting such as remote_apply is left alone).
        self._force_sync = str(db.scalar("SHOW synchronous_commit")) == "off"
        if self._force_sync:
            log.warning("journal.synchronous_commit_off", action="forced on per commit")

    def close(self) -> None:
        """Nothing of its own to release; kept so callers need not know."""

    def claim(self, event_ids: Sequence[str]) -> Claim:
        return Claim(self, event_ids)

    def known(self, event_ids: Sequence[str]) -> set[str]:
        """The ids among ``event_ids`` that were accepted before."""
        if not event_ids:
            return set()
        ids = list(event_ids)
        rows = self.db.all(f"SELECT {EVENT_ID} FROM ingest_journal_rows WHERE {EVENT_IN}",
                           split_event_ids(ids))
        return {r[0] for r in rows}

    def record(self, rows: Sequence[Accepted]) -> None:
        """Journal ``rows`` in one transaction; durable on disk when this returns.
        An event id already journalled keeps its first position."""
        if not rows:
            return
        with self.db.tx() as conn:
            self.insert(conn, rows)

    def insert(self, conn: psycopg.Connection[Any], rows: Sequence[Accepted]) -> None:
        """``rows`` into the journal, in the caller's transaction, whose commit then waits
        for the WAL flush."""
        if self._force_sync:
            conn.execute("SET LOCAL synchronous_commit = on")
        by_place: dict[tuple[str, int], list[Accepted]] = {}
        for a in rows:
            by_place.setdefault((a.topic, a.partition), []).append(a)
        journal: list[tuple[Any, ...]] = []
        for (topic, partition), group in sorted(by_place.items()):
            if len(group) == 1:  # alone: compressed by itself it would save little
                a = group[0]
                journal.append((*split_event_id(a.event_id), topic, partition, a.offset,
                                a.key, a.value, a.received_at, None))
                continue
            # every record of the group, also one whose event id a row holds already
            # (it was produced all the same: the restore puts it back at its place)
            (block,) = conn.execute(BLOCK, (topic, partition, pack(group))).fetchall()[0]
            # the row keeps what the block does not: the id and the offset (the topic and
            # the time are the block's, migration 17)
            journal += [(*split_event_id(a.event_id), None, partition, a.offset, None,
                         None, None, block) for a in group]
        conn.cursor().executemany(INSERT, journal)

    def count(self) -> int:
        return int(self.db.scalar("SELECT COUNT(*) FROM ingest_journal"))

    def records(self) -> Iterable[ArchivedRecord]:
        """Every journalled record, streamed, in no particular order (the restore places
        each by its position): those in blocks, then those in their own rows."""
        with self.db.tx() as conn, conn.cursor(name="journal_blocks") as cur:
            cur.execute("SELECT topic, partition, records FROM ingest_blocks")
            for t, p, block in cur:
                yield from unpack(t, p, block)
        with self.db.tx() as conn, conn.cursor(name="journal_scan") as cur:
            cur.execute('SELECT topic, partition, "offset", key, value, received_at'
                        " FROM ingest_journal WHERE block IS NULL")
            for t, p, o, k, v, ts in cur:
                yield ArchivedRecord(t, p, o, k, v, [], ts)

async def restore(producer: AIOKafkaProducer, sources: Iterable[Iterable[ArchivedRecord]],
                  passed: Mapping[tuple[str, int], int] | None = None) -> dict[str, int]:
    """Produce every saved record back at its old offset; returns records per topic.

    ``passed``: (topic, partition) -> the offset below which every reader of the embedded
    broker is done (the projector's stored offsets): those records come back as packed
    placeholders (~40 bytes in the broker instead of the record, ~650 for an event), so
    the broker's memory holds a window of the log, not all of it. A partition's last
    record always comes back whole (the relays read it to know what they published)."""
    cut = dict(passed or {})
    by_position: dict[tuple[str, int], dict[int, ArchivedRecord]] = {}
    tops: dict[tuple[str, int], int] = {}
    for source in sources:
        for rec in source:
            tp = (rec.topic, rec.partition)
            tops[tp] = max(tops.get(tp, -1), rec.offset)
            if rec.offset < cut.get(tp, 0) - 1:  # the one before the cut may be the last
                continue
            by_position.setdefault(tp, {}).setdefault(rec.offset, rec)
    restored: dict[str, int] = {}
    gaps = packed = 0
    for (topic, partition), top in sorted(tops.items()):
        records = by_position.get((topic, partition), {})
        start = min(cut.get((topic, partition), 0), top)  # the last record comes back whole
        if start > 0:
            await _placeholders(producer, topic, partition, 0, start)
            packed += start
        futures = []
        for offset in range(start, top + 1):
            found = records.get(offset)
            if found is None:
                gaps += 1
                fut = await producer.send(topic, b"", partition=partition,
                                          headers=[(GAP_HEADER, b"1")])
            else:
                fut = await producer.send(topic, found.value, key=found.key,
                                          partition=partition, headers=found.headers or None,
                                          timestamp_ms=found.timestamp_ms or None)
            futures.append((offset, fut))
        for expected, fut in futures:
            meta = await fut
            if meta.offset != expected:
                raise RuntimeError(
                    f"restore of {topic}[{partition}] put offset {expected} at {meta.offset};"
                    " the broker was not empty")
        restored[topic] = restored.get(topic, 0) + len(records)
    log.info("broker.restored", records=restored, gaps=gaps, packed=packed)
    return restored


async def _placeholders(producer: AIOKafkaProducer, topic: str, partition: int, first: int,
                        end: int) -> None:
    """Placeholders for offsets first..end-1, many to a batch (no per-record round trip)."""
    offset = first
    while offset < end:
        batch = producer.create_batch()
        count = 0
        while offset + count < end and batch.append(
                key=None, value=b"", timestamp=None, headers=[(GAP_HEADER, b"1")]) is not None:
            count += 1
        batch.close()
        meta = await (await producer.send_batch(batch, topic, partition=partition))
        if meta.offset != offset:
            raise RuntimeError(f"restore of {topic}[{partition}] put placeholders from"
                               f" {offset} at {meta.offset}; the broker was not empty")
        offset += count
