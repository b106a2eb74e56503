"""``contactstream bench --alerts N``: alert latency after the deadline over N cases.

Files N complaints through the real ingest path with a first-response target of a few
seconds, runs the worker (projector, case stage, SLA timers, outbox relays) and measures,
for each ``sla.breached``: appended to the alert log minus the deadline, and on the Kafka
alerts topic (record timestamp) minus the deadline. Twice, on a fresh instance each: the
complaints 1 ms apart (their deadlines too: N breaches over N ms), then all filed at one
instant (N breaches due at once, the ``at_once`` figures)."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer

from ..domain.sla import SlaPolicy
from . import bootstrap, kafka
from .bench import scratch
from .config import Settings
from .database import Database
from .ingest import Ingestor
from .journal import IngestJournal
from .privacy import privacy


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))], 1)


async def run_alert_bench(base: Settings, cases: int = 1000, target_s: float = 5.0,
                          as_json: bool = False) -> int:
    async with scratch(base, "alertbench") as settings:
        result = await _run(settings, cases, target_s, apart_ms=1)
    async with scratch(base, "alertburst") as settings:
        burst = await _run(settings, cases, target_s, apart_ms=0)
    result["at_once"] = {k: burst[k] for k in ("breaches", "log_latency_ms",
                                               "topic_latency_ms")}
    if as_json:
        print(json.dumps(result))
    else:
        print(f"cases {result['cases']}, first-response target {target_s} s")
        for title, r in (("deadlines 1 ms apart", result), ("all due at once", burst)):
            log_ms, topic_ms = r["log_latency_ms"], r["topic_latency_ms"]
            print(f"{title}:")
            print(f"  breach appended to the alert log after the deadline: p50"
                  f" {log_ms['p50']} ms  p99 {log_ms['p99']} ms  max {log_ms['max']} ms")
            print(f"  breach on the Kafka alerts topic after the deadline:  p50"
                  f" {topic_ms['p50']} ms  p99 {topic_ms['p99']} ms  max {topic_ms['max']} ms")
    return 0


async def _run(settings: Settings, n: int, target_s: float, apart_ms: int,
               ) -> dict[str, Any]:
    await kafka.ensure_topics(settings, kafka.all_topics(settings))
    services = await bootstrap.worker_services(settings)
    assert services.control is not None and services.scheduler is not None
    control = services.control
    control.put_policy(SlaPolicy.from_json("bench", {
        "first_response_s": target_s, "resolution_s": 86400, "warn_at": 0.5}))
    journal = IngestJournal(services.db)
    ingestor = Ingestor(settings, services.producer, bootstrap.codec(settings, services.db),
                        journal, privacy(settings, services.db))
    stop = asyncio.Event()
    tasks = [asyncio.create_task(services.projector.run(group=False))] + [
        asyncio.create_task(r.run(stop)) for r in services.relays]
    try:
        now = datetime.now(UTC)
        for i in range(0, n, 100):
            batch = [{"event_id": str(uuid.uuid4()), "type": "complaint.filed",
                      "occurred_at": (now + timedelta(milliseconds=j * apart_ms)).isoformat(),
                      "source": "bench", "customer": {"id": f"b-{j}"}, "channel": "web",
                      "payload": {"category": "x", "priority": "high", "description": "d"}}
                     for j in range(i, min(n, i + 100))]
            await ingestor.publish(batch)
        deadline = time.monotonic() + target_s + 120
        while time.monotonic() < deadline:
            breaches = control.alerts(kinds=["sla.breached"], limit=n + 10)
            if len(breaches) >= n and control.position("alerts") >= control.last_alert_seq():
                break
            await asyncio.sleep(0.2)
        breaches = control.alerts(kinds=["sla.breached"], limit=n + 10)
        log_ms = [(datetime.fromisoformat(a["at"]) - datetime.fromisoformat(a["due_at"]))
                  .total_seconds() * 1000 for a in breaches]
        topic_ms = await _topic_latencies(settings, services.db,
                                          {a["id"]: a["due_at"] for a in breaches})
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        journal.close()
        await services.close()
    return {"cases": n, "breaches": len(breaches), "target_s": target_s,
            "log_latency_ms": {"p50": _pct(log_ms, 0.5), "p99": _pct(log_ms, 0.99),
                               "max": round(max(log_ms), 1), "mean":
                               round(statistics.fmean(log_ms), 1)},
            "topic_latency_ms": {"p50": _pct(topic_ms, 0.5), "p99": _pct(topic_ms, 0.99),
                                 "max": round(max(topic_ms), 1)}}


async def _topic_latencies(settings: Settings, db: Database, due: dict[str, str],
                           ) -> list[float]:
    codec = bootstrap.alert_codec(settings, db)
    consumer = AIOKafkaConsumer(settings.alerts_topic, bootstrap_servers=settings.bootstrap_servers,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    out = []
    try:
        while batch := await consumer.getmany(timeout_ms=500):
            for recs in batch.values():
                for r in recs:
                    a = codec.decode(r.value)
                    if a["id"] in due:
                        d = datetime.fromisoformat(due[a["id"]]).timestamp() * 1000
                        out.append(r.timestamp - d)
    finally:
        await consumer.stop()
    return out
