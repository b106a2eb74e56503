"""The composition root: the one place that builds Kafka clients and database
connections and wires them into the services."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaProducer

from ..streams.projector import Projector
from . import kafka
from .auth import TokenTable, load_tokens
from .avro import EnvelopeCodec, SchemaRegistry, build_registry
from .broker import EmbeddedBroker
from .config import Settings
from .ingest import Ingestor
from .insights import Insights, parse_rates
from .journal import IngestJournal, restore
from .logging import get_logger
from .readstore import ReadStore, ReadStoreWriter

log = get_logger(__name__)


def registry(settings: Settings) -> SchemaRegistry:
    return build_registry(settings.schema_registry_url or None,
                          settings.data_dir / "schemas.json")


def codec(settings: Settings) -> EnvelopeCodec:
    return EnvelopeCodec(registry(settings), subject=f"{settings.interactions_topic}-value")


@dataclass
class WorkerServices:
    projector: Projector
    producer: AIOKafkaProducer
    writer: ReadStoreWriter

    async def close(self) -> None:
        await self.producer.stop()
        self.writer.close()


async def worker_services(settings: Settings) -> WorkerServices:
    producer = kafka.producer(settings)
    await producer.start()
    writer = ReadStoreWriter(settings.read_db)

    def mark_ready() -> None:  # read by /readyz of `up`
        worker_ready_file(settings).write_text(str(os.getpid()))

    projector = Projector(settings, codec(settings), producer, writer, on_assigned=mark_ready)
    return WorkerServices(projector, producer, writer)


def worker_ready_file(settings: Settings) -> Path:
    return settings.data_dir / "worker.ready"


@dataclass
class ApiServices:
    ingestor: Ingestor
    store: ReadStore
    tokens: TokenTable
    producer: AIOKafkaProducer
    journal: IngestJournal
    insights: Insights

    async def close(self) -> None:
        await self.producer.stop()
        self.journal.close()


async def api_services(settings: Settings) -> ApiServices:
    producer = kafka.producer(settings)
    await producer.start()
    journal = IngestJournal(settings.ingest_db)
    ingestor = Ingestor(settings, producer, codec(settings), journal)
    store = ReadStore(settings.read_db)
    insights = Insights(store, settings.base_currency,
                        parse_rates(settings.fx_rates, settings.base_currency))
    return ApiServices(ingestor, store, TokenTable(load_tokens(settings.tokens_file)), producer,
                       journal, insights)


async def prepare_broker(settings: Settings) -> tuple[Settings, EmbeddedBroker | None]:
    """Use the configured cluster, or start the embedded broker and restore into it
    everything the data dir holds (adapters/journal.py)."""
    broker = None
    if not settings.bootstrap_servers:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        broker = EmbeddedBroker(log_file=settings.data_dir / "broker.log").start()
        settings = settings.with_(bootstrap_servers=broker.bootstrap_servers,
                                  embedded_broker=True)
    await kafka.ensure_topics(settings, kafka.all_topics(settings))
    if settings.embedded_broker:
        journal = IngestJournal(settings.ingest_db)
        writer = ReadStoreWriter(settings.read_db)
        producer = kafka.producer(settings)
        await producer.start()
        try:
            await restore(producer, [journal.records(), writer.archived()])
        finally:
            await producer.stop()
            journal.close()
            writer.close()
    return settings, broker
