"""The durability chaos run (issue 10): publish N events to `contactstream up` over HTTP
while kill -9 hits the worker, the whole `up`, the embedded broker and the embedded
PostgreSQL at random moments; then wait until the worker caught up and check that every
acknowledged event is in the timeline, the figures, the cases and the alerts exactly once.

Prints what it measured. Exit 0: nothing lost or doubled; 1: a check found a violation;
2: the run itself could not finish (`up` did not come back).

Run: python benchmarks/chaos.py [--events 100000] [--kills 25] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psycopg
from chaos_checks import Findings, Published, check_database, check_http, wait_caught_up
from chaos_report import LoadSampler, log_summary, print_report
from upproc import KINDS, Up, kill_and_recover

from contactstream.adapters.demo import synthetic_events


def make_events(n: int, customers: int, seed: int) -> list[dict[str, Any]]:
    """The demo generator's mixed stream, each person mapped onto one of ``customers``
    customers named by id (with an e-mail of their own): no two customers ever merge, so
    what each one must show is known."""
    events = synthetic_events(n, seed=seed, customers=customers)
    index: dict[str, int] = {}
    for e in events:
        c = e["customer"]
        person = (c.get("id") or (c.get("email") or "").strip().lower() or c.get("phone")
                  or c.get("visitor_id") or "")
        i = index.setdefault(person, len(index) % customers)
        e["customer"] = {"id": f"chaos-{i:05d}", "email": f"chaos-{i:05d}@example.com",
                         "phone": None, "visitor_id": None, "name": c.get("name")}
    return events


def plan_kills(kills: int, mix: dict[str, int], events: int,
               rng: random.Random) -> list[tuple[str, int]]:
    """(kind, acknowledged count to strike at): the mix's shares rounded by largest
    remainder, in random order, at random points of the publishing."""
    total = sum(mix.values())
    exact = {k: kills * w / total for k, w in mix.items()}
    counts = {k: math.floor(x) for k, x in exact.items()}
    for k in sorted(exact, key=lambda k: counts[k] - exact[k])[:kills - sum(counts.values())]:
        counts[k] += 1
    kinds = [k for k, n in counts.items() for _ in range(n)]
    rng.shuffle(kinds)
    points = sorted(int(rng.uniform(0.02, 0.97) * events) for _ in kinds)
    return list(zip(kinds, points, strict=True))


class Publisher(threading.Thread):
    """Posts the batches in order; a batch is retried until a 202 acknowledges it."""

    def __init__(self, up: Up, events: list[dict[str, Any]], batch: int,
                 pub: Published, rate: float) -> None:
        super().__init__(name="publisher", daemon=True)
        self.up, self.pub, self.rate = up, pub, rate
        self.batches = [events[i:i + batch] for i in range(0, len(events), batch)]
        self.accepted = self.duplicates = self.rejected = self.miscounted = 0
        self.retries: Counter[str] = Counter()
        self.done = threading.Event()
        self.fatal: str | None = None
        self.seconds = 0.0
        self.started = time.time()
        self.log: list[tuple[float, float, int]] = []  # per batch: first sent, 202, tries

    def run(self) -> None:
        self.started = time.time()
        t0 = due = time.monotonic()
        try:
            with self.up.client("publisher") as client:
                for batch in self.batches:
                    # paced, so that the kills fall into the publishing; no burst after
                    # an outage
                    time.sleep(max(0.0, due - time.monotonic()))
                    due = max(due, time.monotonic()) + (len(batch) / self.rate
                                                        if self.rate else 0)
                    self._send(client, batch)
        except Exception as exc:  # noqa: BLE001 - the report says why publishing stopped
            self.fatal = f"{type(exc).__name__}: {exc}"
        finally:
            self.seconds = time.monotonic() - t0
            self.done.set()

    def _send(self, client: httpx.Client, batch: list[dict[str, Any]]) -> None:
        sent, tries = time.time(), 0
        while True:
            tries += 1
            try:
                resp = client.post("/v1/events", json=batch)
            except httpx.HTTPError as exc:
                self.retries[type(exc).__name__] += 1
                time.sleep(0.2)
                continue
            if resp.status_code == 202:
                body = resp.json()
                rejected = {r["index"] for r in body["rejected"]}
                ok = [e["event_id"] for i, e in enumerate(batch) if i not in rejected]
                self.accepted += body["accepted"]
                self.duplicates += body["duplicates"]
                self.rejected += len(rejected)
                self.miscounted += body["accepted"] + body["duplicates"] != len(ok)
                self.pub.acked.update(ok)
                self.log.append((sent, time.time(), tries))
                return
            self.retries[str(resp.status_code)] += 1
            if resp.status_code in (400, 401, 403, 413, 422):
                raise RuntimeError(f"{resp.status_code} {resp.text[:200]}")
            time.sleep(min(float(resp.headers.get("retry-after") or 0.2), 1.0))


class Killer(threading.Thread):
    """Strikes at the planned points; after each kill waits until `up` is ready again."""

    def __init__(self, up: Up, plan: list[tuple[str, int]], publisher: Publisher,
                 rng: random.Random, timeout: float) -> None:
        super().__init__(name="killer", daemon=True)
        self.up, self.plan, self.publisher, self.rng = up, plan, publisher, rng
        self.timeout = timeout
        # kind, acknowledged before it, seconds until ready again, when (time.time())
        self.done: list[tuple[str, int, float | None, float]] = []
        self.fatal: str | None = None

    def run(self) -> None:
        last = 0.0
        for kind, point in self.plan:
            while len(self.publisher.pub.acked) < point and not self.publisher.done.is_set():
                time.sleep(0.05)
            # after the publishing the rest strike while the worker catches up
            time.sleep(self.rng.uniform(1, 5) if self.publisher.done.is_set()
                       else self.rng.uniform(0, 1))
            acked = len(self.publisher.pub.acked)
            # up restarts a worker after 0.5 s, doubling to 10 s unless the one that died
            # ran a minute: the time since the kill before says which applies
            gap = time.monotonic() - last if last else None
            last, at = time.monotonic(), time.time()
            took = kill_and_recover(self.up, kind, self.timeout)
            self.done.append((kind, acked, took, at))
            print(f"  kill {len(self.done):2d}/{len(self.plan)}: {kind:8s} at {acked:7d}"
                  f" acknowledged, {f'{gap:5.1f} s' if gap else '   --  '} after the"
                  " previous kill; ready again after "
                  f"{'NOT READY' if took is None else f'{took:.2f} s'}", flush=True)
            if took is None and kind == "up" and not self._restart():
                self.fatal = "up did not come back after kill -9"
                return

    def _restart(self) -> bool:
        try:
            self.up.stop()
            self.up.start(self.timeout)
            return True
        except (TimeoutError, RuntimeError):
            return False


def parse_mix(text: str) -> dict[str, int]:
    mix = {k: int(v) for k, v in (p.split("=") for p in text.split(",") if p)}
    unknown = set(mix) - set(KINDS)
    if unknown or sum(mix.values()) <= 0:
        raise argparse.ArgumentTypeError(f"kinds are {', '.join(KINDS)}, weights >= 0")
    return mix


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000, help="events to publish (%(default)s)")
    ap.add_argument("--customers", type=int, default=10_000,
                    help="customers they belong to (%(default)s)")
    ap.add_argument("--batch", type=int, default=500,
                    help="events a request, max 1000 (%(default)s)")
    ap.add_argument("--rate", type=float, default=500,
                    help="events a second at most, 0: as fast as `up` takes them; paced so"
                    " that the kills fall into the publishing (%(default)s)")
    ap.add_argument("--kills", type=int, default=25, help="kill -9s in all (%(default)s)")
    ap.add_argument("--mix", type=parse_mix, default="worker=60,up=20,broker=10,database=10",
                    help="relative weights of the kill kinds (%(default)s)")
    ap.add_argument("--seed", type=int, default=1,
                    help="the events, the kinds, moments and pauses of the kills (%(default)s)")
    ap.add_argument("--dir", type=Path, help="work dir (data dir and up.log); default: "
                    "a new one under /tmp, removed after a run that found nothing")
    ap.add_argument("--recovery-timeout", type=float, default=120,
                    help="seconds a kill's victim may take to be ready again (%(default)s)")
    ap.add_argument("--catch-up-timeout", type=float, default=1800,
                    help="seconds the worker may take to catch up at the end (%(default)s)")
    ap.add_argument("--http-timelines", type=int, default=200,
                    help="customers whose timelines are also compared over HTTP (%(default)s)")
    args = ap.parse_args(argv)

    work = args.dir or Path(tempfile.mkdtemp(prefix="chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    events = make_events(args.events, args.customers, args.seed)
    pub = Published({e["event_id"]: e for e in events})
    plan = plan_kills(args.kills, args.mix, args.events, rng)
    customers = len({e["customer"]["id"] for e in events})
    print(f"chaos run: {args.events} events, {customers} customers, batches of"
          f" {args.batch}, at most {args.rate:g} events/s, {args.kills} kills"
          f" ({', '.join(f'{k} {n}' for k, n in Counter(k for k, _ in plan).items())}),"
          f" seed {args.seed}")
    print(f"work dir: {work}", flush=True)
    load = LoadSampler()
    load.start()
    t0 = time.monotonic()
    up = Up(work / "data")
    first_ready = up.start(args.recovery_timeout)
    publisher = Publisher(up, events, args.batch, pub, args.rate)
    killer = Killer(up, plan, publisher, rng, args.recovery_timeout)
    publisher.start()
    killer.start()
    publisher.join()
    killer.join()
    if killer.fatal or publisher.fatal:
        print(f"run aborted: {killer.fatal or publisher.fatal}; see {up.log_path}")
        up.stop()
        return 2
    caught_up = wait_caught_up(up.database_url, args.catch_up_timeout)
    t_checks = time.monotonic()
    findings = Findings()
    with psycopg.connect(up.database_url()) as conn:
        check_database(conn, pub, findings)
    check_http(up, pub, findings, args.http_timelines)
    checks_s = time.monotonic() - t_checks
    code = up.stop()
    load.stop()
    print_report(args, pub, publisher, killer, findings, load, {
        "first_ready_s": first_ready, "publish_s": publisher.seconds,
        "catch_up_s": caught_up, "checks_s": checks_s, "wall_s": time.monotonic() - t0,
        "up_exit": code}, log_summary(up.log_path))
    if findings.ok and args.dir is None:
        shutil.rmtree(work, ignore_errors=True)
    elif not findings.ok:
        (work / "findings.json").write_text(json.dumps(
            {n: items for n, (_, items) in findings.violations.items() if items}, indent=1))
        print(f"kept for inspection: {work}; every violation in {work / 'findings.json'}")
    return 0 if findings.ok else 1


if __name__ == "__main__":
    sys.exit(main())
