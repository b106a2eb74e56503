"""``contactstream bench --workers 1,2,4``: the same events projected by 1, 2, 4 worker
processes in one run (throughput, and events per CPU-second of the workers and of the
database), and the failover time after kill -9 of a worker (issue 9).

Each count gets a fresh database and topics. The events are published first while a
replay lease is held (workers take no partition then, adapters/ownership.py), the
workers are started and settle, and the lease is let go: the clock and the CPU meters
start there, so neither the publishing nor the workers' start-up is counted. Failover:
a probe event on a partition a victim holds, the victim killed with SIGKILL, the time
until the probe is in the timeline; a new worker takes the victim's place before the
next kill.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

import psutil
import psycopg
from aiokafka.partitioner import DefaultPartitioner

from . import bootstrap, kafka
from .bench import _tree_cpu, scratch_with_processes
from .config import Settings
from .database import EVENT_IS
from .demo import synthetic_events
from .ingest import Ingestor
from .journal import IngestJournal
from .logging import get_logger
from .ownership import replay_lease
from .privacy import privacy
from .runner import worker_env

log = get_logger(__name__)

PARTITIONS = 12  # shared evenly by 1, 2, 3, 4 and 6 workers


def _spawn(settings: Settings) -> subprocess.Popen[bytes]:
    """A `contactstream worker` with the environment `up` gives its own (runner.py)."""
    env = worker_env(settings.with_(log_level="warning", log_format="json", metrics_port=0))
    return subprocess.Popen([sys.executable, "-m", "contactstream.adapters.cli", "worker"],
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _cpu(pids: Sequence[int]) -> float:
    return sum(_tree_cpu(p) or 0.0 for p in pids)


def _query(url: str, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql, args).fetchall()  # type: ignore[arg-type]


def _projected(settings: Settings) -> int:
    rows = _query(settings.database_url,
                  "SELECT coalesce(sum(next_offset), 0) FROM offsets WHERE topic=%s",
                  (settings.interactions_topic,))
    return int(rows[0][0])


def _holders(settings: Settings) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for name, holder in _query(settings.database_url,
                               "SELECT name, holder FROM leases WHERE name LIKE 'partition:%%'"
                               " AND expires_at > now() ORDER BY name"):
        out.setdefault(holder, []).append(int(name.split(":")[1]))
    return out


async def _wait(check: Any, timeout: float, every: float = 0.02) -> float:
    """Seconds until ``check()`` is true (raises after ``timeout``)."""
    t0 = time.perf_counter()
    while not await asyncio.to_thread(check):
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError("the workers did not get there in time")
        await asyncio.sleep(every)
    return time.perf_counter() - t0


def _probe(customer: str, n: int) -> dict[str, Any]:
    return {"event_id": f"probe-{uuid.uuid4()}", "type": "web.visit",
            "occurred_at": "2026-11-20T10:00:00Z", "source": "bench",
            "customer": {"id": customer}, "channel": "web",
            "payload": {"url": f"https://bench.example/{n}"}}


def _customer_on(partition: int, partitions: int) -> str:
    """A customer id whose records land on ``partition`` (the producer's partitioner)."""
    every = list(range(partitions))
    choose = DefaultPartitioner()
    for i in range(100_000):
        cid = f"bench-{partition}-{i}"
        if choose(cid.encode(), every, every) == partition:
            return cid
    raise RuntimeError("no key for the partition")


async def _one(base: Settings, workers: int, events: int, kills: int) -> dict[str, Any]:
    async with scratch_with_processes(base.with_(partitions=PARTITIONS),
                                      f"w{workers}") as (settings, procs):
        await kafka.ensure_topics(settings, kafka.all_topics(settings))
        services = await bootstrap.worker_services(settings)
        ingestor = Ingestor(settings, services.producer,
                            bootstrap.codec(settings, services.db),
                            IngestJournal(services.db), privacy(settings, services.db))
        children: list[subprocess.Popen[bytes]] = []
        try:
            lease = await asyncio.to_thread(replay_lease, settings.database_url)
            data = synthetic_events(events, seed=1)
            for i in range(0, events, 1000):
                await ingestor.publish(data[i:i + 1000])
            children = [_spawn(settings) for _ in range(workers)]
            await _wait(lambda: len(_query(
                settings.database_url,
                "SELECT 1 FROM workers WHERE expires_at > now()")) == workers, 60, 0.1)
            await asyncio.sleep(1.0)  # past their start: imports, pools, recorders
            pids = [c.pid for c in children]
            cpu0, db0 = _cpu(pids), _tree_cpu(procs.database) or 0.0
            await asyncio.to_thread(lease.stop)  # go
            seconds = await _wait(lambda: _projected(settings) >= events, 600, 0.05)
            worker_cpu = _cpu(pids) - cpu0
            db_cpu = (_tree_cpu(procs.database) or 0.0) - db0
            result: dict[str, Any] = {
                "workers": workers, "events": events, "seconds": round(seconds, 2),
                "events_per_s": round(events / seconds, 1),
                "events_per_worker_cpu_s": round(events / worker_cpu, 1),
                "events_per_cpu_s": round(events / (worker_cpu + db_cpu), 1),
                "worker_cpu_s": round(worker_cpu, 2), "database_cpu_s": round(db_cpu, 2),
                "partitions": {h[-6:]: len(p) for h, p in _holders(settings).items()},
            }
            if workers > 1 and kills:
                result["failover_s"] = await _failovers(settings, ingestor, children, kills)
            return result
        finally:
            for c in children:
                if c.poll() is None:
                    c.send_signal(signal.SIGTERM)
            for c in children:
                try:
                    c.wait(30)
                except subprocess.TimeoutExpired:
                    c.kill()
            await services.close()


async def _failovers(settings: Settings, ingestor: Ingestor,
                     children: list[subprocess.Popen[bytes]], kills: int) -> dict[str, Any]:
    """kill -9 of a worker -> a probe on one of its partitions visible (seconds)."""
    times = []
    for n in range(kills):
        held = _holders(settings)
        pid_of = {c.pid: c for c in children if c.poll() is None}
        victim = next(pid for pid in pid_of
                      if any(h.split(":")[1] == str(pid) for h in held))
        partition = next(p for h, ps in held.items() if h.split(":")[1] == str(victim)
                         for p in ps)
        probe = _probe(_customer_on(partition, settings.partitions), n)
        psutil.Process(victim).send_signal(signal.SIGKILL)
        killed = time.perf_counter()
        pid_of[victim].wait(10)
        result = await ingestor.publish([probe])
        if result.accepted != 1:
            raise RuntimeError(f"probe not accepted: {result.as_dict()}")
        eid = probe["event_id"]
        await _wait(lambda eid=eid: bool(_query(  # type: ignore[misc]
            settings.database_url, f"SELECT 1 FROM timeline_rows WHERE {EVENT_IS}",
            (eid, eid))), 60)
        times.append(time.perf_counter() - killed)
        children.remove(pid_of[victim])
        children.append(_spawn(settings))  # back to full strength, settled
        await _wait(lambda: len(_holders(settings)) == len(children), 60, 0.1)
    return {"kills": kills, "median": round(statistics.median(times), 2),
            "max": round(max(times), 2), "all": [round(t, 2) for t in times]}


async def run_worker_bench(base: Settings, counts: Sequence[int], events: int,
                           kills: int = 5, as_json: bool = False) -> int:
    runs = [await _one(base, k, events, kills) for k in counts]
    out = {"events": events, "partitions": PARTITIONS, "runs": runs,
           "cpus": os.cpu_count(), "load_1m": round(os.getloadavg()[0], 2)}
    if as_json:
        print(json.dumps(out))
        return 0
    for r in runs:
        fail = r.get("failover_s")
        print(f"{r['workers']} worker(s): {r['events_per_s']:,.0f} ev/s,"
              f" {r['events_per_worker_cpu_s']:,.0f} ev per worker CPU-s,"
              f" {r['events_per_cpu_s']:,.0f} ev per CPU-s (workers + database)"
              + (f"; failover after kill -9: median {fail['median']} s,"
                 f" max {fail['max']} s over {fail['kills']}" if fail else ""))
    return 0
