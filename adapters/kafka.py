"""Kafka clients built the same way everywhere (aiokafka), and the topics we need."""

from __future__ import annotations

import socket
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    KafkaError,
    TopicAlreadyExistsError,
    UnknownError,
    UnsupportedVersionError,
)
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from .config import Settings
from .logging import get_logger

log = get_logger(__name__)

# The largest record a producer sends (its max_request_size); ingest refuses a bigger one
# before producing anything (adapters/ingest.py). A real cluster must allow records this
# big too (the broker's message.max.bytes or the topic's max.message.bytes).
MAX_RECORD_BYTES = 8 * 1024 * 1024


def record_size(key: bytes | None, value: bytes | None) -> int:
    """A record's size as the producer counts it against ``MAX_RECORD_BYTES``."""
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, []))


def producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """acks=all always. The idempotent producer only against an external cluster, unless
    ``kafka_idempotence`` is off: the embedded broker answers InitProducerId with
    UnknownError. ``start_producer`` also falls back where an external broker refuses."""
    opts: dict[str, Any] = dict(
        bootstrap_servers=settings.bootstrap_servers,
        acks="all",
        enable_idempotence=_idempotent(settings),
        linger_ms=2,
        max_batch_size=1024 * 1024,
        max_request_size=MAX_RECORD_BYTES,
        request_timeout_ms=15000,
    )
    opts.update(overrides)
    return AIOKafkaProducer(**opts)


def _idempotent(settings: Settings) -> bool:
    return not settings.embedded_broker and settings.kafka_idempotence != "off"


class IdempotenceRefused(KafkaError):
    """CONTACTSTREAM_KAFKA_IDEMPOTENCE=on, and the broker cannot give it."""


async def start_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """A started ``producer``. Where the broker refuses the idempotent producer (it
    answers InitProducerId with an error), ``kafka_idempotence=auto`` goes on without it,
    with a warning: acks=all still holds, a retried send may then be written twice, and
    every consumer of ours keys its rows by event id, so a duplicate changes nothing."""
    asked = overrides.get("enable_idempotence", _idempotent(settings))
    p = producer(settings, **overrides)
    try:
        await p.start()
        return p
    except (UnknownError, UnsupportedVersionError, ClusterAuthorizationFailedError) as exc:
        await p.stop()
        if not asked:
            raise
        if settings.kafka_idempotence == "on":
            raise IdempotenceRefused(
                f"the broker refused the idempotent producer ({type(exc).__name__});"
                " set CONTACTSTREAM_KAFKA_IDEMPOTENCE=auto or off to go on without it"
            ) from exc
        log.warning("kafka.idempotence_refused", error=type(exc).__name__,
                    action="producing without idempotence (acks=all);"
                           " set CONTACTSTREAM_KAFKA_IDEMPOTENCE=off to skip the attempt")
    p = producer(settings, **{**overrides, "enable_idempotence": False})
    await p.start()
    return p


# The embedded broker answers a waiting fetch only when its wait expires, not when records
# arrive: every event waits for that, so it is short there (an idle worker and broker
# then spend about 5% of a core more, measured: 9.3% against 4.4% at 50 ms). Kafka answers
# as soon as records arrive; the wait only bounds how long a reader takes to see that
# nothing more is coming (replay's and the relays' end of the log).
EMBEDDED_FETCH_WAIT_MS = 10
KAFKA_FETCH_WAIT_MS = 50


def fetch_wait_ms(settings: Settings) -> int:
    """CONTACTSTREAM_FETCH_MAX_WAIT_MS, or by broker when it is 0 (the default)."""
    if settings.fetch_max_wait_ms > 0:
        return settings.fetch_max_wait_ms
    return EMBEDDED_FETCH_WAIT_MS if settings.embedded_broker else KAFKA_FETCH_WAIT_MS


def consumer(settings: Settings, *topics: str, group_id: str | None, **overrides: Any,
             ) -> AIOKafkaConsumer:
    opts: dict[str, Any] = dict(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=fetch_wait_ms(settings),
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=32 * 1024 * 1024,
        # the embedded broker holds a group join for the whole rebalance timeout
        rebalance_timeout_ms=3000 if settings.embedded_broker else 60000,
        session_timeout_ms=10000,
        heartbeat_interval_ms=1000,
        max_poll_interval_ms=300000,
    )
    opts.update(overrides)
    return AIOKafkaConsumer(*topics, **opts)


async def ensure_topics(settings: Settings, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            try:
                rf = 1 if settings.embedded_broker else settings.replication_factor
                await admin.create_topics(
                    [NewTopic(n, settings.partitions, rf, topic_configs=_configs(settings, n))
                     for n in missing])
            except TopicAlreadyExistsError:
                pass
            log.info("topics.created", topics=missing, partitions=settings.partitions)
    finally:
        await admin.close()


def _configs(settings: Settings, topic: str) -> dict[str, str]:
    """On a real cluster: the log is the source of truth for replay, so it is kept
    forever (the DLQ for 30 days), and a write needs a quorum of replicas."""
    if settings.embedded_broker:
        return {}
    configs = {"retention.ms": "2592000000" if topic == settings.dlq_topic else "-1"}
    if settings.replication_factor > 1:
        configs["min.insync.replicas"] = str(settings.replication_factor - 1)
    return configs


def all_topics(settings: Settings) -> list[str]:
    return [settings.interactions_topic, settings.dlq_topic, settings.cases_topic,
            settings.alerts_topic]


def reachable(bootstrap_servers: str, timeout: float = 1.0) -> bool:
    """Whether any bootstrap server accepts a TCP connection (readiness, not health)."""
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "localhost", int(port)),
                                          timeout=timeout):
                return True
        except (OSError, ValueError):
            continue
    return False
