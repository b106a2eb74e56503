"""`contactstream bench` prints what issue 12 asks of it: the ratio, CPU per event by
process, the footprint and freshness, and medians over several runs. Its figures are
measurements: only their shape and arithmetic are checked here, never a speed."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from contactstream.adapters.bench import _medians

pytestmark = pytest.mark.e2e


def bench_json(*args: str) -> Any:
    """``contactstream bench ARGS --json`` in a process of its own: the object it prints,
    alone on standard output (logs, the load process's too, go to standard error)."""
    out = subprocess.run(
        [sys.executable, "-m", "contactstream.adapters.cli", "bench", *args, "--json"],
        capture_output=True, text=True, timeout=600, check=True)
    return json.loads(out.stdout)


def test_bench_json_has_the_ratio_cpu_footprint_and_freshness_of_each_run() -> None:
    result = bench_json("--events", "400", "--samples", "5", "--runs", "2")
    assert result["median_of"] == 2 and len(result["runs"]) == 2
    for run in result["runs"]:
        assert run["events"] == 400
        assert run["ratio"] == pytest.approx(
            run["pipeline_events_per_s"] / run["baseline_events_per_s"], abs=1e-3)
        cpu = run["cpu_us_per_event"]
        # the embedded database and broker are measured apart from the worker
        parts = [cpu["worker"], cpu["database"], cpu["broker"]]
        assert all(v is not None and v >= 0 for v in parts)
        assert cpu["pipeline"] == pytest.approx(sum(parts), abs=0.2)
        # the scores process is the worker's, shown apart but counted once
        assert 0 <= cpu["worker_scores"] <= cpu["worker"]
        assert cpu["baseline"] == pytest.approx(sum(cpu["baseline_parts"].values()), abs=0.2)
        disk = run["disk_bytes_per_event"]
        assert disk["events"] == 400
        assert disk["database"] > 0  # 400 events take room
        assert disk["total"] == pytest.approx(disk["data_dir"] + disk["database"], abs=1)
        for key in ("freshness_ms", "freshness_under_load_ms"):
            assert 0 < run[key]["p50"] <= run[key]["p99"]
    ratios = sorted(r["ratio"] for r in result["runs"])
    assert result["ratio"] == pytest.approx(sum(ratios) / 2, abs=1e-4)  # median of two


def test_medians_are_taken_figure_by_figure() -> None:
    runs = [{"a": 1, "b": {"c": 10.0, "d": None}, "t": "x"},
            {"a": 3, "b": {"c": 30.0, "d": 2}, "t": "y"},
            {"a": 2, "b": {"c": 20.0, "d": 1}, "t": "z"}]
    assert _medians(runs) == {"a": 2, "b": {"c": 20.0, "d": None}, "t": "x"}


def test_bench_workers_measures_each_count_and_the_failover_of_a_killed_worker() -> None:
    result = bench_json("--workers", "1,2", "--events", "1200", "--kills", "1")
    one, two = result["runs"]
    assert (one["workers"], two["workers"]) == (1, 2)
    for run in (one, two):
        assert run["events"] == 1200
        assert run["events_per_s"] == pytest.approx(1200 / run["seconds"], rel=0.02)
        assert run["events_per_cpu_s"] == pytest.approx(
            1200 / (run["worker_cpu_s"] + run["database_cpu_s"]), rel=0.02)
        # the twelve partitions shared evenly among the live workers
        assert sorted(run["partitions"].values()) == [12 // run["workers"]] * run["workers"]
    assert "failover_s" not in one  # nothing to fail over to
    fail = two["failover_s"]
    assert fail["kills"] == 1 and len(fail["all"]) == 1 and fail["median"] > 0
