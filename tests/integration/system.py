"""The API and the projector in one process, on the real broker: for integration tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx

from contactstream.adapters import bootstrap, kafka
from contactstream.adapters.api.app import create_app
from contactstream.adapters.auth import write_tokens
from contactstream.adapters.config import Settings


class System:
    """The API and the projector in this process, on the real broker."""

    def __init__(self, settings: Settings, kafka_up: Callable[[], bool] | None = None) -> None:
        self.settings = settings
        self.kafka_up = kafka_up  # what `up` knows of the broker (adapters/runner.py)

    async def __aenter__(self) -> System:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        self.tokens = write_tokens(s.tokens_file)
        await kafka.ensure_topics(s, kafka.all_topics(s))
        self.api = await bootstrap.api_services(s)
        self.worker = await bootstrap.worker_services(s)
        self.app = create_app(self.api.ingestor, self.api.store, self.api.tokens,
                              kafka_up=self.kafka_up)
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app),
                                        base_url="http://test")
        self.task = asyncio.create_task(self.worker.projector.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.client.aclose()
        await self.api.close()
        await self.worker.close()

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    async def post(self, body: Any, role: str = "publisher") -> httpx.Response:
        return await self.client.post("/v1/events", json=body, headers=self.auth(role))

    async def get(self, path: str, role: str = "agent", **params: Any) -> httpx.Response:
        return await self.client.get(path, params=params, headers=self.auth(role))

    async def wait_events(self, n: int, timeout: float = 20) -> None:
        """Until ``n`` events are on the timeline and the scores they moved are stored (the
        scores are off the batch path: a round follows within about a second)."""
        for _ in range(int(timeout / 0.05)):
            if self.api.store.count_events() >= n and not self.scores_pending():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"only {self.api.store.count_events()} of {n} events projected"
                             f" ({self.scores_pending()} ids waiting for their scores)")

    def scores_pending(self) -> int:
        return int(self.api.store.db.scalar("SELECT COUNT(*) FROM score_queue"))
