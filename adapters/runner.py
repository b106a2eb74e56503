"""``contactstream up``: broker (embedded unless configured), worker process, HTTP API,
and optionally the demo stream, in one command; SIGINT/SIGTERM stop it cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

import psycopg
import uvicorn
from fastapi import FastAPI

from ..streams.telemetry import log_throughput
from . import bootstrap, kafka, metrics, migrations
from .api.app import add_case_routes, add_privacy_routes, create_app
from .audit import AuditLog
from .auth import write_tokens
from .avro import SchemaCatalog
from .broker import EmbeddedBroker, die_with_parent, free_port
from .config import Settings
from .database import EmbeddedPostgres
from .http_crm import add_crm_routes
from .http_registry import add_registry_routes
from .ingest import BrokerFence
from .logging import get_logger
from .notify import Listener
from .ownership import BETWEEN_BEATS_S, raise_broker_epoch
from .publish import write_instance
from .startup import StartupError, listen_socket

log = get_logger(__name__)


# after a new broker epoch, before the broker starts again: every joined worker's beat
# has seen it and the worker is gone (adapters/worker.py)
BROKER_EPOCH_SETTLE_S = 3 * BETWEEN_BEATS_S

def worker_env(settings: Settings, metrics_port: int | None = None) -> dict[str, str]:
    """The environment of a worker child: what it needs of ``settings`` over our own."""
    return {
        **os.environ,
        # the worker's /metrics, on loopback: the API's /metrics shows it (metrics.py)
        "CONTACTSTREAM_HOST": "127.0.0.1",
        "CONTACTSTREAM_METRICS_PORT": str(metrics_port or settings.metrics_port),
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "CONTACTSTREAM_EMBEDDED_BROKER": "1" if settings.embedded_broker else "0",
        "CONTACTSTREAM_DATA_DIR": str(settings.data_dir),
        "CONTACTSTREAM_TOPIC_PREFIX": settings.topic_prefix,
        "CONTACTSTREAM_PARTITIONS": str(settings.partitions),
        "CONTACTSTREAM_LOG_FORMAT": settings.log_format,
        "CONTACTSTREAM_LOG_LEVEL": settings.log_level,
        "CONTACTSTREAM_DATABASE_URL": settings.database_url,
        "CONTACTSTREAM_EMBEDDED_DATABASE": "1" if settings.embedded_database else "0",
        "CONTACTSTREAM_TOKENS_FILE": str(settings.tokens_file),
    }


async def _supervise_database(server: EmbeddedPostgres, stop: asyncio.Event,
                              up: asyncio.Event) -> None:
    """Restart the embedded PostgreSQL server whenever it dies; ``up`` is clear while it
    is down, so the API answers 503 at once instead of waiting on connections."""
    while not stop.is_set():
        await asyncio.sleep(0.1)
        if server.alive or stop.is_set():
            continue
        up.clear()
        log.warning("database.exited", code=server.proc.returncode if server.proc else None)
        while not stop.is_set():
            try:
                await asyncio.to_thread(server.start)
                break
            except Exception as exc:  # noqa: BLE001 - keep trying; the log says why
                log.error("database.restart_failed", error=type(exc).__name__)
                await asyncio.sleep(1)
        up.set()
        log.info("database.restarted")


async def _supervise_broker(broker: EmbeddedBroker, settings: Settings, stop: asyncio.Event,
                            up: asyncio.Event, worker_pids: Callable[[], list[int]],
                            fence: BrokerFence | None, check_every_s: float = 10.0) -> None:
    """Restart the embedded broker whenever it dies, on the same port, and restore its
    log from the database; ``up`` is clear meanwhile (ingest and /readyz answer 503 at
    once). The worker is stopped with it and started again once the log is back, so
    nothing it publishes can land in the empty broker before the restore.

    Its memory is kept to a window of the log: when it passes
    ``CONTACTSTREAM_BROKER_MAX_MB`` it is restarted the same way on purpose, and what the
    projector has passed comes back as packed placeholders (adapters/journal.py)."""
    limit_kb = settings.broker_max_mb * 1024
    loop = asyncio.get_running_loop()
    checked = loop.time()
    while not stop.is_set():
        await asyncio.sleep(0.1)
        if stop.is_set():
            break
        if not broker.alive:
            log.error("broker.exited", code=broker.proc.returncode if broker.proc else None)
        elif limit_kb and loop.time() - checked >= check_every_s:
            checked = loop.time()
            rss = broker.rss_kb()
            if rss is None or rss < limit_kb:
                continue
            log.warning("broker.compacting", rss_mb=rss // 1024,
                        limit_mb=settings.broker_max_mb)
        else:
            continue
        await _restart_broker(broker, settings, stop, up, worker_pids, fence)
        rss = broker.rss_kb()
        if rss is not None and limit_kb and rss > limit_kb // 2:
            # the window itself is large (the projector is far behind): allow it to grow
            # by half the limit before the next compaction, not one every check
            limit_kb = rss + settings.broker_max_mb * 512
        log.info("broker.restarted", bootstrap=broker.bootstrap_servers,
                 rss_mb=(rss or 0) // 1024)


async def _restart_broker(broker: EmbeddedBroker, settings: Settings, stop: asyncio.Event,
                          up: asyncio.Event, worker_pids: Callable[[], list[int]],
                          fence: BrokerFence | None) -> None:
    up.clear()
    for pid in worker_pids():
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # at-least-once: it resumes from its offsets
    broker.kill()  # a compaction's broker is still alive: its log is in the database
    # processes that joined by the data dir (`worker`/`api --data-dir`): a new epoch in the
    # database stops those workers and refuses those replicas' journal commits, then a
    # moment for the workers' next beat before the broker takes records again
    try:
        await asyncio.to_thread(raise_broker_epoch, settings.database_url)
        await asyncio.sleep(BROKER_EPOCH_SETTLE_S)
    except psycopg.Error as exc:  # the database is down too: nothing can commit anyway
        log.error("broker.epoch_not_raised", error=type(exc).__name__)
    while not stop.is_set():
        try:
            if fence is not None:  # no 202 for a record the new broker took before its log
                await fence.advance()
            await asyncio.to_thread(broker.start)
            await kafka.ensure_topics(settings, kafka.all_topics(settings))
            await bootstrap.restore_broker(settings)
            if fence is not None:
                fence.reopen()
            break
        except Exception as exc:  # noqa: BLE001 - keep trying; the log says why
            log.error("broker.restart_failed", error=type(exc).__name__,
                      detail=str(exc)[:120])
            broker.kill()  # its half-restored log is worth nothing: no graceful 5 s
            await asyncio.sleep(0.2)
    up.set()


async def _watch_kafka(settings: Settings, stop: asyncio.Event, up: asyncio.Event,
                       every_s: float = 1.0) -> None:
    """An external cluster: ``up`` is clear while no bootstrap server accepts a
    connection (/readyz 503, ingest 503 at once)."""
    while not stop.is_set():
        reachable = await asyncio.to_thread(kafka.reachable, settings.bootstrap_servers)
        if reachable != up.is_set():
            log.warning("kafka.reachable" if reachable else "kafka.unreachable",
                        bootstrap=settings.bootstrap_servers)
            (up.set if reachable else up.clear)()
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)


async def _supervise_worker(settings: Settings, stop: asyncio.Event,
                            proceed: asyncio.Event | None = None,
                            running: list[int] | None = None,
                            metrics_port: int | None = None) -> None:
    """Run ``contactstream worker`` as a child (a second core for the projector) and
    restart it if it dies. ``stop`` is set once the API stopped taking events: the worker,
    told by SIGTERM, projects what is left in the log, then exits."""
    delay = 0.5
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        if proceed is not None and not proceed.is_set():  # the broker is being restored
            await asyncio.wait([asyncio.ensure_future(proceed.wait()),
                                asyncio.ensure_future(stop.wait())],
                               return_when=asyncio.FIRST_COMPLETED)
            continue
        started = loop.time()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "contactstream.adapters.cli", "worker",
            env=worker_env(settings, metrics_port), stdin=asyncio.subprocess.DEVNULL,
            preexec_fn=die_with_parent)
        if running is not None:
            running[:] = [proc.pid]
        waiter = asyncio.create_task(proc.wait())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait([waiter, stopper], return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 40)  # its drain: 20 s at most
                except TimeoutError:
                    proc.kill()
            return
        stopper.cancel()
        if running is not None:
            running.clear()
        bootstrap.worker_ready_file(settings).unlink(missing_ok=True)
        log.warning("worker.exited", code=proc.returncode, restart_in_s=delay)
        await asyncio.sleep(delay)
        # back off while it keeps failing; a worker that ran a while starts fresh
        delay = 0.5 if loop.time() - started > 60 else min(delay * 2, 10)


def build_api(settings: Settings, services: bootstrap.ApiServices,
              ready: Callable[[], Awaitable[bool]] | None = None,
              database_up: Callable[[], bool] | None = None,
              kafka_up: Callable[[], bool] | None = None,
              ) -> tuple[FastAPI, Any, AuditLog]:
    """The whole HTTP API over one set of API services; the link app (merge history) and
    the audit log it opens are the caller's to close."""
    app = create_app(services.ingestor, services.store, services.tokens, ready,
                     max_batch=settings.max_batch, max_body_bytes=settings.max_body_bytes,
                     insights=services.insights, database_up=database_up,
                     kafka_up=kafka_up)
    add_case_routes(app, services.cases, services.control, lambda: datetime.now(UTC),
                    settings.max_streams_per_token, settings.tz)
    metrics.watch(services.control)
    # alert streams wake on the alert log's NOTIFY, whichever worker wrote it
    app.state.api.listener = Listener(settings.database_url).start()
    if settings.metrics_port:  # `up`'s worker
        metrics.relay_worker(f"http://127.0.0.1:{settings.metrics_port}/metrics")
    links = bootstrap.link_app(settings)
    audit = AuditLog(services.db)
    add_privacy_routes(app, services.control, audit, links)
    add_crm_routes(app, bootstrap.crm_services(settings, services, audit))
    if not settings.schema_registry_url:  # the embedded registry, for standard clients
        add_registry_routes(app, SchemaCatalog(services.db))
    return app, links, audit


async def up(settings: Settings, demo: bool = False, workers: int = 1) -> int:
    # the API's port first: in use, `up` says so before it starts anything else
    sock = listen_socket(settings.host, settings.port)
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        write_tokens(settings.tokens_file)
        settings, pg = await asyncio.to_thread(bootstrap.prepare_database, settings)
        try:
            return await _up(settings, pg, demo, sock, max(1, workers))
        finally:
            if pg is not None:
                pg.stop()
    finally:
        sock.close()


async def _up(settings: Settings, pg: EmbeddedPostgres | None, demo: bool,
              sock: socket.socket, workers: int = 1) -> int:
    settings = settings.with_(metrics_port=settings.metrics_port or free_port())
    settings, broker = await bootstrap.prepare_broker(settings)
    stop = asyncio.Event()
    database_up = asyncio.Event()
    database_up.set()
    supervisor = (asyncio.create_task(_supervise_database(pg, stop, database_up))
                  if pg is not None else None)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    services = await bootstrap.api_services(settings)
    ready_file = bootstrap.worker_ready_file(settings)
    ready_file.unlink(missing_ok=True)
    stop_worker = asyncio.Event()  # after the API: every 202 is in the log by then
    kafka_up = asyncio.Event()
    kafka_up.set()
    # N workers share the partitions and the singletons by leases (adapters/ownership.py);
    # each serves its own /metrics, the first one's is relayed by the API's /metrics
    pids: list[list[int]] = [[] for _ in range(workers)]
    supervisors = [asyncio.create_task(_supervise_worker(
        settings, stop_worker, kafka_up if broker else None, pids[i],
        settings.metrics_port if i == 0 else free_port())) for i in range(workers)]
    worker = asyncio.ensure_future(asyncio.gather(*supervisors))
    kafka_watch = asyncio.create_task(
        _supervise_broker(broker, settings, stop, kafka_up,
                          lambda: [p for running in pids for p in running],
                          services.ingestor.fence)
        if broker is not None else _watch_kafka(settings, stop, kafka_up))

    async def ready() -> bool:
        return (not worker.done() and ready_file.exists() and database_up.is_set()
                and kafka_up.is_set())

    app, links, audit = build_api(settings, services, ready, database_up.is_set,
                                  kafka_up.is_set)
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port,
                                           log_level="warning", access_log=False, lifespan="off"))
    server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not serving.done():
        await asyncio.sleep(0.05)
    if serving.done():
        stop.set()
        stop_worker.set()
        await worker
        await kafka_watch
        audit.close()
        await services.close()
        links.close()
        if broker:
            broker.stop()
        serving.result()
        return 1
    url = f"http://{settings.host}:{settings.port}"
    # `publish --data-dir` reads it, and the README's Kafka tools
    instance = write_instance(settings.data_dir, url, settings.bootstrap_servers,
                              settings.database_url)
    # the banner once /readyz would answer 200 (the worker holds its partitions), so a
    # user who reads it can use it at once
    waited = 0.0
    while not await ready() and not stop.is_set() and waited < 120:
        await asyncio.sleep(0.05)
        waited += 0.05
    print(f"contactstream is up: {url}  (API docs: {url}/docs)", flush=True)
    print(f"console: {url}/console  (log in with a token of the file below)", flush=True)
    print(f"tokens: {settings.tokens_file.resolve()}", flush=True)
    print("schema registry: " + (settings.schema_registry_url
                                 or f"{url}/schema-registry"), flush=True)
    print(f"kafka: {settings.bootstrap_servers}" + (
        "  (embedded broker; older librdkafka tools: see README, Kafka tools)"
        if settings.embedded_broker else ""), flush=True)
    print(f"metrics: {url}/metrics  (the worker's included)", flush=True)
    log.info("up.ready", url=url, broker=settings.bootstrap_servers,
             embedded=settings.embedded_broker)
    throughput = asyncio.create_task(log_throughput(
        stop, event="api.throughput", totals=metrics.ingest_totals, rate_of="accepted"))
    demo_task = None
    if demo:
        from .demo_feed import run_demo_feed
        demo_task = asyncio.create_task(run_demo_feed(url, settings.tokens_file, stop,
                                                      customers=settings.demo_customers))
    await stop.wait()
    log.info("up.stopping")
    await throughput
    if demo_task:
        demo_task.cancel()
        with suppress(asyncio.CancelledError, Exception):
            await demo_task
    server.should_exit = True
    await serving
    stop_worker.set()
    await worker
    await kafka_watch
    if supervisor is not None:
        await supervisor
    app.state.api.listener.stop()
    audit.close()
    await services.close()
    links.close()
    if broker:
        broker.stop()
    instance.unlink(missing_ok=True)
    log.info("up.stopped")
    return 0


async def serve_api(settings: Settings) -> int:
    """``contactstream api``: the HTTP API alone, one replica of any number on one Kafka
    cluster and one database (issue 9). It owns no broker, database or data dir; every
    replica serves every endpoint with the same answers (the state is in the database,
    ingest duplicates are caught across replicas, the alert stream reads the alert log)."""
    if not settings.database_url or not settings.bootstrap_servers:
        raise StartupError(
            "an API replica needs the shared broker and database: set"
            " KAFKA_BOOTSTRAP_SERVERS and CONTACTSTREAM_DATABASE_URL, or give the --data-dir"
            " of a running `contactstream up`")
    sock = listen_socket(settings.host, settings.port)
    try:
        await asyncio.to_thread(migrations.migrate, settings.database_url)
        services = await bootstrap.api_services(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        kafka_up = asyncio.Event()
        kafka_up.set()
        watch = asyncio.create_task(_watch_kafka(settings, stop, kafka_up))

        async def ready() -> bool:
            return kafka_up.is_set() and await asyncio.to_thread(services.db.ping)

        app, links, audit = build_api(settings.with_(metrics_port=0), services, ready,
                                      None, kafka_up.is_set)
        server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port,
                                               log_level="warning", access_log=False,
                                               lifespan="off"))
        server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not serving.done():
            await asyncio.sleep(0.05)
        if not serving.done():
            url = f"http://{settings.host}:{settings.port}"
            print(f"contactstream api is up: {url}  (API docs: {url}/docs)", flush=True)
            log.info("api.ready", url=url, broker=settings.bootstrap_servers)
            await asyncio.wait([serving, asyncio.ensure_future(stop.wait())],
                               return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        server.should_exit = True
        await serving
        await watch
        app.state.api.listener.stop()
        audit.close()
        await services.close()
        links.close()
        log.info("api.stopped")
        return 0
    finally:
        sock.close()
