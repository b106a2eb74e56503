"""Outbox relays: publish an ordered log (the case store's notifications, the alert log)
to a Kafka topic, tracking the position, so after a crash nothing is lost and nothing is
published twice.

Each record carries its log position in the header ``contactstream-seq`` and goes to the
partition its key hashes to. The position commits after Kafka acknowledged the batch. A
crash between the two leaves a published tail the position does not know about; on start
the relay reads the last records of every partition and skips what they already hold.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from .ports import ArchivedRecord, ConsumerFactory, Positions
from .telemetry import PUBLISHED

log = structlog.get_logger(__name__)

SEQ_HEADER = "contactstream-seq"


@dataclass(frozen=True)
class OutboxItem:
    seq: int
    key: bytes
    value: bytes
    ref: Any = None  # what the caller wants back in on_published (e.g. the case id)
    # what picks the partition when it is not the key: a case event goes to the partition
    # of its customer's interactions (the Kafka key of both is the base customer), so the
    # worker holding that partition reads both (issue 9, "Many workers")
    partition_key: bytes | None = None


class OutboxRelay:
    def __init__(self, name: str, topic: str, producer: AIOKafkaProducer,
                 new_consumer: ConsumerFactory, control: Positions,
                 source: Callable[[int, int], Sequence[OutboxItem]],
                 on_published: Callable[[Sequence[OutboxItem]], None] | None = None,
                 idle_s: float = 0.2, archive: bool = False, batch: int = 2000) -> None:
        self.name = name
        self.topic = topic
        self.producer = producer
        self.new_consumer = new_consumer
        # on the embedded broker the published records are kept with the position
        self.archive = archive
        self.control = control
        self.source = source
        self.on_published = on_published
        self.idle_s = idle_s
        # records a round reads, publishes and then advances the position past: a burst
        # of 1,000 alerts due at once went out in two rounds of 500, the second waiting
        # for the first's acks and position (~25 ms a round)
        self.batch = batch
        self._wake = asyncio.Event()
        self._partitioner = DefaultPartitioner()
        self._tail: dict[int, int] = {}
        self._seen: dict[int, ArchivedRecord] = {}
        self.published = 0

    def notify(self) -> None:
        self._wake.set()

    def _partition(self, key: bytes, partitions: list[int]) -> int:
        return int(self._partitioner(key, partitions, partitions))

    async def _read_tail(self, partitions: list[int]) -> dict[int, int]:
        """The highest seq already in each partition (its last records)."""
        consumer = self.new_consumer(None)
        await consumer.start()
        try:
            tps = [TopicPartition(self.topic, p) for p in partitions]
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                # the embedded broker lists the last batch's base offset + 1: reading on
                # from one before it until the fetch is idle finds the true last record
                consumer.seek(tp, max(0, ends[tp] - 1))
            tail: dict[int, int] = {}
            while True:
                batch = await consumer.getmany(timeout_ms=300)
                if not batch:
                    return tail
                for tp, records in batch.items():
                    for rec in records:
                        seq = dict(rec.headers or ()).get(SEQ_HEADER)
                        if seq is not None:
                            tail[tp.partition] = max(tail.get(tp.partition, 0), int(seq))
                            # kept, so a skipped record is archived like a published one
                            self._seen[int(seq)] = ArchivedRecord(
                                self.topic, tp.partition, rec.offset, rec.key, rec.value,
                                list(rec.headers or ()), rec.timestamp)
        finally:
            await consumer.stop()

    async def run(self, stop: asyncio.Event) -> None:
        partitions = sorted(await self.producer.partitions_for(self.topic))
        self._tail = await self._read_tail(partitions)
        position = await asyncio.to_thread(self.control.position, self.name)
        log.info("outbox.started", relay=self.name, position=position,
                 published_tail=max(self._tail.values(), default=0))
        while not stop.is_set():
            items = await asyncio.to_thread(self.source, position, self.batch)
            if not items:
                self._wake.clear()
                waiter = asyncio.ensure_future(self._wake.wait())
                stopper = asyncio.ensure_future(stop.wait())
                await asyncio.wait([waiter, stopper], timeout=self.idle_s,
                                   return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
                continue
            position = await self._publish(items, partitions)

    async def _publish(self, items: Sequence[OutboxItem], partitions: list[int]) -> int:
        sends = []
        archive = []
        for item in items:
            p = self._partition(item.partition_key or item.key, partitions)
            if item.seq <= self._tail.get(p, 0):
                # published before a crash, position not yet saved
                if item.seq in self._seen:
                    archive.append(self._seen.pop(item.seq))
                continue
            headers = [(SEQ_HEADER, str(item.seq).encode())]
            # the record's timestamp is ours, so the archive holds exactly what the broker
            # holds (the projector archives the same record again when it consumes it)
            stamp = int(time.time() * 1000)
            fut = await self.producer.send(self.topic, item.value, key=item.key, partition=p,
                                           headers=headers, timestamp_ms=stamp)
            sends.append((item, headers, stamp, fut))
        for item, headers, stamp, fut in sends:
            meta = await fut
            archive.append(ArchivedRecord(self.topic, meta.partition, meta.offset, item.key,
                                          item.value, headers, stamp))
        last = items[-1].seq
        await asyncio.to_thread(self.control.advance, self.name, last,
                                archive if self.archive else [])
        self.published += len(sends)
        PUBLISHED.labels(self.name).inc(len(sends))
        if self.on_published:
            self.on_published(items)
        return last
