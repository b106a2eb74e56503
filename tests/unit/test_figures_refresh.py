"""The worker's periodic refresh of the figures that move with the clock: at start, then
every FIGURES_EVERY_S of the (injectable) clock, until told to stop."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from contactstream.streams.app import FIGURES_EVERY_S, refresh_figures_every
from contactstream.streams.sla import ManualClock

START = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


async def test_the_refresh_runs_at_start_and_then_every_interval_of_the_clock() -> None:
    clock, stop, calls = ManualClock(START), asyncio.Event(), []

    def refresh(now_ms: int) -> dict[str, int]:
        calls.append(now_ms)
        return {"stale": 0}

    task = asyncio.create_task(refresh_figures_every(refresh, clock, stop))
    for _ in range(50):
        await asyncio.sleep(0.01)
        if calls:
            break
    assert calls == [int(START.timestamp() * 1000)]
    await clock.advance(FIGURES_EVERY_S - 1)
    await asyncio.sleep(0.05)
    assert len(calls) == 1  # not before the interval has passed
    await clock.advance(1)
    for _ in range(50):
        await asyncio.sleep(0.01)
        if len(calls) == 2:
            break
    assert calls[1] - calls[0] == FIGURES_EVERY_S * 1000
    stop.set()
    await asyncio.wait_for(task, 2)
