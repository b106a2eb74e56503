"""The bench's late samples (adapters/bench.py): none late, nothing asked of the
database; with several runs, every run's late samples together; the text says where each is.
And its CPU meter: the worker's children counted in the worker and apart."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import psutil

from contactstream.adapters.bench import (
    LATE_WATCH_S,
    CpuMeter,
    Processes,
    _medians,
    _where_late,
    _where_text,
)


def test_no_late_sample_asks_the_database_nothing() -> None:
    assert asyncio.run(_where_late(None, {})) == []  # None: any query would raise


def test_late_samples_of_several_runs_are_kept_together_other_lists_as_the_first() -> None:
    runs = [{"late": 0, "late_samples": [], "l": [1]},
            {"late": 1, "late_samples": [{"journaled": True}], "l": [2]},
            {"late": 1, "late_samples": [{"journaled": False}], "l": [3]}]
    assert _medians(runs) == {"late": 1, "late_samples": [{"journaled": True},
                                                          {"journaled": False}],
                              "l": [1]}


def test_the_text_output_says_where_each_late_sample_is() -> None:
    assert _where_text({"journaled": True, "partition": 2, "offset": 17,
                        "visible_after_ms": 31234.5}) == (
        "journaled at partition 2 offset 17, visible after 31,234 ms")
    assert _where_text({"journaled": False, "partition": None, "offset": None,
                        "visible_after_ms": None}) == (
        f"not in the ingest journal, not visible {LATE_WATCH_S} s later")


def test_the_worker_s_children_count_in_its_cpu_and_apart() -> None:
    """The scores processes are the worker's: their CPU is in ``worker`` and given apart
    (``worker_scores``), not lost and not counted twice."""
    busy = ("import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3:\n"
            "    pass\ntime.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", busy])
    try:
        meter = CpuMeter(Processes(), children=lambda: [child.pid])
        meter.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # until its busy part is over
            t = psutil.Process(child.pid).cpu_times()
            if t.user + t.system >= 0.3:
                break
            time.sleep(0.05)
        spent = meter.stop()
    finally:
        child.kill()
        child.wait()
    assert meter.children_spent >= 0.25
    assert spent["worker"] is not None and spent["worker"] >= meter.children_spent
    assert spent["database"] is None and spent["broker"] is None  # not measured
