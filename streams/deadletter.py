"""The dead-letter topic: a record that cannot be decoded or is invalid goes there with
the reason and where it came from in its headers, and the batch goes on."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer

from .ports import ArchivedRecord

log = structlog.get_logger(__name__)

ERROR_HEADER = "contactstream-error"


def dead_letter_headers(rec: Any, reason: str) -> list[tuple[str, bytes]]:
    return [(ERROR_HEADER, reason[:1000].encode()),
            ("contactstream-source-topic", rec.topic.encode()),
            ("contactstream-source-partition", str(rec.partition).encode()),
            ("contactstream-source-offset", str(rec.offset).encode())]


class DeadLetters:
    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic

    async def send(self, dead: Sequence[tuple[Any, str]]) -> list[ArchivedRecord]:
        """Publish (record, reason) pairs; returns them as published, for the archive."""
        sent = []
        for rec, reason in dead:
            headers = dead_letter_headers(rec, reason)
            fut = await self.producer.send(self.topic, rec.value, key=rec.key,
                                           headers=headers)
            sent.append((rec, headers, fut))
        out = []
        for rec, headers, fut in sent:
            meta = await fut
            out.append(ArchivedRecord(self.topic, meta.partition, meta.offset, rec.key,
                                      rec.value, headers, int(time.time() * 1000)))
            log.warning("projector.dead_letter", topic=rec.topic, partition=rec.partition,
                        offset=rec.offset, reason=dict(headers)[ERROR_HEADER][:60])
        return out
