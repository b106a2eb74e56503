"""The composition root: the one place that builds Kafka clients and database
connections and wires them into the services."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from ..streams.identity import IdentityKeeper, LinkApp
from ..streams.outbox import OutboxRelay
from ..streams.projector import Projector
from ..streams.sla import CaseTimers, Clock, Escalations, SlaScheduler, SystemClock
from . import kafka
from .auth import TokenTable, load_tokens
from .avro import EnvelopeCodec, SchemaRegistry, build_registry
from .broker import EmbeddedBroker
from .caseservice import CaseService, case_app
from .config import Settings
from .control import ControlStore
from .ingest import Ingestor
from .insights import Insights, parse_rates
from .journal import IngestJournal, restore
from .logging import get_logger
from .privacy import privacy
from .readstore import ReadStore, ReadStoreWriter
from .records import RecordCodec

log = get_logger(__name__)


def registry(settings: Settings) -> SchemaRegistry:
    return build_registry(settings.schema_registry_url or None,
                          settings.data_dir / "schemas.json")


def codec(settings: Settings) -> EnvelopeCodec:
    return EnvelopeCodec(registry(settings), subject=f"{settings.interactions_topic}-value")


def case_codec(settings: Settings) -> RecordCodec:
    return RecordCodec(registry(settings), "CaseEvent", f"{settings.cases_topic}-value")


def alert_codec(settings: Settings) -> RecordCodec:
    return RecordCodec(registry(settings), "Alert", f"{settings.alerts_topic}-value")


def link_app(settings: Settings) -> LinkApp:
    """Merge and unmerge decisions (CustomerLink aggregates) in their own recorder."""
    settings.sqlite_dir.mkdir(parents=True, exist_ok=True)
    return LinkApp(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite",
                        "SQLITE_DBNAME": str(settings.sqlite_dir / "identity.sqlite"),
                        "SQLITE_LOCK_TIMEOUT": "10"})


def control_store(settings: Settings) -> ControlStore:
    return ControlStore(settings.sqlite_dir / "control.sqlite")


def case_service(settings: Settings, control: ControlStore,
                 clock: Clock | None = None) -> CaseService:
    now = (clock or SystemClock()).now
    return CaseService(case_app(settings.sqlite_dir / "cases.sqlite"), control, now,
                       seal=privacy(settings).seal)


@dataclass
class WorkerServices:
    projector: Projector
    producer: AIOKafkaProducer
    writer: ReadStoreWriter
    cases: CaseService | None = None
    control: ControlStore | None = None
    scheduler: SlaScheduler | None = None
    relays: tuple[OutboxRelay, ...] = ()
    webhooks: Any = None

    async def close(self) -> None:
        if self.scheduler is not None:
            await self.scheduler.stop()
        await self.producer.stop()
        self.writer.close()
        if self.cases is not None:
            self.cases.app.close()


async def worker_services(settings: Settings, *, clock: Clock | None = None,
                          ) -> WorkerServices:
    """The projector with the identity graph and the case stage, and around it the SLA
    timers, outbox relays and webhook deliveries."""
    producer = kafka.producer(settings)
    await producer.start()
    writer = ReadStoreWriter(settings.read_db)

    def mark_ready() -> None:  # read by /readyz of `up`
        worker_ready_file(settings).write_text(str(os.getpid()))

    from ..streams.casework import alert_source, case_event_source, case_stage
    from ..streams.webhooks import WebhookDispatcher

    clock = clock or SystemClock()
    loop = asyncio.get_running_loop()
    control = control_store(settings)
    service = case_service(settings, control, clock)
    webhooks = WebhookDispatcher(control)
    alert_relay = OutboxRelay("alerts", settings.alerts_topic, settings, producer, control,
                              alert_source(control, alert_codec(settings)),
                              on_published=lambda items: webhooks.notify())

    def alert_raised() -> None:  # from any thread
        loop.call_soon_threadsafe(alert_relay.notify)

    scheduler = SlaScheduler(service, control, clock, on_alert=alert_raised)
    case_relay = OutboxRelay(
        "cases", settings.cases_topic, settings, producer, control,
        case_event_source(service, case_codec(settings)),
        on_published=lambda items: [scheduler.changed(*i.ref) for i in items])
    def cases_changed(timers: list[CaseTimers]) -> None:  # from the writer thread
        # timers now, straight from the saved cases (not only once Kafka has them)
        loop.call_soon_threadsafe(case_relay.notify)
        for t in timers:
            loop.call_soon_threadsafe(scheduler.reschedule, t.id, t)

    stage = case_stage(service, Escalations(control, clock, on_alert=alert_raised),
                       cases_changed)
    projector = Projector(settings, codec(settings), producer, writer, on_assigned=mark_ready,
                          case_codec=case_codec(settings), case_stage=stage)
    projector.keys = privacy(settings).keystore
    projector.identity = IdentityKeeper(settings.default_region, link_app(settings))
    projector.control = control
    return WorkerServices(projector, producer, writer, service, control, scheduler,
                          (case_relay, alert_relay), webhooks)


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
    cases: CaseService
    control: ControlStore

    async def close(self) -> None:
        await self.producer.stop()
        self.journal.close()
        self.cases.app.close()


async def api_services(settings: Settings) -> ApiServices:
    producer = kafka.producer(settings)
    await producer.start()
    journal = IngestJournal(settings.ingest_db)
    ingestor = Ingestor(settings, producer, codec(settings), journal, privacy(settings))
    store = ReadStore(settings.read_db, privacy(settings))
    control = control_store(settings)
    insights = Insights(store, settings.base_currency,
                        parse_rates(settings.fx_rates, settings.base_currency),
                        breached_cases=control.breached_case_ids)
    return ApiServices(ingestor, store, TokenTable(load_tokens(settings.tokens_file)), producer,
                       journal, insights, case_service(settings, control), control)


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
            control = control_store(settings)
            await restore(producer, [journal.records(), writer.archived(), control.archived()])
        finally:
            await producer.stop()
            journal.close()
            writer.close()
    return settings, broker
