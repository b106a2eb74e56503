"""Restart times of `contactstream up` (issue 10): on a data dir holding N events, the time
from kill -9 of the worker to /readyz 200 (a new worker holds the partitions), and from
kill -9 of the whole `up` (its process group) to a newly started `up`'s /readyz 200,
each measured K times; the broker and the database on request.

Prints median, p90 and max of each. Exit 0; 1 when an acknowledged event is lost or
doubled afterwards; 2 when something did not come back.

Run: python benchmarks/restart.py [--events 20000] [--times 10] [--kinds worker,up]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from chaos import make_events
from chaos_checks import Findings, Published, check_database, wait_caught_up
from chaos_report import DOUBLED, LoadSampler, spread
from upproc import KINDS, Up, kill_and_recover


def fill(up: Up, events: list[dict], batch: int = 500) -> Published:
    pub = Published({e["event_id"]: e for e in events})
    with up.client("publisher") as client:
        for i in range(0, len(events), batch):
            part = events[i:i + batch]
            resp = client.post("/v1/events", json=part)
            if resp.status_code != 202:
                raise RuntimeError(f"publishing: {resp.status_code} {resp.text[:200]}")
            pub.acked.update(e["event_id"] for e in part)
    return pub


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=20_000,
                    help="events in the data dir (%(default)s)")
    ap.add_argument("--customers", type=int, default=2_000, help="(%(default)s)")
    ap.add_argument("--times", type=int, default=10, help="kills of each kind (%(default)s)")
    ap.add_argument("--kinds", default="worker,up",
                    help=f"what to kill, of {', '.join(KINDS)} (%(default)s)")
    ap.add_argument("--pause", type=float, default=65,
                    help="seconds between a ready system and the next kill; over 60 s every"
                    " worker kill is a first crash for up's restart backoff (%(default)s)")
    ap.add_argument("--seed", type=int, default=1, help="(%(default)s)")
    ap.add_argument("--dir", type=Path, help="work dir (data dir and up.log); default: a new"
                    " one under /tmp, removed afterwards")
    ap.add_argument("--timeout", type=float, default=120,
                    help="seconds a kill's victim may take to be ready again (%(default)s)")
    args = ap.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    if set(kinds) - set(KINDS):
        ap.error(f"--kinds: of {', '.join(KINDS)}")

    work = args.dir or Path(tempfile.mkdtemp(prefix="restart-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"restart times: {args.events} events, {args.times} kills each of"
          f" {', '.join(kinds)}, {args.pause:g} s apart; work dir {work}", flush=True)
    load = LoadSampler()
    load.start()
    up = Up(work / "data")
    first = up.start(args.timeout)
    t0 = time.monotonic()
    pub = fill(up, make_events(args.events, args.customers, args.seed))
    published = time.monotonic()
    caught = wait_caught_up(up.database_url, 1800, quiet_s=2)
    print(f"first start ready after {first:.1f} s; {len(pub.acked)} events published in"
          f" {published - t0:.1f} s, all projected "
          + (f"{caught:.1f} s after" if caught is not None else "NOT within 30 min"),
          flush=True)

    took: dict[str, list[float]] = {k: [] for k in kinds}
    failed = 0
    for kind in kinds:
        for i in range(args.times):
            time.sleep(args.pause)
            secs = kill_and_recover(up, kind, args.timeout)
            print(f"  {kind:8s} {i + 1:2d}/{args.times}: "
                  + ("NOT ready in time" if secs is None else f"ready after {secs:.2f} s"),
                  flush=True)
            if secs is None:
                failed += 1
                if not up.ready():
                    break
            else:
                took[kind].append(secs)

    wait_caught_up(up.database_url, 600, quiet_s=2)
    findings = Findings()
    with psycopg.connect(up.database_url()) as conn:
        check_database(conn, pub, findings)
    code = up.stop()
    load.stop()
    print()
    print("=== restart times: time from kill -9 to /readyz 200 ===")
    for kind in kinds:
        print(f"  {kind:8s} {spread(took[kind])}   all: "
              + " ".join(f"{t:.2f}" for t in took[kind]))
    lost, doubled = findings.count("lost"), findings.count(*DOUBLED)
    print(f"afterwards: lost {lost}, doubled {doubled}, other findings "
          f"{findings.count(*findings.violations) - lost - doubled};"
          f" up's exit code at the clean stop: {code}")
    print(f"load: {load.summary()}")
    if findings.ok and not failed and args.dir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 2 if failed else 0 if findings.ok else 1


if __name__ == "__main__":
    sys.exit(main())
