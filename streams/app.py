"""The faust worker: the projector as a faust task, and a faust agent on the DLQ.

The DLQ is low-volume, so a plain faust agent is the right tool there; the interactions
topic is high-volume and is read by the projector's batch loop (streams/projector.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import faust

from ..adapters.bootstrap import WorkerServices
from ..adapters.config import Settings
from ..adapters.journal import GAP_HEADER
from ..adapters.logging import get_logger

log = get_logger(__name__)


def build_app(settings: Settings, services: WorkerServices, failed: asyncio.Event,
              stop: asyncio.Event) -> faust.App:
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

    async def guarded(name: str, coro: Coroutine[Any, Any, Any]) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("worker.task_crashed", task=name)
            failed.set()  # the process exits non-zero and `up` restarts it

    @app.task
    async def project() -> None:
        await guarded("projector", services.projector.run())

    @app.task
    async def cases_and_alerts() -> None:
        if services.scheduler is None:
            return
        timers = await services.scheduler.start()
        log.info("sla.timers_started", cases=timers)
        await asyncio.gather(
            *(guarded(f"outbox.{r.name}", r.run(stop)) for r in services.relays),
            guarded("webhooks", services.webhooks.run(stop)))

    return app
