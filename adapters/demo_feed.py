"""``up --demo``: publish the synthetic population over HTTP, as a publishing system would."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path

import httpx

from .demo import DemoPopulation
from .logging import get_logger

log = get_logger(__name__)


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
                        rate_per_s: float = 20.0) -> None:
    token = json.loads(tokens_file.read_text())["publisher"]
    population = DemoPopulation(seed=7, customers=customers)
    async with httpx.AsyncClient(base_url=url, timeout=30,
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        history = population.history(days=history_days)
        sent = 0
        while batch := list(itertools.islice(history, 1000)):
            await _post(client, batch)
            sent += len(batch)
        log.info("demo.history_published", events=sent, customers=customers)
        live = population.live(rate_per_s)
        tick = max(1, int(rate_per_s // 5))
        while not stop.is_set():
            await _post(client, list(itertools.islice(live, tick)))
            await asyncio.sleep(tick / rate_per_s)
