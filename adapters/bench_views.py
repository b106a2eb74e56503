"""``contactstream bench --views N``: what an agent and a supervisor wait for, over HTTP.

In a scratch data dir (embedded broker and PostgreSQL unless configured): N synthetic
events for ``--customers`` customers go through the real ingest path (validation,
encryption, journal) and the worker's projector; then an API process of its own (as
``up`` runs it) serves, and a client process of its own measures, one request at a time:

- the customer view and the timeline (limit 50) of random known customers, p50/p99;
- every report and the at-risk customer list, p50/p99;
- the customer view again while this process ingests 2,000 events a second and a
  worker process projects them.

Run after the pipeline part of ``contactstream bench`` (its figures under ``views`` in
``--json``); asserts nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from typing import Any

import httpx

from . import bootstrap, kafka
from .auth import write_tokens
from .broker import free_port
from .config import Settings
from .demo import synthetic_events
from .ingest import Ingestor
from .journal import IngestJournal
from .logging import get_logger
from .privacy import privacy

log = get_logger(__name__)

REPORTS: dict[str, tuple[str, dict[str, Any]]] = {
    "satisfaction": ("/v1/reports/satisfaction", {"group_by": "agent", "window_days": 30}),
    "service": ("/v1/reports/service", {"window_days": 1}),
    "segments": ("/v1/reports/segments", {}),
    "pareto": ("/v1/reports/pareto", {}),
    "at_risk": ("/v1/customers", {"segment": "at_risk", "min_churn_risk": 0.5, "limit": 50}),
    "churn": ("/v1/reports/churn", {"window_days": 90}),  # issue 14
    "cohorts": ("/v1/reports/cohorts", {"period": "month"}),
    "workload": ("/v1/reports/workload", {}),
}


def _pct(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"p50": round(statistics.median(ordered), 2),
            "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2)}


async def run_views(base: Settings, events: int, customers: int, requests: int = 1000,
                    ingest_rate: int = 2000) -> dict[str, Any]:
    from .bench import scratch

    async with scratch(base, "views") as settings:
        return await _run(settings, events, customers, requests, ingest_rate)


def print_views(result: dict[str, Any]) -> None:
    print(f"views: loaded {result['events']:,} events / {result['customers']:,} customers"
          f" in {result['load_s']} s")
    for name in ("view_ms", "timeline_ms", "view_under_ingest_ms"):
        print(f"{name:<24} p50 {result[name]['p50']:>8} ms   p99 {result[name]['p99']:>8} ms")
    for name, pct in result["reports_ms"].items():
        print(f"report {name:<17} p50 {pct['p50']:>8} ms   p99 {pct['p99']:>8} ms")
    print(f"ingest while measuring: {result['ingest_events_per_s']:,.0f} ev/s")


async def _run(settings: Settings, n: int, customers: int, requests: int,
               ingest_rate: int) -> dict[str, Any]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    tokens = write_tokens(settings.tokens_file)
    await kafka.ensure_topics(settings, kafka.all_topics(settings))
    services = await bootstrap.worker_services(settings)
    journal = IngestJournal(services.db)
    ingestor = Ingestor(settings, services.producer, bootstrap.codec(settings, services.db),
                        journal, privacy(settings, services.db))
    server = None
    try:
        t0 = time.perf_counter()
        data = synthetic_events(n, seed=5, customers=customers)
        for i in range(0, n, 1000):
            await ingestor.publish(data[i:i + 1000])
        await services.projector.run(group=False, until_end=True)
        load_s = round(time.perf_counter() - t0, 1)
        ids = sorted({e["customer"]["id"] for e in data if e["customer"].get("id")})
        server, url = await _serve(settings)
        agent, supervisor = tokens["agent"], tokens["supervisor"]
        sample = random.Random(7).choices(ids, k=requests)
        view = await _measure(url, agent, [f"/v1/customers/{c}" for c in sample])
        timeline = await _measure(url, agent, [f"/v1/customers/{c}/timeline?limit=50"
                                               for c in sample])
        reports = {name: _pct(await _measure(url, supervisor, [_path(path, q)] * 30))
                   for name, (path, q) in REPORTS.items()}
        under, rate = await _under_ingest(settings, ingestor, url, agent, sample, ingest_rate)
        return {"events": n, "customers": customers, "load_s": load_s,
                "view_ms": _pct(view), "timeline_ms": _pct(timeline), "reports_ms": reports,
                "view_under_ingest_ms": _pct(under), "ingest_events_per_s": round(rate, 1)}
    finally:
        if server is not None:
            server.terminate()
            server.wait(15)
        await services.close()


def _path(path: str, query: dict[str, Any]) -> str:
    return path + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def _env(settings: Settings) -> dict[str, str]:
    """The environment of a process of `up` on the benchmark's broker, database and data
    dir."""
    return {**os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "CONTACTSTREAM_EMBEDDED_BROKER": "1" if settings.embedded_broker else "0",
            "CONTACTSTREAM_DATABASE_URL": settings.database_url,
            "CONTACTSTREAM_EMBEDDED_DATABASE": "1" if settings.embedded_database else "0",
            "CONTACTSTREAM_DATA_DIR": str(settings.data_dir),
            "CONTACTSTREAM_TOPIC_PREFIX": settings.topic_prefix,
            "CONTACTSTREAM_PARTITIONS": str(settings.partitions),
            "CONTACTSTREAM_LOG_LEVEL": "warning"}


async def _serve(settings: Settings) -> tuple[subprocess.Popen[bytes], str]:
    """The API in a process of its own, as `up` runs it."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "contactstream.adapters.bench_views"],
                            env={**_env(settings), "CONTACTSTREAM_PORT": str(port)},
                            stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            await asyncio.sleep(0.1)
    proc.terminate()
    raise RuntimeError("the API process did not start")


async def _measure(url: str, token: str, paths: list[str]) -> list[float]:
    """Latencies (ms) of the paths, one at a time, from a client process of its own."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "contactstream.adapters.bench_views", "--client", url, token,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate("\n".join(paths).encode())
    return [float(x) for x in json.loads(out)]


async def _worker(settings: Settings) -> subprocess.Popen[bytes]:
    """The worker in a process of its own, as `up` runs it, once it has its partitions."""
    ready = bootstrap.worker_ready_file(settings)
    ready.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "contactstream.adapters.cli", "worker"],
                            env=_env(settings), stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("the worker process did not start")
        await asyncio.sleep(0.1)
    return proc


async def _under_ingest(settings: Settings, ingestor: Ingestor, url: str, token: str,
                        sample: list[str], rate: int) -> tuple[list[float], float]:
    """The view while this process ingests ``rate`` events a second and the worker, in a
    process of its own as under `up`, projects them (in this process the projector's
    Python work starved the feeder: 198 ev/s reached at 1M events)."""
    data = synthetic_events(rate * 40, seed=11, customers=len(set(sample)))
    worker = await _worker(settings)
    stop = asyncio.Event()
    fed = 0

    async def feed() -> None:
        nonlocal fed
        tick = 0.1
        per_tick = max(1, int(rate * tick))
        next_at = time.perf_counter()
        while not stop.is_set() and fed + per_tick <= len(data):
            await ingestor.publish(data[fed:fed + per_tick])
            fed += per_tick
            next_at += tick  # a late tick is made up by the next ones
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

    started = time.perf_counter()
    feeder = asyncio.create_task(feed())
    try:
        await asyncio.sleep(2)  # the stream is flowing
        lat = await _measure(url, token, [f"/v1/customers/{c}" for c in sample])
    finally:
        stop.set()
        await feeder
        elapsed = time.perf_counter() - started
        worker.terminate()  # it drains what it has not projected yet: not waited for long
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(5)
    return lat, fed / elapsed


def _client(url: str, token: str) -> None:
    paths = [p for p in sys.stdin.read().splitlines() if p]
    out = []
    with httpx.Client(base_url=url, timeout=60,
                      headers={"Authorization": f"Bearer {token}"}) as c:
        for path in paths:
            t = time.perf_counter()
            resp = c.get(path)
            out.append((time.perf_counter() - t) * 1000)
            if resp.status_code >= 500:
                raise SystemExit(f"{path}: {resp.status_code}")
    print(json.dumps(out))


def _api() -> None:
    import uvicorn

    from . import config
    from .runner import build_api

    settings = config.from_env()

    async def serve() -> None:
        services = await bootstrap.api_services(settings)
        app, links, audit = build_api(settings, services)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=settings.port,
                                               log_level="warning", access_log=False,
                                               lifespan="off"))
        try:
            await server.serve()
        finally:
            audit.close()
            links.close()
            await services.close()

    asyncio.run(serve())


if __name__ == "__main__":
    if sys.argv[1:2] == ["--client"]:
        _client(sys.argv[2], sys.argv[3])
    else:
        _api()
