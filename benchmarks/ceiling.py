"""The pipeline's ceiling: `contactstream bench` with parts of the pipeline left out
(issue 12).

`contactstream bench` measures the whole pipeline against the raw baseline. This runs the
same bench (the same synthetic events, 100,000 by default, on a fresh embedded broker and
PostgreSQL each time) with stages taken out of the worker, to show what each part costs
and how fast a pipeline without it could go at most:

- ``full``: the pipeline as shipped;
- ``no_scores``: no rounds of scores (the customers stay queued), and no refresh of the
  figures at the run's end (it would score at the end every customer no round scored);
- ``no_cases``: no case stage (no cases, routes, escalations, timers);
- ``identity_timeline``: neither, nor the customer figures: decode, validation, the
  identity graph, the timeline and its read-model commit with the offsets;
- ``no_store``: as ``identity_timeline`` with the read-model commit left out as well (the
  loop, decode, validation, identity and the timeline fold; nothing is written).

A part is left out by replacing it in this process only (nothing shipped reads these
switches). Freshness is not measured for ``no_store`` (nothing becomes visible).

    python benchmarks/ceiling.py --events 100000 --runs 3

prints, for each configuration, the medians over the runs of events a second (pipeline
and baseline), the ratio and the CPU per event (worker, of it its scores processes,
database, broker; the baseline's). The configurations run in turns, so a noisy minute
falls on all of them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

CONFIGS: dict[str, frozenset[str]] = {
    "full": frozenset(),
    "no_scores": frozenset({"scores"}),
    "no_cases": frozenset({"cases"}),
    "identity_timeline": frozenset({"cases", "scores", "figures"}),
    "no_store": frozenset({"cases", "scores", "figures", "commit"}),
}
LEAVE_OUT = "CONTACTSTREAM_CEILING_LEAVE_OUT"  # read by this file only
CUSTOMERS = "CONTACTSTREAM_CEILING_CUSTOMERS"  # and this one


def _leave_out(parts: frozenset[str], customers: int | None) -> None:
    """Replace the named parts of the worker in this process (and, with ``customers``,
    spread the bench's events over so many customers instead of the bench's 10,000)."""
    from contactstream.adapters import bench, figurestore, readstore
    from contactstream.streams import projector

    if customers:
        synthetic = bench.synthetic_events
        bench.synthetic_events = (  # type: ignore[assignment]
            lambda n, seed=1: synthetic(n, seed=seed, customers=customers))

    if "cases" in parts:
        init = projector.Projector.__init__

        def without_cases(self: Any, *args: Any, **kwargs: Any) -> None:
            kwargs["case_stage"] = None
            init(self, *args, **kwargs)
        projector.Projector.__init__ = without_cases  # type: ignore[method-assign]
    if "scores" in parts:
        readstore.ReadStoreWriter.scores_due = (  # type: ignore[method-assign]
            lambda self, idle=False: False)
        readstore.ReadStoreWriter.score_queued = lambda self: 0  # type: ignore[method-assign]
        # and the refresh at the run's end, which would score at the end every customer
        # no round scored
        readstore.ReadStoreWriter.refresh_figures = (  # type: ignore[method-assign]
            lambda self, now=None: {})
    if "figures" in parts:
        figurestore.FigureWriter.write = (  # type: ignore[method-assign]
            lambda self, conn, entries, touched=(), relinked=(): 0)
    if "commit" in parts:
        readstore.ReadStoreWriter.commit = lambda self, changes: None  # type: ignore[method-assign]

        async def not_measured(*args: Any, **kwargs: Any) -> tuple[list[float], int, list]:
            return [0.0], 0, []
        bench._freshness = not_measured  # type: ignore[assignment]


def _one(config: str, events: int, customers: int | None) -> dict[str, Any]:
    """One `contactstream bench --json` run of a configuration, in a process of its own."""
    env = {**os.environ, LEAVE_OUT: ",".join(sorted(CONFIGS[config])),
           CUSTOMERS: str(customers or "")}
    out = subprocess.run(
        [sys.executable, __file__, "--bench", "--events", str(events), "--runs", "1",
         "--samples", "5", "--json"], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.stderr.write(out.stderr[-4000:])
        raise SystemExit(f"the bench of {config} failed (exit {out.returncode})")
    return dict(json.loads(out.stdout))


def _row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The medians of a configuration's runs (as `contactstream bench --runs` takes them)."""
    from contactstream.adapters.bench import _medians

    m = _medians(runs)
    cpu = m["cpu_us_per_event"]
    return {"pipeline_events_per_s": m["pipeline_events_per_s"],
            "baseline_events_per_s": m["baseline_events_per_s"], "ratio": m["ratio"],
            "ratios": [r["ratio"] for r in runs],
            "cpu_us_per_event": {k: cpu[k] for k in ("pipeline", "worker", "worker_scores",
                                                     "database", "broker", "baseline")}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--customers", type=int, default=None,
                        help="spread the events over so many customers (bench: 10,000)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    configs = [c for c in args.configs.split(",") if c]
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in configs}
    for i in range(args.runs):
        for config in configs:
            runs[config].append(_one(config, args.events, args.customers))
            print(f"run {i + 1}/{args.runs} {config}: ratio {runs[config][-1]['ratio']}",
                  file=sys.stderr)
    rows = {c: _row(r) for c, r in runs.items()}
    if args.json:
        print(json.dumps({"events": args.events, "customers": args.customers or 10_000,
                          "median_of": args.runs, "configs": rows}))
        return 0
    print(f"{args.events} events of {args.customers or 10_000:,} customers,"
          f" medians of {args.runs} runs")
    print(f"{'':<20}{'pipeline':>10}{'baseline':>10}{'ratio':>8}   CPU µs an event: "
          "all (worker, of it its scores, database, broker); baseline")
    for c, row in rows.items():
        cpu = {k: "-" if v is None else f"{v:.0f}" for k, v in row["cpu_us_per_event"].items()}
        print(f"{c:<20}{row['pipeline_events_per_s']:>10,.0f}"
              f"{row['baseline_events_per_s']:>10,.0f}{row['ratio']:>8.3f}   "
              f"{cpu['pipeline']} ({cpu['worker']}, {cpu['worker_scores']}, "
              f"{cpu['database']}, {cpu['broker']}); {cpu['baseline']}")
    return 0


if __name__ == "__main__":
    if "--bench" in sys.argv:  # one run, the parts named in the environment left out
        _leave_out(frozenset(p for p in os.environ.get(LEAVE_OUT, "").split(",") if p),
                   int(os.environ.get(CUSTOMERS) or 0) or None)
        from contactstream.adapters.cli import main as cli_main
        sys.exit(cli_main(["bench", *[a for a in sys.argv[1:] if a != "--bench"]]))
    sys.exit(main())
