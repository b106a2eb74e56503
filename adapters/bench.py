"""``contactstream bench``: the pipeline and a raw aiokafka baseline, side by side, on the
same broker and the same records, in one run. Prints numbers; asserts nothing."""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from . import bootstrap, kafka
from .broker import EmbeddedBroker
from .config import Settings
from .demo import synthetic_events
from .ingest import Ingestor
from .journal import IngestJournal
from .logging import get_logger
from .privacy import privacy
from .readstore import ReadStore

log = get_logger(__name__)


async def _baseline(settings: Settings, codec: Any, n: int) -> float:
    """Raw ceiling: getmany + Avro decode of every record, nothing else."""
    consumer = kafka.consumer(settings, group_id=None)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(settings.interactions_topic) or set()
        tps = [TopicPartition(settings.interactions_topic, p) for p in parts]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        decode = codec.decode
        seen = 0
        t0 = time.perf_counter()
        while seen < n:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batch.values():
                for rec in records:
                    decode(rec.value)
                seen += sum(1 for _ in records)
        return n / (time.perf_counter() - t0)
    finally:
        await consumer.stop()


async def _freshness(settings: Settings, services: Any, ingestor: Ingestor,
                     samples: int) -> list[float]:
    """Accepted (ingest returned) -> visible in the read store, one event at a time."""
    store = ReadStore(services.db)
    live = asyncio.create_task(services.projector.run(group=False))
    lat = []
    try:
        for i, env in enumerate(synthetic_events(samples, seed=99)):
            env = {**env, "event_id": f"fresh-{i}-{env['event_id']}"}
            await ingestor.publish([env])
            t0 = time.perf_counter()
            while not store.has_event(env["event_id"]):
                if time.perf_counter() - t0 > 10:
                    raise TimeoutError("event not visible after 10 s")
                await asyncio.sleep(0.001)
            lat.append((time.perf_counter() - t0) * 1000)
    finally:
        live.cancel()
        try:
            await live
        except asyncio.CancelledError:
            pass
    return lat


async def run_bench(base: Settings, events: int = 100_000, as_json: bool = False,
                    samples: int = 200, views: dict[str, Any] | None = None) -> int:
    """``views``: the arguments of a ``--views`` part (adapters/bench_views.py), run after
    the pipeline part in a scratch dir of its own; its figures go under ``views``."""
    async with scratch(base, "bench") as settings:
        result = await _run(settings, events, samples)
    if views is not None:
        from .bench_views import run_views
        result["views"] = await run_views(base, **views)
    if as_json:
        print(json.dumps(result))
    else:
        rows = [("events", f"{result['events']}"),
                ("ingest (validate+encode+produce+journal)",
                 f"{result['ingest_events_per_s']:,.0f} ev/s"),
                ("baseline (getmany+decode)", f"{result['baseline_events_per_s']:,.0f} ev/s"),
                ("pipeline (decode+project+read store)",
                 f"{result['pipeline_events_per_s']:,.0f} ev/s"),
                ("ratio pipeline/baseline", f"{result['ratio']:.3f}")]
        for label, value in rows:
            print(f"{label:<42}{value:>16}")
        f = result["freshness_ms"]
        print(f"freshness accepted->visible  p50 {f['p50']:.1f} ms  p99 {f['p99']:.1f} ms"
              f"  ({samples} events)")
        if views is not None:
            from .bench_views import print_views
            print_views(result["views"])
    return 0


async def _run(settings: Settings, n: int, samples: int) -> dict[str, Any]:
    await kafka.ensure_topics(settings, kafka.all_topics(settings))
    data = synthetic_events(n, seed=1)
    services = await bootstrap.worker_services(settings)
    journal = IngestJournal(services.db)
    ingestor = Ingestor(settings, services.producer, bootstrap.codec(settings, services.db),
                        journal, privacy(settings, services.db))
    try:
        t0 = time.perf_counter()
        for i in range(0, n, 1000):
            result = await ingestor.publish(data[i:i + 1000])
            if result.accepted != len(data[i:i + 1000]):
                raise RuntimeError(f"bench data rejected: {result.rejected[:3]}")
        ingest_rate = n / (time.perf_counter() - t0)
        baseline = await _baseline(settings, services.projector.decoder, n)
        t0 = time.perf_counter()
        progress = await services.projector.run(group=False, until_end=True)
        pipeline = progress.events / (time.perf_counter() - t0)
        lat = sorted(await _freshness(settings, services, ingestor, samples))
    finally:
        await services.close()
    return {
        "events": n,
        "pipeline_events_per_s": round(pipeline, 1),
        "baseline_events_per_s": round(baseline, 1),
        "ratio": round(pipeline / baseline, 4),
        "freshness_ms": {"p50": round(statistics.median(lat), 2),
                         "p99": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 2)},
        "ingest_events_per_s": round(ingest_rate, 1),
        "broker": "embedded" if settings.embedded_broker else "external",
    }


@asynccontextmanager
async def scratch(base: Settings, prefix: str) -> AsyncIterator[Settings]:
    """Settings for one benchmark run: a temporary data dir, topics of its own and the
    embedded broker unless a cluster is configured."""
    with tempfile.TemporaryDirectory(prefix=f"contactstream-{prefix}-") as tmp:
        settings = base.with_(data_dir=Path(tmp), database_url="",
                              topic_prefix=f"{prefix}{int(time.time() * 1000)}")
        settings, pg = bootstrap.prepare_database(settings)
        broker = None
        if not settings.bootstrap_servers:
            broker = EmbeddedBroker().start()
            settings = settings.with_(bootstrap_servers=broker.bootstrap_servers,
                                      embedded_broker=True)
        try:
            yield settings
        finally:
            if broker:
                broker.stop()
            if pg is not None:
                pg.stop()
