"""Unmerges and erasures an admin asked for through the API, carried out by the worker
between two batches (so no commit in flight can write a forgotten person back)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from .identity import IdentityKeeper
from .ports import BatchChanges, IdentityRequests, ProjectionStore

log = structlog.get_logger(__name__)

# runs a store call on the projector's one writer thread, after the commit in flight (or,
# for ``look``, on its compute thread, beside it)
StoreCall = Callable[..., Awaitable[Any]]
# (customer id, base ids, key ids) -> the erasure done (adapters/erasure.py ``purge``)
Purge = Callable[[str, list[str], list[str]], Any]

# How often the waiting requests are looked for between a fetch and its batch, at most:
# each look is two queries on the compute thread that the batch waits for (~0.5-1 ms of a
# small batch's time under a steady load, a batch every 10-50 ms). An admin's request
# waits this much longer at most; an idle projector looks at every step (``force``).
LOOK_EVERY_S = 0.1


class RequestWork:
    def __init__(self, requests: IdentityRequests, identity: IdentityKeeper,
                 store: ProjectionStore, purge: Purge,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.requests = requests
        self.identity = identity
        self.store = store
        self.purge = purge
        self.clock = clock
        self._next_look = float("-inf")

    async def run(self, call: StoreCall, flush: Callable[[], Awaitable[None]],
                  look: StoreCall | None = None, *, force: bool = False) -> None:
        """Carry out every waiting request; ``flush`` first lands the batch in flight.
        ``look`` asks whether any wait: on another thread than ``call``'s, it does not
        wait for the commit in flight (which the next batch's work would otherwise wait
        for after every fetch). It asks at most every ``LOOK_EVERY_S``, unless ``force``
        (an idle projector's step: no batch waits, and a run to the end looks at its end)."""
        now = self.clock()
        if now < self._next_look and not force:
            return
        self._next_look = now + LOOK_EVERY_S
        look = look or call
        for cmd in await look(self.requests.pending_erasures):
            await flush()
            await self._erase(call, cmd)
        for cmd in await look(self.requests.pending_unmerges):
            await flush()
            await self._unmerge(call, cmd)

    async def _unmerge(self, call: StoreCall, cmd: dict[str, Any]) -> None:
        # against the graph with every other worker's merges in it (issue 9)
        await call(self.store.catch_up_identity)
        try:
            done = await call(self.identity.unmerge, cmd["survivor"], cmd["member"],
                              f"unmerge:{cmd['seq']}")
        except (KeyError, ValueError) as exc:
            if not self.identity.separated(cmd["survivor"], cmd["member"]):
                log.info("identity.unmerge_refused", seq=cmd["seq"], error=str(exc)[:80])
                await call(self.requests.finish_unmerge, cmd["seq"], str(exc)[:200])
                return
            done = None  # carried out before a crash: only the history is missing
        if done is not None:
            await call(self.store.commit, BatchChanges(identity=done))
        await call(self.identity.record_unmerge, cmd["member"], cmd["by"],
                   f"{cmd['reason']} (request {cmd['seq']})")
        await call(self.requests.finish_unmerge, cmd["seq"], "")
        log.info("identity.unmerged", seq=cmd["seq"])

    async def _erase(self, call: StoreCall, cmd: dict[str, Any]) -> None:
        """The read-store side of an erasure the API asked for (adapters/erasure.py)."""
        payload = cmd["payload"] or {}
        try:
            done = await call(self.purge, cmd["customer_id"],
                              payload.get("bases") or [cmd["customer_id"]],
                              payload.get("key_ids") or [])
            await call(self.identity.load, self.store)
        except Exception as exc:  # noqa: BLE001 - reported to the API, retried on restart
            log.error("erasure.failed", seq=cmd["seq"], error=type(exc).__name__)
            raise
        await call(self.requests.finish_erasure, cmd["seq"], {
            "keys_destroyed": done.keys_destroyed, "timeline_rows": done.timeline_rows,
            "pseudonyms": done.pseudonyms})
