"""Printing the benchmarks' figures: spreads, the machine's load meanwhile, and what
`up`'s log says about the run."""

from __future__ import annotations

import json
import math
import threading
from collections import Counter
from pathlib import Path
from typing import Any

# findings that mean an event or an effect appeared more than once
DOUBLED = ("doubled_timeline", "case_event_doubled", "interaction_in_two_cases",
           "alert_id_doubled", "cases_v1_doubled", "alerts_v1_doubled")


def spread(values: list[float]) -> str:
    """n, median, p90 (nearest rank) and max of ``values`` in seconds."""
    if not values:
        return "n=0"
    v = sorted(values)
    median = (v[(len(v) - 1) // 2] + v[len(v) // 2]) / 2
    p90 = v[math.ceil(0.9 * len(v)) - 1]
    return f"n={len(v)} median {median:.2f} s, p90 {p90:.2f} s, max {v[-1]:.2f} s"


class LoadSampler(threading.Thread):
    """The 1-minute load average every 5 s: the machine is shared."""

    def __init__(self) -> None:
        super().__init__(name="load", daemon=True)
        self.samples: list[float] = []
        self.first = self.last = Path("/proc/loadavg").read_text().strip()
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.wait(5):
            self.samples.append(float(Path("/proc/loadavg").read_text().split()[0]))

    def stop(self) -> None:
        self._stop.set()
        self.last = Path("/proc/loadavg").read_text().strip()

    def summary(self) -> str:
        s = self.samples or [0.0]
        return (f"before [{self.first}], after [{self.last}]; 1-min load during the run"
                f" min {min(s):.2f} mean {sum(s) / len(s):.2f} max {max(s):.2f} (2 cores)")


def log_summary(path: Path) -> dict[str, Any]:
    """Warnings and errors of `up`'s JSON log by event, and lines that are not JSON."""
    levels: Counter[str] = Counter()
    other: list[str] = []
    traceback = 0
    for line in path.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            if line.strip():
                other.append(line[:160])
            traceback += "Traceback" in line
            continue
        if not isinstance(rec, dict) or "chaos" in rec:
            continue
        if rec.get("level") in ("warning", "error", "critical", "exception"):
            levels[f"{rec['level']} {rec.get('event', '?')}"] += 1
        traceback += "Traceback" in json.dumps(rec.get("exception", ""))
    return {"path": path, "by_event": levels, "other": other, "tracebacks": traceback}


def print_log(summary: dict[str, Any]) -> None:
    print(f"up log ({summary['path']}): warnings and errors by event:")
    for name, n in sorted(summary["by_event"].items(), key=lambda kv: -kv[1]):
        print(f"  {n:6d}  {name}")
    print(f"  tracebacks: {summary['tracebacks']}; lines not JSON: {len(summary['other'])}")
    for line in Counter(summary["other"]).most_common(8):
        print(f"    {line[1]:5d}x {line[0]}")


def explain_lost(size: int, pub: Any, publisher: Any, killer: Any, lost: list[str]) -> None:
    """The batches the lost events came in, and the kills while each was on its way."""
    order = {e: i for i, e in enumerate(pub.events)}
    batches = Counter(order[e] // size for e in lost)
    t0 = publisher.started
    print("lost events by batch (times from the start of the publishing):")
    for b, n in sorted(batches.items()):
        sent, acked, tries = publisher.log[b]
        during = [f"{kind} at {at - t0:.1f} s" for kind, _, _, at in killer.done
                  if sent - 5 <= at <= acked]
        print(f"  batch {b} (events {b * size}..{b * size + size - 1}): {n} lost; first sent"
              f" {sent - t0:.1f} s, acknowledged {acked - t0:.1f} s after {tries} tries;"
              f" kills from 5 s before it was sent to its 202: {', '.join(during) or 'none'}")


def print_report(args: Any, pub: Any, publisher: Any, killer: Any, findings: Any,
                 load: LoadSampler, times: dict[str, Any], logs: dict[str, Any]) -> None:
    v = findings.violations
    kinds = Counter(k for k, *_ in killer.done)
    print()
    print("=== chaos run: results ===")
    print(f"events published: {len(pub.events)}; acknowledged: {len(pub.acked)} (accepted"
          f" {publisher.accepted}, duplicates {publisher.duplicates}, rejected"
          f" {publisher.rejected}, counts not matching the batch {publisher.miscounted})")
    print(f"retries by cause: {dict(publisher.retries) or 'none'}")
    print(f"kills: {len(killer.done)} ({', '.join(f'{k} {n}' for k, n in kinds.items())})")
    print(f"lost: {v['lost'][0]}")
    doubled = findings.count(*DOUBLED)
    print(f"doubled: {doubled} ({', '.join(f'{n} {v[n][0]}' for n in DOUBLED)})")
    print("other checks (0 = as expected):")
    for name, (n, examples) in v.items():
        if name in DOUBLED or name == "lost":
            continue
        print(f"  {name}: {n}" + (f"  e.g. {examples[:3]}" if n else ""))
    for name, (n, examples) in v.items():
        if n:
            print(f"  !! {name}: {n}: {examples[:10]}")
    if v["lost"][0]:
        explain_lost(args.batch, pub, publisher, killer, v["lost"][1])
    print(f"figures: {findings.figures}")
    catch = times["catch_up_s"]
    print(f"wall time: {times['wall_s']:.1f} s (first start {times['first_ready_s']:.1f} s,"
          f" publishing {times['publish_s']:.1f} s, caught up "
          + (f"{catch:.1f} s after" if catch is not None else "NOT within the timeout of")
          + f" the publishing and the kills, checks {times['checks_s']:.1f} s);"
          f" up's exit code at the clean stop: {times['up_exit']}")
    print("time from kill -9 to /readyz 200 (a new instance of what was killed):")
    for kind in sorted(kinds):
        took = [t for k, _, t, _ in killer.done if k == kind and t is not None]
        failed = sum(1 for k, _, t, _ in killer.done if k == kind and t is None)
        print(f"  {kind:8s} {spread(took)}" + (f"; {failed} NOT ready in time" if failed else ""))
    print(f"load: {load.summary()}")
    print_log(logs)
