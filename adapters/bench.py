"""``contactstream bench``: the pipeline and a raw aiokafka baseline, side by side, on the
same broker and the same records, in one run. Prints numbers; asserts nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from aiokafka import TopicPartition

from . import bootstrap, kafka
from .broker import EmbeddedBroker
from .config import Settings
from .database import EVENT_ID, EVENT_IN, split_event_ids
from .demo import synthetic_events
from .ingest import Ingestor
from .journal import IngestJournal
from .logging import get_logger
from .privacy import privacy

log = get_logger(__name__)


@dataclass
class Processes:
    """The processes a bench run measures besides its own: the embedded database server
    and broker (None when external: their CPU is then not seen)."""
    database: int | None = None
    broker: int | None = None


def _tree_cpu(pid: int | None) -> float | None:
    """CPU seconds (user + system) of a process, its live descendants and its reaped
    children: a PostgreSQL server's backends come and go, their time stays counted."""
    if pid is None:
        return None
    try:
        root = psutil.Process(pid)
        t = root.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system
        for child in root.children(recursive=True):
            try:
                c = child.cpu_times()
                total += c.user + c.system
            except psutil.NoSuchProcess:
                pass
        return total
    except psutil.NoSuchProcess:
        return None


class CpuMeter:
    """CPU seconds spent between ``start`` and ``stop`` by this process (the worker or the
    baseline loop, all threads) with the worker's own children (its scores processes,
    ``children``), the database server and the broker, each apart."""

    def __init__(self, procs: Processes, children: Callable[[], list[int]] | None = None,
                 ) -> None:
        self.procs = procs
        self.children = children or list
        self.spent: dict[str, float | None] = {}
        self.children_spent = 0.0

    def _now(self) -> dict[str, Any]:
        return {"worker": time.process_time(), "database": _tree_cpu(self.procs.database),
                "broker": _tree_cpu(self.procs.broker),
                "children": {pid: _tree_cpu(pid) or 0.0 for pid in self.children()}}

    def start(self) -> None:
        self._t0 = self._now()

    def stop(self) -> dict[str, float | None]:
        end = self._now()
        before, after = self._t0["children"], end.pop("children")
        self.spent = {k: (None if end[k] is None or self._t0[k] is None
                          else end[k] - self._t0[k])
                      for k in end}
        # a child born meanwhile counts whole; the children (the scores processes) are
        # part of the worker, and also shown apart
        children = sum(t - before.get(pid, 0.0) for pid, t in after.items())
        self.spent["worker"] = (self.spent["worker"] or 0.0) + children
        self.children_spent = children
        return self.spent

    def us_per_event(self, n: int) -> dict[str, float | None]:
        return {k: None if v is None else _us_per_event(v, n) for k, v in self.spent.items()}


def _us_per_event(seconds: float, n: int) -> float:
    return round(seconds / n * 1e6, 1)


def _total(parts: dict[str, float | None]) -> float:
    return round(sum(v for v in parts.values() if v is not None), 1)


async def _baseline(settings: Settings, codec: Any, n: int) -> float:
    """Raw ceiling: getmany + Avro decode of every record, nothing else."""
    consumer = kafka.consumer(settings, group_id=None)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(settings.interactions_topic) or set()
        tps = [TopicPartition(settings.interactions_topic, p) for p in parts]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        decode = codec.decode
        seen = 0
        t0 = time.perf_counter()
        while seen < n:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batch.values():
                for rec in records:
                    decode(rec.value)
                seen += sum(1 for _ in records)
        return n / (time.perf_counter() - t0)
    finally:
        await consumer.stop()


VISIBLE_WITHIN_S = 30  # freshness: how long samples are waited for after the last is sent
LATE_WATCH_S = 30  # a late sample: how much longer it is watched for, to say where it is


async def _freshness(settings: Settings, services: Any, samples: int, *,
                     load_per_s: int = 0,
                     ) -> tuple[list[float], int, list[dict[str, Any]]]:
    """Accepted (ingest returned) -> visible in the read store: (latencies in ms, how
    many were late), while this process runs the pipeline. The samples are sent and
    watched for by a process of their own, as the API's process would (the worker's GIL
    and event loop are not the watcher's). Without a load, one event at a time; with
    ``load_per_s``, while another process ingests other events at that rate, a sample every
    50 ms, each timed until it is visible. A sample not visible ``VISIBLE_WITHIN_S`` after
    the last one was sent counts as the time it waited (``late``): a pipeline slower than
    the load shows as such; ``_where_late`` says where each late one is."""
    live = asyncio.create_task(services.projector.run(group=False))
    load = _Ingesting(settings, "load", load_per_s) if load_per_s else None
    sampler = _Ingesting(settings, "samples", samples, load_per_s)
    try:
        if load is not None:
            await load.start()
        await sampler.start()
        lat, late, where = await sampler.result()
        if load is not None and await asyncio.to_thread(load.stop) != 0:
            raise RuntimeError("the bench's load process failed: no figure under load")
    finally:
        for proc in (load, sampler):
            if proc is not None:
                await asyncio.to_thread(proc.stop)
        live.cancel()
        try:
            await live
        except asyncio.CancelledError:
            pass
    return lat, late, where


async def _samples(ingestor: Ingestor, db: Any, samples: int, load_per_s: int,
                   ) -> tuple[list[float], int, list[dict[str, Any]]]:
    """The freshness samples (``_freshness``), in the sampling process."""
    sent: dict[str, float] = {}
    lat: list[float] = []

    def seen() -> None:
        now = time.perf_counter()
        ids = list(sent)
        for (eid,) in db.all(f"SELECT {EVENT_ID} FROM timeline_rows WHERE {EVENT_IN}",
                             split_event_ids(ids)):
            lat.append((now - sent.pop(eid)) * 1000)

    for i, env in enumerate(synthetic_events(samples, seed=99)):
        env = {**env, "event_id": f"fresh-{load_per_s}-{i}-{env['event_id']}"}
        await ingestor.publish([env])
        sent[env["event_id"]] = time.perf_counter()
        next_at = time.perf_counter() + (0.05 if load_per_s else 0)
        while sent and (load_per_s == 0 or time.perf_counter() < next_at):
            seen()
            await asyncio.sleep(0.001)
    deadline = time.perf_counter() + VISIBLE_WITHIN_S
    while sent and time.perf_counter() < deadline:
        seen()
        await asyncio.sleep(0.001)
    late = len(sent)
    lat.extend((time.perf_counter() - t0) * 1000 for t0 in sent.values())
    return lat, late, await _where_late(db, sent)


async def _where_late(db: Any, sent: dict[str, float]) -> list[dict[str, Any]]:
    """Each late sample (id -> when it was accepted), in that order: where the ingest journal put it
    (partition and offset; ``journaled`` false: not accepted after all) and, watched for
    ``LATE_WATCH_S`` more, after how long it became visible (null: not within that, so
    lost or stuck, which a late figure alone cannot tell from slow)."""
    if not sent:
        return []
    ids = list(sent)
    placed = {eid: (p, o) for eid, p, o in db.all(
        f'SELECT {EVENT_ID}, partition, "offset" FROM ingest_journal_rows WHERE {EVENT_IN}',
        split_event_ids(ids))}
    visible: dict[str, float] = {}
    deadline = time.perf_counter() + LATE_WATCH_S
    while len(visible) < len(ids) and time.perf_counter() < deadline:
        now = time.perf_counter()
        unseen = [eid for eid in ids if eid not in visible]
        for (eid,) in db.all(f"SELECT {EVENT_ID} FROM timeline_rows WHERE {EVENT_IN}",
                             split_event_ids(unseen)):
            visible[eid] = round((now - sent[eid]) * 1000, 1)
        await asyncio.sleep(0.01)
    return [{"journaled": eid in placed, "partition": p, "offset": o,
             "visible_after_ms": visible.get(eid)}
            for eid in ids for p, o in [placed.get(eid, (None, None))]]


class _Ingesting:
    """A process beside the pipeline that ingests as the API's process does in ``up``:
    the load (``job`` "load", until stopped) or the freshness samples ("samples", whose
    result comes back). Its CPU is not taken from the worker under the same GIL."""

    def __init__(self, settings: Settings, job: str, *args: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.ready, self.halt = ctx.Event(), ctx.Event()
        self.results, sender = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=_ingesting, daemon=True,
                                args=(settings, job, args, self.ready, self.halt, sender))

    async def start(self) -> None:
        self.proc.start()
        for _ in range(600):  # a minute at the most, unless it dies before
            if await asyncio.to_thread(self.ready.wait, 0.1):
                return
            if not self.proc.is_alive():
                break
        self.stop()
        raise RuntimeError("a process of the bench did not start")

    async def result(self) -> Any:
        """What the job sent back; raises if the process died without."""
        while not await asyncio.to_thread(self.results.poll, 0.1):
            if not self.proc.is_alive() and not self.results.poll():
                raise RuntimeError("the bench's sampling process failed: no freshness")
        return self.results.recv()

    def stop(self) -> int | None:
        """Stop it; its exit code (0: it ran until told to stop, or to its end)."""
        if self.proc.is_alive():
            self.halt.set()
            self.proc.join(10)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join()
        return self.proc.exitcode


def _ingesting(settings: Settings, job: str, args: tuple[int, ...], ready: Any, halt: Any,
               results: Any) -> None:
    # logs as the bench's own, on stderr: structlog's default (debug, stdout) put a
    # child's lines into the bench's --json output
    from .logging import configure
    configure(settings.log_format, settings.log_level)
    asyncio.run(_ingesting_until(settings, job, args, ready, halt, results))


async def _ingesting_until(settings: Settings, job: str, args: tuple[int, ...], ready: Any,
                           halt: Any, results: Any) -> None:
    """The ingest of the API's process (what ``bootstrap.api_services`` builds of it, which
    also wants the API's tokens) running ``job``; a failed job raises (exit code 1)."""
    db = bootstrap.database(settings, max_size=4)
    kit = privacy(settings, db)
    journal = IngestJournal(db)
    producer = None
    try:
        producer = await kafka.start_producer(settings)
        ingestor = Ingestor(settings, producer, bootstrap.codec(settings, db), journal, kit)
        if job == "samples":
            ready.set()
            results.send(await _samples(ingestor, db, *args))
            return
        load = asyncio.create_task(_load(ingestor, *args))
        ready.set()
        halted = asyncio.ensure_future(asyncio.to_thread(halt.wait))
        await asyncio.wait((load, halted), return_when=asyncio.FIRST_COMPLETED)
        if load.done():  # it stopped before it was told to: it failed
            halt.set()
            await halted
            load.result()
        load.cancel()
        await asyncio.gather(load, return_exceptions=True)
    finally:
        if producer is not None:
            await producer.stop()
        journal.close()
        kit.keystore.close()
        db.close()


async def _load(ingestor: Ingestor, per_s: int) -> None:
    """Ingest ``per_s`` events a second, in requests of 50, until cancelled."""
    tick = 50 / per_s
    data = synthetic_events(per_s * 120, seed=7)
    i, next_at = 0, time.perf_counter()
    while True:
        batch = [{**e, "event_id": f"load-{i + j}-{e['event_id']}"}
                 for j, e in enumerate(data[i % len(data):i % len(data) + 50])]
        await ingestor.publish(batch)
        i += 50
        next_at += tick
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))


def _percentiles(lat: list[float], late: int,
                 where: list[dict[str, Any]]) -> dict[str, Any]:
    """p50 and p99, how many samples were not visible in time and where those are."""
    lat = sorted(lat)
    return {"p50": round(statistics.median(lat), 2),
            "p99": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 2),
            "late": late, "late_samples": where}


def _disk_bytes(path: Path) -> int:
    """Bytes allocated on disk under ``path`` (what ``du`` counts)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except FileNotFoundError:
                pass  # a temporary file that went away meanwhile
    return total


def _footprint(settings: Settings, db: Any) -> dict[str, int]:
    """After a checkpoint: the database's size (tables and indexes) and everything else
    the data dir holds on disk (the embedded server's WAL and files, the key store). Both
    write-ahead logs are checkpointed: the server's and the key store's (SQLite's, which
    otherwise holds up to ~4 MB of pages already in the file until its next automatic
    checkpoint)."""
    db.execute("CHECKPOINT")
    keys = settings.keys_db
    if keys.exists():
        with contextlib.closing(sqlite3.connect(keys, timeout=5)) as lite:
            lite.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    database = int(db.scalar("SELECT pg_database_size(current_database())"))
    whole = _disk_bytes(settings.data_dir)
    return {"data_dir": whole - database if settings.embedded_database else whole,
            "database": database}


async def run_bench(base: Settings, events: int = 100_000, as_json: bool = False,
                    samples: int = 1000, views: dict[str, Any] | None = None,
                    runs: int = 1) -> int:
    """``runs`` pipeline parts, each in a scratch dir of its own, judged on their medians.
    ``views``: the arguments of a ``--views`` part (adapters/bench_views.py), run after
    the pipeline part in a scratch dir of its own; its figures go under ``views``."""
    parts = []
    for _ in range(runs):
        async with scratch_with_processes(base, "bench") as (settings, procs):
            parts.append(await _run(settings, procs, events, samples))
    result = _summary(parts)
    if views is not None:
        from .bench_views import run_views
        result["views"] = await run_views(base, **views)
    if as_json:
        print(json.dumps(result))
    else:
        _print(result, samples)
        if views is not None:
            from .bench_views import print_views
            print_views(result["views"])
    return 0


def _summary(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One run's figures as they are; several: the median of each figure over the runs,
    the runs themselves kept under ``runs``."""
    if len(parts) == 1:
        return parts[0]
    return {**_medians(parts), "median_of": len(parts), "runs": parts}


def _medians(values: list[Any]) -> Any:
    """The median, figure by figure, of like-shaped results (texts and lists from the
    first), but ``late_samples``: every run's together."""
    first = values[0]
    if isinstance(first, dict):
        return {k: [x for v in values for x in v[k]] if k == "late_samples"
                else _medians([v[k] for v in values]) for k in first}
    if isinstance(first, bool) or not isinstance(first, int | float):
        return first
    if any(v is None for v in values):
        return None
    return round(statistics.median(values), 4)


def _print(result: dict[str, Any], samples: int) -> None:
    cpu, disk = result["cpu_us_per_event"], result["disk_bytes_per_event"]
    rows = [("events", f"{result['events']}"),
            ("ingest (validate+encode+produce+journal)",
             f"{result['ingest_events_per_s']:,.0f} ev/s"),
            ("baseline (getmany+decode)", f"{result['baseline_events_per_s']:,.0f} ev/s"),
            ("pipeline (decode+project+read store)",
             f"{result['pipeline_events_per_s']:,.0f} ev/s"),
            ("ratio pipeline/baseline", f"{result['ratio']:.3f}"),
            ("cpu/event pipeline (all processes)", f"{cpu['pipeline']:,.0f} us"),
            ("cpu/event baseline (all processes)", f"{cpu['baseline']:,.0f} us"),
            ("disk/event database", f"{disk['database']:,.0f} B"),
            ("disk/event data dir apart from it", f"{disk['data_dir']:,.0f} B"),
            ("disk/event in all", f"{disk['total']:,.0f} B")]
    if "median_of" in result:
        print(f"medians of {result['median_of']} runs")
    for label, value in rows:
        print(f"{label:<42}{value:>16}")
    for name, parts in (("pipeline", {k: cpu[k] for k in ("worker", "database", "broker")}),
                        ("baseline", cpu["baseline_parts"])):
        split = ", ".join(f"{k} {v:,.0f} us" for k, v in parts.items() if v is not None)
        if name == "pipeline":
            split += f" (the worker's scores processes {cpu['worker_scores']:,.0f} us of it)"
        print(f"  {name} cpu/event: {split}")
    for key, label in (("freshness_ms", "at a trickle"),
                       ("freshness_under_load_ms", "under 1,000 ev/s")):
        f = result[key]
        late = f" ({f['late']} late: not seen within {VISIBLE_WITHIN_S} s)" if f["late"] else ""
        print(f"freshness accepted->visible {label}  p50 {f['p50']:.1f} ms"
              f"  p99 {f['p99']:.1f} ms  ({samples} events){late}")
        for where in f["late_samples"]:
            print(f"  a late sample: {_where_text(where)}")


def _where_text(where: dict[str, Any]) -> str:
    """A late sample's place (``_where_late``), as the text output says it."""
    placed = (f"journaled at partition {where['partition']} offset {where['offset']}"
              if where["journaled"] else "not in the ingest journal")
    seen = where["visible_after_ms"]
    shown = (f"visible after {seen:,.0f} ms" if seen is not None
             else f"not visible {LATE_WATCH_S} s later")
    return f"{placed}, {shown}"


async def _run(settings: Settings, procs: Processes, n: int, samples: int,
               ) -> dict[str, Any]:
    await kafka.ensure_topics(settings, kafka.all_topics(settings))
    data = synthetic_events(n, seed=1)
    bootstrap.tune_gc()  # the pipeline as the worker's process runs it
    services = await bootstrap.worker_services(settings)
    journal = IngestJournal(services.db)
    ingestor = Ingestor(settings, services.producer, bootstrap.codec(settings, services.db),
                        journal, privacy(settings, services.db))
    try:
        fresh = _footprint(settings, services.db)
        t0 = time.perf_counter()
        for i in range(0, n, 1000):
            result = await ingestor.publish(data[i:i + 1000])
            if result.accepted != len(data[i:i + 1000]):
                raise RuntimeError(f"bench data rejected: {result.rejected[:3]}")
        ingest_rate = n / (time.perf_counter() - t0)
        base_cpu = CpuMeter(procs)
        base_cpu.start()
        baseline = await _baseline(settings, services.projector.decoder, n)
        base_cpu.stop()
        pipe_cpu = CpuMeter(procs, services.writer.scorer_pids)
        pipe_cpu.start()
        t0 = time.perf_counter()
        progress = await services.projector.run(group=False, until_end=True)
        pipeline = progress.events / (time.perf_counter() - t0)
        pipe_cpu.stop()
        after = _footprint(settings, services.db)
        trickle = await _freshness(settings, services, samples)
        loaded = await _freshness(settings, services, samples, load_per_s=1000)
    finally:
        await services.close()
    pipe_parts, base_parts = pipe_cpu.us_per_event(n), base_cpu.us_per_event(n)
    return {
        "events": n,
        "pipeline_events_per_s": round(pipeline, 1),
        "baseline_events_per_s": round(baseline, 1),
        "ratio": round(pipeline / baseline, 4),
        # CPU time per event of every process involved (this one, the embedded database
        # server with its backends, the embedded broker; null when external)
        # the worker's share of its scores processes is also given apart (worker_scores)
        "cpu_us_per_event": {"pipeline": _total(pipe_parts), "baseline": _total(base_parts),
                             **pipe_parts,
                             "worker_scores": _us_per_event(pipe_cpu.children_spent, n),
                             "baseline_parts": base_parts},
        # (size after the n events - size of the fresh instance) / n, after checkpoints
        "disk_bytes_per_event": {"events": n, **{k: round((after[k] - fresh[k]) / n)
                                                 for k in after},
                                 "total": round((sum(after.values()) - sum(fresh.values()))
                                                / n)},
        "freshness_ms": _percentiles(*trickle),
        "freshness_under_load_ms": _percentiles(*loaded),
        "ingest_events_per_s": round(ingest_rate, 1),
        "broker": "embedded" if settings.embedded_broker else "external",
    }


@asynccontextmanager
async def scratch(base: Settings, prefix: str) -> AsyncIterator[Settings]:
    """Settings for one benchmark run: a temporary data dir, topics of its own and the
    embedded broker unless a cluster is configured."""
    async with scratch_with_processes(base, prefix) as (settings, _procs):
        yield settings


@asynccontextmanager
async def scratch_with_processes(base: Settings, prefix: str,
                                 ) -> AsyncIterator[tuple[Settings, Processes]]:
    """``scratch``, with the embedded database's and broker's process ids."""
    with tempfile.TemporaryDirectory(prefix=f"contactstream-{prefix}-") as tmp:
        settings = base.with_(data_dir=Path(tmp), database_url="",
                              topic_prefix=f"{prefix}{int(time.time() * 1000)}")
        settings, pg = bootstrap.prepare_database(settings)
        broker = None
        if not settings.bootstrap_servers:
            broker = EmbeddedBroker().start()
            settings = settings.with_(bootstrap_servers=broker.bootstrap_servers,
                                      embedded_broker=True)
        procs = Processes(database=pg.proc.pid if pg is not None and pg.proc else None,
                          broker=broker.proc.pid if broker is not None and broker.proc
                          else None)
        try:
            yield settings, procs
        finally:
            if broker:
                broker.stop()
            if pg is not None:
                pg.stop()
