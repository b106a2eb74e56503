"""The composition root: the one place that builds Kafka clients and database
connections and wires them into the services."""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from ..streams.deadletter import DeadLetters
from ..streams.identity import IdentityKeeper, LinkApp
from ..streams.outbox import OutboxRelay
from ..streams.projector import Projector
from ..streams.requests import RequestWork
from ..streams.sla import CaseTimers, Clock, Escalations, SlaScheduler, SystemClock
from . import kafka, migrations
from .archive import archived
from .audit import AuditLog
from .auth import TokenTable, load_tokens
from .avro import EnvelopeCodec, SchemaRegistry, build_registry
from .broker import EmbeddedBroker
from .caseservice import CaseService, case_app
from .config import Settings
from .control import ControlStore
from .crmstore import CrmReports
from .database import Database, DatabaseError, EmbeddedPostgres, eventsourcing_env
from .erasure import purge
from .figurestore import FigureWriter, StoredValues
from .http_crm import Crm
from .ingest import Ingestor
from .insights import Insights, parse_rates
from .journal import IngestJournal, restore
from .logging import get_logger
from .privacy import Privacy, privacy
from .readstore import ReadStore, ReadStoreWriter
from .records import RecordCodec
from .retention import Retention
from .scoring import ScoreProcess

log = get_logger(__name__)


def prepare_database(settings: Settings) -> tuple[Settings, EmbeddedPostgres | None]:
    """Use the configured PostgreSQL, or start the embedded server in the data dir; then
    bring the schema up to date (adapters/migrations)."""
    server = None
    refuse_sqlite_data_dir(settings.data_dir)  # with an external database too
    if not settings.database_url:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        server = EmbeddedPostgres(settings.data_dir / "postgres").start()
        settings = settings.with_(database_url=server.url, embedded_database=True)
    try:
        migrations.migrate(settings.database_url)
    except BaseException:
        if server is not None:
            server.stop()
        raise
    return settings, server


def refuse_sqlite_data_dir(data_dir: Path) -> None:
    if (data_dir / "readstore.sqlite").exists():
        raise DatabaseError(
            f"{data_dir} holds the state of a SQLite release of contactstream: import it"
            f" first with `contactstream import-sqlite {data_dir}`")


def database(settings: Settings, max_size: int = 8) -> Database:
    if not settings.database_url:
        raise DatabaseError("no database configured (prepare_database first)")
    return Database(settings.database_url, max_size=max_size)


def registry(settings: Settings, db: Database) -> SchemaRegistry:
    return build_registry(settings.schema_registry_url or None, db)


def codec(settings: Settings, db: Database) -> EnvelopeCodec:
    return EnvelopeCodec(registry(settings, db), subject=f"{settings.interactions_topic}-value")


def case_codec(settings: Settings, db: Database) -> RecordCodec:
    return RecordCodec(registry(settings, db), "CaseEvent", f"{settings.cases_topic}-value")


def alert_codec(settings: Settings, db: Database) -> RecordCodec:
    return RecordCodec(registry(settings, db), "Alert", f"{settings.alerts_topic}-value")


def consumer_factory(settings: Settings, group_id: str | None) -> AIOKafkaConsumer:
    """A consumer of the configured cluster, in ``group_id`` or without a group."""
    return kafka.consumer(settings, group_id=group_id)


def link_app(settings: Settings) -> LinkApp:
    """Merge and unmerge decisions (CustomerLink aggregates) in their own recorder."""
    return LinkApp(env=eventsourcing_env(settings.database_url))


def case_service(settings: Settings, control: ControlStore, kit: Privacy,
                 clock: Clock | None = None, db: Database | None = None) -> CaseService:
    """With ``db`` (the worker's), cases open with policies that match on the customer's
    stored segment and revenue."""
    now = (clock or SystemClock()).now
    return CaseService(case_app(settings.database_url), control, now, seal=kit.seal,
                       values=None if db is None else StoredValues(db))


@dataclass
class WorkerServices:
    projector: Projector
    producer: AIOKafkaProducer
    writer: ReadStoreWriter
    db: Database
    cases: CaseService | None = None
    control: ControlStore | None = None
    scheduler: SlaScheduler | None = None
    relays: tuple[OutboxRelay, ...] = ()
    webhooks: Any = None
    clock: Clock | None = None  # what the periodic refresh of figures runs on
    keys: Any = None  # the data-key store (adapters/keystore.py)
    links: LinkApp | None = None  # the CustomerLink aggregates' recorder
    retention: Retention | None = None  # data that expires (issue 14)

    async def close(self) -> None:
        if self.scheduler is not None:
            await self.scheduler.stop()
        await self.producer.stop()
        self.writer.close()
        if self.cases is not None:
            self.cases.app.close()
        if self.links is not None:
            self.links.close()
        if self.keys is not None:
            self.keys.close()
        self.db.close()


# The worker's garbage collector. The identity graph and the caches are many long-lived
# objects, and every full collection walks all of them: measured in a bench of 40,000
# events, 20 full collections of 70-290 ms each, finding almost nothing (the worker's
# garbage is acyclic and goes by reference counting). A full collection now comes after
# 1,000 young ones instead of 10 (CPython still waits until a quarter of the long-lived
# objects are new), so it is rare; the young generations stay as they are.
GC_THRESHOLDS = (700, 10, 1000)


def tune_gc() -> None:
    """The garbage collector of a process that runs the projector (the worker, a replay,
    the bench): see GC_THRESHOLDS."""
    gc.set_threshold(*GC_THRESHOLDS)


def figure_writer(settings: Settings, clock: Callable[[], int] | None = None,
                  ) -> FigureWriter:
    """The customer figures' writer in the base currency and rates of ``settings``, on
    ``clock`` (ms; the system's when None): the worker's, and its scores processes'."""
    return FigureWriter(settings.base_currency,
                        parse_rates(settings.fx_rates, settings.base_currency), clock=clock)


async def worker_services(settings: Settings, *, clock: Clock | None = None,
                          ) -> WorkerServices:
    """The projector with the identity graph and the case stage, and around it the SLA
    timers, outbox relays and webhook deliveries."""
    producer = await kafka.start_producer(settings)
    db = database(settings)
    # rounds of scores in a process of their own, on the system clock; a worker on
    # another clock (tests) scores on its own scores thread
    scorer = ScoreProcess(settings) if clock is None else None
    if scorer is not None:
        scorer.start()
    clock = clock or SystemClock()
    now = clock.now
    writer = ReadStoreWriter(db, figures=figure_writer(
        settings, clock=lambda: int(now().timestamp() * 1000)), scorer=scorer)
    # an upgraded database, or a timeline an import filled: figures from the timeline first
    await asyncio.to_thread(writer.rebuild_figures_if_pending)

    def mark_ready() -> None:  # read by /readyz of `up`
        worker_ready_file(settings).write_text(str(os.getpid()))

    from ..streams.casework import case_stage
    from ..streams.webhooks import WebhookDispatcher
    from .outbox_sources import alert_source, case_event_source

    loop = asyncio.get_running_loop()
    kit = privacy(settings, db)
    control = ControlStore(db, kit.secrets)
    service = case_service(settings, control, kit, clock, db)
    webhooks = WebhookDispatcher(control)
    new_consumer = partial(consumer_factory, settings)
    embedded = settings.embedded_broker
    alert_relay = OutboxRelay("alerts", settings.alerts_topic, producer, new_consumer, control,
                              alert_source(control, alert_codec(settings, db)),
                              on_published=lambda items: webhooks.notify(), archive=embedded)

    def alert_raised() -> None:  # from any thread
        loop.call_soon_threadsafe(alert_relay.notify)

    scheduler = SlaScheduler(service, control, clock, on_alert=alert_raised)
    case_relay = OutboxRelay(
        "cases", settings.cases_topic, producer, new_consumer, control,
        case_event_source(service, case_codec(settings, db)),
        on_published=lambda items: scheduler.changed_all(i.ref for i in items),
        archive=embedded)

    def rearm(timers: CaseTimers) -> None:  # on the loop
        # only a started scheduler runs timers (the worker's, see streams/app.py): a replay
        # never starts one, and start() itself arms every case the store holds by then
        if scheduler.started:
            scheduler.reschedule(timers.id, timers)

    def cases_changed(timers: list[CaseTimers]) -> None:  # from the compute thread
        # timers now, straight from the saved cases (not only once Kafka has them)
        loop.call_soon_threadsafe(case_relay.notify)
        for t in timers:
            loop.call_soon_threadsafe(rearm, t)

    stage = case_stage(service, Escalations(control, clock, on_alert=alert_raised),
                       cases_changed)
    links = link_app(settings)
    identity = IdentityKeeper(settings.default_region, links)
    projector = Projector(
        settings, codec(settings, db), writer, new_consumer,
        dead_letters=DeadLetters(producer, settings.dlq_topic), on_assigned=mark_ready,
        case_decoder=case_codec(settings, db), case_stage=stage, identity=identity,
        keys=kit.keystore, erasures=control.erasures,
        requests=RequestWork(control, identity, writer,
                             partial(purge, db, figures=writer.figures)),
        # `contactstream worker` sets the projector's leases (adapters/worker.py)
        refresh_figures=writer.refresh_figures)
    writer.keeper = identity  # other workers' identity rows are folded in at commit
    return WorkerServices(projector, producer, writer, db, service, control, scheduler,
                          (case_relay, alert_relay), webhooks, clock, kit.keystore, links,
                          Retention(db, control, kit))


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
    db: Database

    async def close(self) -> None:
        await self.producer.stop()
        self.journal.close()
        self.cases.app.close()
        if self.store.privacy is not None:
            self.store.privacy.keystore.close()
        self.db.close()


async def api_services(settings: Settings) -> ApiServices:
    producer = await kafka.start_producer(settings)
    db = database(settings, max_size=16)
    try:
        return await _api_services(settings, producer, db)
    except BaseException:  # e.g. a schema registry it cannot reach: nothing left open
        await producer.stop()
        db.close()
        raise


async def _api_services(settings: Settings, producer: AIOKafkaProducer, db: Database,
                        ) -> ApiServices:
    journal = IngestJournal(db)
    kit = privacy(settings, db)
    ingestor = Ingestor(settings, producer, codec(settings, db), journal, kit)
    store = ReadStore(db, kit)
    control = ControlStore(db, kit.secrets)
    if sealed := await asyncio.to_thread(control.seal_webhook_secrets):
        log.info("webhooks.secrets_sealed", webhooks=sealed)
    insights = Insights(store, settings.base_currency,
                        parse_rates(settings.fx_rates, settings.base_currency))
    return ApiServices(ingestor, store, TokenTable(load_tokens(settings.tokens_file)), producer,
                       journal, insights, case_service(settings, control, kit), control, db)


def crm_services(settings: Settings, services: ApiServices, audit: AuditLog) -> Crm:
    """What the routes of issue 14 need, over the API's database and stores."""
    return Crm(CrmReports(services.db, services.control, settings.base_currency,
                          services.insights.rates, settings.timezone),
               services.store, audit,
               Retention(services.db, services.control, services.store.privacy))


async def prepare_broker(settings: Settings, *, window: bool = True,
                         ) -> tuple[Settings, EmbeddedBroker | None]:
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
        await restore_broker(settings, window=window)
    return settings, broker


async def restore_broker(settings: Settings, window: bool = True) -> None:
    """Everything the database holds of the embedded broker's log, back at its offsets
    (adapters/journal.py): at start, and after the broker died under `up`. ``window``:
    what the projector has passed on the interactions and cases topics comes back as
    packed placeholders (a replay, reading from the start, restores it all)."""
    db = database(settings, max_size=2)
    producer = await kafka.start_producer(settings)
    try:
        passed = passed_offsets(db, settings) if window else {}
        await restore(producer, [IngestJournal(db).records(), archived(db)], passed)
    finally:
        await producer.stop()
        db.close()


def passed_offsets(db: Database, settings: Settings) -> dict[tuple[str, int], int]:
    """The projector's stored next offsets of the topics only it reads on the embedded
    broker (the DLQ and the alerts stay whole: people and other systems read them)."""
    stored = ReadStoreWriter(db)  # the projector's offsets, as it seeks to them
    return {(t, p): o for t in (settings.interactions_topic, settings.cases_topic)
            for p, o in stored.offsets(t).items()}
