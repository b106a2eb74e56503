"""The worker's metrics and its throughput line (streams/telemetry.py)."""

from __future__ import annotations

import asyncio
import logging
from collections import namedtuple
from collections.abc import Iterator
from contextlib import contextmanager

import structlog
from structlog.testing import capture_logs

from contactstream.streams import telemetry
from contactstream.streams.telemetry import WORKER, log_throughput, note_batch

TP = namedtuple("TP", "topic partition")
Record = namedtuple("Record", "offset")


def sample(name: str, **labels: str) -> float:
    return WORKER.get_sample_value(name, labels) or 0.0


def test_a_batch_counts_its_records_and_sets_the_lag_per_topic() -> None:
    before = sample("contactstream_projector_records_total", topic="t-lag")
    lags: dict[object, int] = {}
    ends = {TP("t-lag", 0): 100, TP("t-lag", 1): 40}
    note_batch({TP("t-lag", 0): [Record(10), Record(11)], TP("t-lag", 1): [Record(39)]},
               events=3, dead=0, highwater=ends.get, lags=lags)
    assert sample("contactstream_projector_records_total", topic="t-lag") - before == 3
    # partition 0: offsets 12..99 still to read; partition 1: at its end
    assert sample("contactstream_projector_lag_records", topic="t-lag") == 88
    note_batch({TP("t-lag", 0): [Record(99)]}, events=1, dead=0, highwater=ends.get,
               lags=lags)
    assert sample("contactstream_projector_lag_records", topic="t-lag") == 0


@contextmanager
def at_info() -> Iterator[None]:
    """The tests' logging is configured for warnings (tests/conftest.py): INFO for a while."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
                        cache_logger_on_first_use=False)
    try:
        yield
    finally:
        structlog.configure(**saved)


def test_the_throughput_line_says_what_moved_and_nothing_while_idle() -> None:
    async def run(moves: int) -> list[dict[str, object]]:
        stop = asyncio.Event()
        with at_info(), capture_logs() as logs:
            task = asyncio.create_task(log_throughput(stop, every_s=0.05))
            await asyncio.sleep(0.01)
            telemetry.EVENTS.inc(moves)
            await asyncio.sleep(0.08)
            stop.set()
            await task
        return [entry for entry in logs if entry["event"] == "worker.throughput"]

    lines = asyncio.run(run(7))
    assert len(lines) == 1 and lines[0]["events"] == 7 and lines[0]["log_level"] == "info"
    assert "lag" in lines[0] and "timers_armed" in lines[0]
    assert asyncio.run(run(0)) == []
