"""``up --demo``: publish the synthetic population over HTTP, as a publishing system would,
and work its cases as a desk would, so the backlog does not only grow."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from .demo import AGENTS, DemoPopulation
from .logging import get_logger

log = get_logger(__name__)

# what the demo's agents write as a resolution: no personal data, as a real desk's codes
RESOLUTIONS = ("refunded", "answered", "replaced", "fixed", "explained", "escalated to billing")


async def _post(client: httpx.AsyncClient, batch: list[dict]) -> None:
    for attempt in range(20):
        try:
            resp = await client.post("/v1/events", json=batch)
            if resp.status_code == 202:
                return
            log.warning("demo.post_failed", status=resp.status_code)
        except httpx.HTTPError as exc:
            log.warning("demo.post_failed", error=type(exc).__name__)
        await asyncio.sleep(min(0.2 * 2**attempt, 5))


async def run_demo_feed(url: str, tokens_file: Path, stop: asyncio.Event,
                        customers: int = 400, history_days: int = 120,
                        rate_per_s: float = 20.0, desk_per_s: float = 3.0) -> None:
    tokens = json.loads(tokens_file.read_text())
    population = DemoPopulation(seed=7, customers=customers)
    async with httpx.AsyncClient(base_url=url, timeout=30,
                                 headers={"Authorization": f"Bearer {tokens['publisher']}"}
                                 ) as client:
        history = population.history(days=history_days)
        sent = 0
        while batch := list(itertools.islice(history, 1000)):
            await _post(client, batch)
            sent += len(batch)
        log.info("demo.history_published", events=sent, customers=customers)
        desk = asyncio.create_task(work_cases(url, tokens["agent"], stop, desk_per_s))
        try:
            live = population.live(rate_per_s)
            tick = max(1, int(rate_per_s // 5))
            while not stop.is_set():
                await _post(client, list(itertools.islice(live, tick)))
                await asyncio.sleep(tick / rate_per_s)
        finally:
            desk.cancel()
            await asyncio.gather(desk, return_exceptions=True)


async def work_cases(url: str, token: str, stop: asyncio.Event, per_s: float = 3.0,
                     rng: random.Random | None = None, min_age_s: float = 30.0) -> None:
    """The demo's desk: agents take open cases a little while after they open (not the
    instant they do), reply, and resolve most of them (some wait on the customer), at
    ``per_s`` cases a second: more than the live stream opens, so the backlog shrinks."""
    rng = rng or random.Random(7)
    async with httpx.AsyncClient(base_url=url, timeout=30,
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        while not stop.is_set():
            started = asyncio.get_running_loop().time()
            done = 0
            try:
                for case in await _due_cases(client, min_age_s, int(per_s * 5) or 1):
                    await _work(client, case, rng)
                    done += 1
            except httpx.HTTPError as exc:  # the API restarting: try again next round
                log.debug("demo.desk_failed", error=type(exc).__name__)
            pause = max(1.0, done / per_s) - (asyncio.get_running_loop().time() - started)
            await asyncio.sleep(max(0.05, pause))


async def _due_cases(client: httpx.AsyncClient, min_age_s: float,
                     limit: int) -> list[dict[str, Any]]:
    """The oldest of the newest 200 open cases that have been open ``min_age_s``."""
    resp = await client.get("/v1/cases", params={"status": "open", "limit": 200})
    if resp.status_code != 200:
        return []
    cutoff = datetime.now(UTC) - timedelta(seconds=min_age_s)
    ripe = [c for c in resp.json()["items"]
            if datetime.fromisoformat(c["opened_at"]) <= cutoff]
    return ripe[-limit:][::-1]


async def _work(client: httpx.AsyncClient, case: dict[str, Any], rng: random.Random) -> None:
    """Reply (the first agent to reply takes an unassigned case), then resolve or wait.
    A 409 (another command moved the case meanwhile) is a desk's everyday: skipped."""
    agent = case.get("agent_id") or rng.choice(AGENTS)
    base = f"/v1/cases/{case['id']}"
    resp = await client.post(f"{base}/reply", json={"agent_id": agent})
    if resp.status_code != 200:
        return
    if rng.random() < 0.1:
        await client.post(f"{base}/wait", json={})
    else:
        await client.post(f"{base}/resolve", json={"resolution": rng.choice(RESOLUTIONS)})
