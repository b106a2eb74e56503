"""PostgreSQL LISTEN/NOTIFY: a process learns at once that another one (any worker, on
any host) added to the alert log, instead of asking the table every 100 ms (issue 9).

The writer's transaction runs ``NOTIFY`` (``notify``); PostgreSQL delivers it when that
transaction commits, so a woken reader finds the row. ``Listener`` listens on its own
connection in a thread and wakes every asyncio waiter; waiters take the wake-up *before*
they read the table (``wakeup``), so none is lost between their read and their wait, and
they still look every ``fallback_s`` in case the connection was down.
"""

from __future__ import annotations

import asyncio
import threading
from contextlib import suppress
from typing import Any

import psycopg

from .logging import get_logger

log = get_logger(__name__)

ALERTS_CHANNEL = "contactstream_alerts"


def notify(conn: psycopg.Connection[Any], channel: str = ALERTS_CHANNEL) -> None:
    """In the writer's transaction: delivered to every listener when it commits."""
    conn.execute(f"NOTIFY {channel}")


class Listener:
    def __init__(self, url: str, channel: str = ALERTS_CHANNEL) -> None:
        self.url = url
        self.channel = channel
        self._loop: asyncio.AbstractEventLoop | None = None
        self._future: asyncio.Future[None] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.received = 0

    def start(self) -> Listener:
        self._loop = asyncio.get_running_loop()
        self._future = self._loop.create_future()
        self._thread = threading.Thread(target=self._run, name="listen", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(3)

    def wakeup(self) -> asyncio.Future[None]:
        """The next wake-up: take it before reading, await it after (``wait``)."""
        assert self._future is not None, "start() first"
        return self._future

    async def wait(self, wakeup: asyncio.Future[None], timeout: float) -> None:
        with suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(wakeup), timeout)

    def _wake(self) -> None:  # on the loop
        assert self._loop is not None
        done, self._future = self._future, self._loop.create_future()
        if done is not None and not done.done():
            done.set_result(None)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {self.channel}")
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=0.5, stop_after=64):
                            self.received += 1
                        if self.received:
                            self.received = 0
                            self._tell()
            except psycopg.Error as exc:
                if self._stop.is_set():
                    return
                log.warning("listen.failed", channel=self.channel, error=type(exc).__name__)
                self._tell()  # readers look for themselves meanwhile
                self._stop.wait(1.0)

    def _tell(self) -> None:
        try:
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # the loop is closed: its process is ending
            self._stop.set()
