"""Issue 9, item 6: an external Kafka-protocol broker that refuses the idempotent producer
(Tansu answers InitProducerId with UnknownError) is used anyway, with a warning, unless
CONTACTSTREAM_KAFKA_IDEMPOTENCE=on asks for it outright. The embedded broker plays the
external one here (embedded_broker=False: nothing of ours knows it is Tansu)."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from structlog.testing import capture_logs

from contactstream.adapters import kafka
from contactstream.adapters.broker import EmbeddedBroker
from contactstream.adapters.config import Settings, from_env

pytestmark = pytest.mark.integration


def _external(broker: EmbeddedBroker, tmp_path: Path, idempotence: str) -> Settings:
    return Settings(data_dir=tmp_path, bootstrap_servers=broker.bootstrap_servers,
                    embedded_broker=False, kafka_idempotence=idempotence,
                    topic_prefix=f"idem-{idempotence}", partitions=1)


async def _read_one(settings: Settings, topic: str) -> bytes | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        batch = await consumer.getmany(tp, timeout_ms=5000)
        return batch[tp][0].value if batch.get(tp) else None
    finally:
        await consumer.stop()


async def test_auto_falls_back_with_a_warning_and_produces(broker: EmbeddedBroker,
                                                           tmp_path: Path) -> None:
    settings = _external(broker, tmp_path, "auto")
    topic = settings.interactions_topic
    await kafka.ensure_topics(settings, [topic])
    with capture_logs() as logs:
        producer = await kafka.start_producer(settings)
    try:
        await producer.send_and_wait(topic, b"after the fallback")
    finally:
        await producer.stop()
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == [
        "kafka.idempotence_refused"]
    assert await _read_one(settings, topic) == b"after the fallback"


async def test_on_refuses_to_go_on_without_it(broker: EmbeddedBroker, tmp_path: Path) -> None:
    with pytest.raises(kafka.IdempotenceRefused, match="CONTACTSTREAM_KAFKA_IDEMPOTENCE"):
        await kafka.start_producer(_external(broker, tmp_path, "on"))


async def test_off_never_asks(broker: EmbeddedBroker, tmp_path: Path) -> None:
    with capture_logs() as logs:
        producer = await kafka.start_producer(_external(broker, tmp_path, "off"))
    await producer.stop()
    assert [e for e in logs if e["log_level"] == "warning"] == []


def test_the_setting_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTACTSTREAM_KAFKA_IDEMPOTENCE", "sometimes")
    with pytest.raises(ValueError, match="auto, on, off"):
        from_env()
    monkeypatch.setenv("CONTACTSTREAM_KAFKA_IDEMPOTENCE", "OFF")
    assert from_env().kafka_idempotence == "off"
