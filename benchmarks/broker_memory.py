"""The embedded broker's memory per event, with and without the window (issue 10, item 5).

Produces N records of an event's size (``--bytes``, ~650 like an encrypted, Avro-encoded
envelope) to a fresh embedded broker (Tansu) and samples its RSS; then starts a second
broker and restores the same log through ``adapters/journal.restore`` as `up` does after
a compaction, with everything but the last ``--window`` records of each partition passed
by the projector (packed placeholders), and samples its RSS again. Prints bytes per
event for both. Needs nothing but the broker: run it with `python benchmarks/broker_memory.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from contactstream.adapters.broker import EmbeddedBroker
from contactstream.adapters.journal import restore
from contactstream.streams.ports import ArchivedRecord

TOPIC = "bench.interactions.v1"


async def _topic(broker: EmbeddedBroker, partitions: int) -> AIOKafkaProducer:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    await admin.start()
    await admin.create_topics([NewTopic(TOPIC, partitions, 1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks=-1,
                                enable_idempotence=False, linger_ms=5,
                                max_batch_size=1 << 20)
    await producer.start()
    return producer


async def run(events: int, size: int, window: int, partitions: int) -> dict[str, object]:
    value = os.urandom(size)
    log: list[ArchivedRecord] = []
    samples = []
    with EmbeddedBroker() as full:
        producer = await _topic(full, partitions)
        base = full.rss_kb() or 0
        futures = []
        for i in range(events):
            key = b"c-%d" % (i % (events // 10 or 1))
            futures.append(await producer.send(TOPIC, value, key=key,
                                               partition=i % partitions))
            if len(futures) == 5000:
                for fut in futures:
                    meta = await fut
                    log.append(ArchivedRecord(TOPIC, meta.partition, meta.offset, key, value,
                                              [], int(time.time() * 1000)))
                futures = []
            if (i + 1) % max(1, events // 10) == 0:
                samples.append((i + 1, (full.rss_kb() or 0) - base))
        for fut in futures:
            meta = await fut
            log.append(ArchivedRecord(TOPIC, meta.partition, meta.offset, None, value, [], 0))
        await producer.stop()
        full_kb = (full.rss_kb() or 0) - base
    tops: dict[int, int] = {}
    for rec in log:
        tops[rec.partition] = max(tops.get(rec.partition, -1), rec.offset)
    passed = {(TOPIC, p): max(0, top + 1 - window // partitions) for p, top in tops.items()}
    with EmbeddedBroker() as windowed:
        producer = await _topic(windowed, partitions)
        base2 = windowed.rss_kb() or 0
        started = time.perf_counter()
        await restore(producer, [log], passed)
        restore_s = time.perf_counter() - started
        await producer.stop()
        windowed_kb = (windowed.rss_kb() or 0) - base2
    return {
        "events": events, "record_bytes": size, "window": window,
        "full_rss_mb": round(full_kb / 1024, 1),
        "full_bytes_per_event": round(full_kb * 1024 / events, 1),
        "full_slope_mb": [(n, round(kb / 1024, 1)) for n, kb in samples],
        "windowed_rss_mb": round(windowed_kb / 1024, 1),
        "windowed_bytes_per_event": round(windowed_kb * 1024 / events, 1),
        "restore_s": round(restore_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--bytes", type=int, default=650)
    parser.add_argument("--window", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.events, args.bytes, args.window, args.partitions)),
                     indent=1))


if __name__ == "__main__":
    main()
