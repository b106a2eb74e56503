"""The worker process (``contactstream worker``): the composition root's services in the
faust app (streams/app.py), until told to stop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from ..streams.app import StreamWorker
from . import bootstrap, metrics, migrations
from .config import Settings
from .logging import get_logger
from .ownership import Leases
from .startup import StartupError

log = get_logger(__name__)


async def run_worker(settings: Settings) -> int:
    if not settings.database_url:
        log.error("worker.no_database",
                  hint="set CONTACTSTREAM_DATABASE_URL, or run `contactstream up`")
        return 2
    # the metrics port first: in use, the worker says so before it starts anything
    server = (metrics.serve_worker_metrics(settings.host, settings.metrics_port)
              if settings.metrics_port else None)
    await asyncio.to_thread(migrations.migrate, settings.database_url)
    bootstrap.tune_gc()
    services = await bootstrap.worker_services(settings)
    # many workers share the partitions and the singletons by leases in the database
    # (adapters/ownership.py); the topic's partitions, as the broker has them
    partitions = len(await services.producer.partitions_for(settings.interactions_topic))
    cases = len(await services.producer.partitions_for(settings.cases_topic))
    if cases != partitions:  # partition N of both is one lease: a customer's records meet
        await services.close()
        raise StartupError(
            f"{settings.interactions_topic} has {partitions} partitions and"
            f" {settings.cases_topic} {cases}: they must have the same number (a customer's"
            " interactions and case events share a partition; deploy/kafka-topics.sh)")
    leases = await asyncio.to_thread(Leases(
        settings.database_url, partitions,
        on_broker_restart=_broker_restarted if settings.embedded_broker else None).start)
    services.projector.leases = leases
    if services.control is not None:
        metrics.watch_worker(services.scheduler, services.control, services.cases)
    failed = asyncio.Event()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signalled = asyncio.Event()  # the tasks' own stop comes after the projector drained
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, signalled.set)
    worker = StreamWorker(settings, services, failed, stop, leases)
    await worker.start()
    log.info("worker.started", topic=settings.interactions_topic, worker=leases.worker_id,
             metrics=f"http://{settings.host}:{settings.metrics_port}/metrics"
             if server is not None else None)
    waiters = [asyncio.create_task(signalled.wait()), asyncio.create_task(failed.wait())]
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for w in waiters:
        w.cancel()
    await worker.stop()
    await asyncio.to_thread(leases.stop)  # at once: no one waits for the TTL
    await services.close()
    if server is not None:
        server.shutdown()
    log.info("worker.stopped", failed=failed.is_set())
    return 1 if failed.is_set() else 0


def _broker_restarted() -> None:
    """The embedded broker of the `up` this worker joined was restarted: it is empty
    until `up` restored its log, and nothing may be published into it before. Out at once,
    as `up` kills its own workers then (a kill loses nothing: the stored offsets stand)."""
    log.warning("worker.broker_restarted", action="exiting; start the worker again")
    logging.shutdown()
    os._exit(3)
