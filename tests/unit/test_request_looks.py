"""The projector asks for admins' waiting requests between a fetch and its batch; while
batches keep coming it asks at most every LOOK_EVERY_S (streams/requests.py), when idle
at every step."""

from __future__ import annotations

import asyncio
from typing import Any

from contactstream.streams.requests import LOOK_EVERY_S, RequestWork


class Waiting:
    """No request waits; counts how often it was asked."""

    def __init__(self) -> None:
        self.asked = 0

    def pending_erasures(self) -> list[dict[str, Any]]:
        self.asked += 1
        return []

    def pending_unmerges(self) -> list[dict[str, Any]]:
        self.asked += 1
        return []


async def call(fn: Any, *args: Any) -> Any:
    return fn(*args)


async def flush() -> None:
    raise AssertionError("nothing waits: no batch in flight is landed for it")


def test_requests_are_looked_for_at_most_every_interval() -> None:
    now = [100.0]
    waiting = Waiting()
    work = RequestWork(waiting, None, None, None, clock=lambda: now[0])  # type: ignore[arg-type]

    def asked_at(t: float, force: bool = False) -> int:
        now[0] = t
        before = waiting.asked
        asyncio.run(work.run(call, flush, force=force))
        return waiting.asked - before

    assert asked_at(100.0) == 2  # the first time: erasures and unmerges
    assert asked_at(100.0 + LOOK_EVERY_S / 2) == 0
    assert asked_at(100.0 + LOOK_EVERY_S) == 2
    assert asked_at(100.0 + LOOK_EVERY_S * 1.5) == 0
    assert asked_at(100.0 + LOOK_EVERY_S * 5) == 2
    # an idle step (no batch waits) looks whenever it comes
    assert asked_at(100.0 + LOOK_EVERY_S * 5.1, force=True) == 2
    assert asked_at(100.0 + LOOK_EVERY_S * 5.2, force=True) == 2
