"""The stream worker: a faust app with an agent on the DLQ, and beside it the projector,
the SLA timers, the outbox relays, the webhook deliveries and the figures refresh.

The DLQ is low-volume, so a plain faust agent is the right tool there; the interactions
topic is high-volume and is read by the projector's batch loop (streams/projector.py).
One task refreshes, every ``FIGURES_EVERY_S``, the customer figures that move with the
clock rather than with events (adapters/figurestore.py ``FigureWriter.refresh``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import faust
import structlog

from .outbox import OutboxRelay
from .ports import GAP_HEADER, FigureJob, LeaseHolder, RetentionJob, StreamSettings
from .projector import Projector
from .sla import Clock, SlaScheduler, SystemClock
from .telemetry import log_throughput
from .webhooks import WebhookDispatcher

log = structlog.get_logger(__name__)

# how often stale satisfaction windows, churn risks and the base-wide RFM bounds are
# recomputed; a stored figure is at most this much behind the clock
FIGURES_EVERY_S = 60.0
# how often the worker asks whether a retention run is due (adapters/retention.py)
RETENTION_CHECK_S = 60.0
# how often a worker looks whether it took or lost the singletons' lease
SINGLETONS_CHECK_S = 0.1
# how long the singletons get to stop once the lease is lost, before they are cancelled
SINGLETONS_GRACE_S = 0.2
# the faust app's own stop (its group leave) may hang on a broker in a rebalance
FAUST_STOP_S = 10.0


async def refresh_figures_every(refresh: Callable[[int], dict[str, int]], clock: Clock,
                                stop: asyncio.Event, every_s: float = FIGURES_EVERY_S,
                                done_event: str = "figures.refreshed") -> None:
    """Run ``refresh(now_ms)`` at start and then every ``every_s`` of ``clock`` until
    ``stop``; the refresh itself makes sure one worker at a time does it."""
    while not stop.is_set():
        started = clock.now()
        done = await asyncio.to_thread(refresh, int(started.timestamp() * 1000))
        if any(done.values()):
            log.info(done_event, **done)
        sleep = asyncio.ensure_future(clock.sleep_until(started + timedelta(seconds=every_s)))
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait((sleep, stopped), return_when=asyncio.FIRST_COMPLETED)
        for t in (sleep, stopped):
            t.cancel()


class AppSettings(StreamSettings, Protocol):
    @property
    def topic_prefix(self) -> str: ...
    @property
    def bootstrap_servers(self) -> str: ...
    @property
    def partitions(self) -> int: ...
    @property
    def data_dir(self) -> Path: ...


class WorkerTasks(Protocol):
    """What the worker runs (adapters/bootstrap.py ``WorkerServices`` has it)."""

    @property
    def projector(self) -> Projector: ...
    @property
    def writer(self) -> FigureJob: ...
    @property
    def clock(self) -> Clock | None: ...
    @property
    def scheduler(self) -> SlaScheduler | None: ...
    @property
    def relays(self) -> tuple[OutboxRelay, ...]: ...
    @property
    def webhooks(self) -> WebhookDispatcher | None: ...
    @property
    def retention(self) -> RetentionJob | None: ...


def build_app(settings: AppSettings) -> faust.App:
    """The faust app: the agent on the dead-letter topic."""
    embedded = settings.embedded_broker
    app = faust.App(
        f"{settings.topic_prefix}-worker",
        broker=f"kafka://{settings.bootstrap_servers}",
        store="memory://",
        datadir=str(settings.data_dir / "faust"),  # not a folder in the working directory
        web_enabled=False,
        autodiscover=False,
        topic_partitions=settings.partitions,
        topic_allow_declare=False,
        producer_acks=-1,
        # the embedded broker holds a join for the whole rebalance timeout (ARCHITECTURE)
        broker_rebalance_timeout=3 if embedded else 60,
        broker_session_timeout=6 if embedded else 30,
        broker_heartbeat_interval=1 if embedded else 3,
        broker_max_poll_interval=60 if embedded else 300,
        consumer_auto_offset_reset="earliest",
    )
    dlq = app.topic(settings.dlq_topic, value_serializer="raw", key_serializer="raw")

    @app.agent(dlq)
    async def watch_dead_letters(stream: Any) -> None:
        async for event in stream.events():
            headers = dict(event.headers or {})
            if GAP_HEADER in headers:
                continue
            reason = headers.get("contactstream-error", b"")
            if isinstance(reason, bytes):
                reason = reason.decode(errors="replace")
            log.warning("dlq.record", partition=event.message.partition,
                        offset=event.message.offset, reason=str(reason)[:60])

    return app


class StreamWorker:
    """The worker's tasks (projector, figures refresh, SLA timers, outbox relays, webhook
    deliveries) beside the faust app (the DLQ agent). The tasks start at once: the
    faust app's own group join on the embedded broker takes ~5 s, which the projector, the
    timers and the relays need not wait for."""

    def __init__(self, settings: AppSettings, services: WorkerTasks, failed: asyncio.Event,
                 stop: asyncio.Event, leases: LeaseHolder | None = None) -> None:
        self.services = services
        # many workers (issue 9): the singletons run only while this worker holds their
        # lease; None: the one worker of a test or a bench runs them all
        self.leases = leases
        self.failed = failed
        self.stop_event = stop
        self.app = build_app(settings)
        self.tasks: list[asyncio.Task[None]] = []
        self.projecting: asyncio.Task[None] | None = None
        self._faust: asyncio.Task[Any] | None = None

    async def _guarded(self, name: str, coro: Coroutine[Any, Any, Any]) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("worker.task_crashed", task=name)
            self.failed.set()  # the process exits non-zero and `up` restarts it

    async def _cases_and_alerts(self, stop: asyncio.Event) -> None:
        services = self.services
        if services.scheduler is None or services.webhooks is None:
            return
        timers = await services.scheduler.start()
        log.info("sla.timers_started", cases=timers)
        try:
            await asyncio.gather(
                *(self._guarded(f"outbox.{r.name}", r.run(stop)) for r in services.relays),
                self._guarded("webhooks", services.webhooks.run(stop)))
        finally:
            await services.scheduler.stop()

    def _singletons(self, stop: asyncio.Event) -> list[asyncio.Task[Any]]:
        """What must run once among all workers: SLA timers, outbox relays, webhooks, the
        retention runs (the admins' requests run in the projector's loop, also only
        under the lease)."""
        services = self.services
        tasks = [asyncio.create_task(self._cases_and_alerts(stop))]
        if services.retention is not None:  # data that expires (issue 14): due hourly
            tasks.append(asyncio.create_task(self._guarded(
                "retention", refresh_figures_every(
                    services.retention.run_due, services.clock or SystemClock(),
                    stop, RETENTION_CHECK_S, "retention.ran"))))
        return tasks

    async def _hold_singletons(self, leases: LeaseHolder) -> None:
        """Start the singletons when this worker takes their lease, stop them the moment
        it is lost (its successor starts them within the lease's TTL)."""
        while not self.stop_event.is_set():
            if not leases.holds_singletons():
                await asyncio.sleep(SINGLETONS_CHECK_S)
                continue
            log.info("singletons.taken")
            lost = asyncio.Event()
            tasks = self._singletons(lost)
            try:
                while leases.holds_singletons() and not self.stop_event.is_set():
                    await asyncio.sleep(SINGLETONS_CHECK_S)
            finally:  # lost, stopped or cancelled: the singletons stop with it, at once
                # (a relay cut off mid-publish is safe: the next holder skips what the
                # topic already has, by the seq header)
                lost.set()
                _, pending = await asyncio.wait(tasks, timeout=SINGLETONS_GRACE_S)
                for t in pending:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            if not self.stop_event.is_set():
                log.warning("singletons.lost")

    async def start(self) -> None:
        services = self.services
        self.projecting = asyncio.create_task(
            self._guarded("projector", services.projector.run()))
        self.tasks = [self.projecting, asyncio.create_task(self._guarded(
            "figures", refresh_figures_every(services.writer.refresh_figures,
                                             services.clock or SystemClock(),
                                             self.stop_event))),
                      asyncio.create_task(log_throughput(self.stop_event))]
        if self.leases is None:
            self.tasks += self._singletons(self.stop_event)
        else:
            self.tasks.append(asyncio.create_task(self._hold_singletons(self.leases)))
        # the faust app's start waits for its group join (seconds, longer while other
        # workers come and go): in the background, so a stop is never stuck behind it
        self._faust = asyncio.create_task(self.app.start())

    async def stop(self, drain_s: float = 20.0) -> None:
        """Let the projector read on to the end of the log (a clean stop leaves nothing
        acknowledged unprojected), then stop everything."""
        if self.projecting is not None and not self.failed.is_set():
            self.services.projector.drain()
            done, _ = await asyncio.wait([self.projecting], timeout=drain_s)
            log.info("worker.drained", complete=bool(done))
        self.stop_event.set()
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self._faust is not None and not self._faust.done():
            self._faust.cancel()
            await asyncio.gather(self._faust, return_exceptions=True)
        try:
            await asyncio.wait_for(self.app.stop(), FAUST_STOP_S)
        except TimeoutError:
            log.warning("worker.faust_stop_timeout", seconds=FAUST_STOP_S)
