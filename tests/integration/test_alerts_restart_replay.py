"""Alerts through the real broker: restart the worker mid-stream, then replay from the
log; the set of alerts is the expected one, each once, on the topic as in the log."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from contactstream.adapters import bootstrap, kafka
from contactstream.adapters.config import Settings
from contactstream.adapters.control import ControlStore
from contactstream.adapters.database import Database
from contactstream.adapters.ingest import Ingestor
from contactstream.adapters.journal import IngestJournal
from contactstream.adapters.privacy import privacy
from contactstream.domain.cases import CASE_NAMESPACE
from contactstream.domain.sla import SlaPolicy

pytestmark = pytest.mark.integration

LONG_AGO = datetime.now(UTC) - timedelta(hours=2)


def events() -> list[dict[str, Any]]:
    out = []
    for i in range(40):
        out.append({"event_id": f"cmp-{i}", "type": "complaint.filed",
                    "occurred_at": (LONG_AGO + timedelta(seconds=i)).isoformat(),
                    "source": "web", "customer": {"id": f"c-{i % 13}"}, "channel": "web",
                    "payload": {"category": "x", "priority": "high", "description": "d"}})
    for i in range(10):
        out.append({"event_id": f"srv-{i}", "type": "survey.answered",
                    "occurred_at": LONG_AGO.isoformat(), "source": "survey",
                    "customer": {"id": f"s-{i}"}, "channel": "email",
                    "payload": {"kind": "csat", "score": 1 + i % 5}})
    return out


def expected_alerts(evs: list[dict[str, Any]]) -> set[str]:
    out = set()
    per_customer: dict[str, list[str]] = {}
    for e in evs:
        if e["type"] == "complaint.filed":
            case = uuid.uuid5(CASE_NAMESPACE, e["event_id"])
            for metric in ("first_response", "resolution"):
                for kind in ("sla.warning", "sla.breached"):
                    out.add(f"{case}:{metric}#1:{kind}")
            per_customer.setdefault(e["customer"]["id"], []).append(e["event_id"])
        elif e["payload"]["score"] <= 2:
            out.add(f"escalation.low_satisfaction:{e['event_id']}")
    for customer, ids in per_customer.items():  # all within a minute: the 3rd and later
        for eid in ids[2:]:
            out.add(f"escalation.repeat_complaint:{customer}:{eid}")
    return out


class Worker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def start(self, replay: bool = False) -> Worker:
        self.services = await bootstrap.worker_services(self.settings)
        if replay:
            self.services.writer.reset_projections()
        self.stop = asyncio.Event()
        await self.services.scheduler.start()
        self.tasks = [asyncio.create_task(self.services.projector.run())] + [
            asyncio.create_task(r.run(self.stop)) for r in self.services.relays]
        return self

    async def halt(self) -> None:
        self.stop.set()
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.services.close()


async def _topic_alert_ids(settings: Settings, db: Database) -> list[str]:
    codec = bootstrap.alert_codec(settings, db)
    consumer = AIOKafkaConsumer(settings.alerts_topic, bootstrap_servers=settings.bootstrap_servers,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    ids = []
    try:
        while batch := await consumer.getmany(timeout_ms=500):
            ids += [codec.decode(r.value)["id"] for recs in batch.values() for r in recs]
    finally:
        await consumer.stop()
    return ids


async def _wait(check: Any, timeout: float = 30) -> None:
    for _ in range(int(timeout / 0.1)):
        if check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not reached in {timeout}s")


async def test_restart_mid_stream_and_replay_give_the_same_alerts_once(
        settings: Settings, db: Database) -> None:
    await kafka.ensure_topics(settings, kafka.all_topics(settings))
    control = ControlStore(db)
    control.put_policy(SlaPolicy.from_json("std", {"first_response_s": 600,
                                                   "resolution_s": 3600, "warn_at": 0.5}))
    evs = events()
    expected = expected_alerts(evs)
    producer = kafka.producer(settings)
    await producer.start()
    journal = IngestJournal(db)
    ingest = Ingestor(settings, producer, bootstrap.codec(settings, db), journal,
                      privacy(settings, db))
    try:
        worker = await Worker(settings).start()
        assert (await ingest.publish(evs[:25])).accepted == 25
        await _wait(lambda: len(control.alerts(limit=1000)) > 10)
        await worker.halt()  # mid-stream: some cases opened, some alerts out
        assert (await ingest.publish(evs[25:])).accepted == len(evs) - 25
        worker = await Worker(settings).start()
        await _wait(lambda: {a["id"] for a in control.alerts(limit=1000)} >= expected)
        await _wait(lambda: control.position("alerts") == control.last_alert_seq())
        await worker.halt()
        first = [a["id"] for a in control.alerts(limit=1000)]
        assert set(first) == expected and len(first) == len(expected)
        on_topic = await _topic_alert_ids(settings, db)
        assert sorted(on_topic) == sorted(first)  # each published once

        replay = await Worker(settings).start(replay=True)  # rebuild from the log
        await _wait(lambda: control.position("alerts") == control.last_alert_seq())
        await asyncio.sleep(1.0)
        await replay.halt()
        assert [a["id"] for a in control.alerts(limit=1000)] == first
        assert sorted(await _topic_alert_ids(settings, db)) == sorted(first)
    finally:
        journal.close()
        await producer.stop()
