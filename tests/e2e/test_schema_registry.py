"""The embedded registry's Schema Registry REST API (issue 11, item 3): with nothing but
the URL `up` prints, confluent-kafka's own AvroDeserializer decodes records of all three
Avro topics (interactions, cases, alerts)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from tests.e2e.system import Up
from tests.helpers import envelope, eventually

pytestmark = pytest.mark.e2e

TOPICS = ("contactstream.interactions.v1", "contactstream.cases.v1", "contactstream.alerts.v1")


def _broker(up: Up) -> str:
    # the embedded broker's address, from its log line at start
    found = re.search(r'"bootstrap": "([^"]+)"', up.logs())
    assert found, up.logs()[-2000:]
    return found.group(1)


async def _first_records(bootstrap: str) -> dict[str, bytes]:
    consumer = AIOKafkaConsumer(*TOPICS, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest")
    await consumer.start()
    got: dict[str, bytes] = {}
    try:
        for _ in range(100):
            for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                for rec in records:
                    if rec.value:
                        got.setdefault(tp.topic, rec.value)
            if len(got) == len(TOPICS):
                break
    finally:
        await consumer.stop()
    return got


def test_a_standard_client_decodes_every_topic_with_the_printed_registry_url(
        tmp_path: Path) -> None:
    up = Up(tmp_path / "data").start()
    try:
        # the banner follows /readyz 200 by a moment (it is printed once `up` sees it ready)
        printed = eventually(lambda: re.search(r"schema registry: (\S+)", up.logs()),
                             timeout=10)
        registry_url = printed.group(1)
        assert registry_url == f"{up.url}/schema-registry"
        # three complaints in 30 days: a case each, and a repeat-complaint alert
        complaints = [envelope(i, customer={"id": "c-sr"}, event_id=f"sr-{i}")
                      for i in range(3)]
        with up.client("publisher") as pub:
            assert pub.post("/v1/events", json=complaints).json()["accepted"] == 3
        eventually(lambda: up.get("/v1/alerts", role="supervisor").json().get("items"),
                   timeout=30)

        subjects = httpx.get(f"{registry_url}/subjects").json()  # no token
        assert {f"{t}-value" for t in TOPICS} <= set(subjects), subjects
        assert httpx.get(f"{registry_url}/subjects/nope/versions").json()["error_code"] == 40401
        latest = httpx.get(f"{registry_url}/subjects/{TOPICS[0]}-value/versions/latest").json()
        assert latest["version"] == 1 and isinstance(latest["schema"], str)

        records = eventually(lambda: (r := asyncio.run(_first_records(_broker(up))))
                             and len(r) == 3 and r, timeout=30)
        deserialize = AvroDeserializer(SchemaRegistryClient({"url": registry_url}))
        decoded = {t: deserialize(v, SerializationContext(t, MessageField.VALUE))
                   for t, v in records.items()}
        assert decoded[TOPICS[0]]["event_id"] in {c["event_id"] for c in complaints}
        assert decoded[TOPICS[0]]["type"] == "complaint.filed"
        assert decoded[TOPICS[1]]["customer_id"] == "c-sr"
        assert decoded[TOPICS[1]]["type"].startswith("case.")
        assert decoded[TOPICS[2]]["kind"].startswith(("escalation.", "sla."))
    finally:
        code = up.stop()
    assert code == 0, up.logs()[-2000:]
