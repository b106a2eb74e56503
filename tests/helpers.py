"""Helpers shared by the integration and end-to-end tests."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def eventually(check: Callable[[], T], timeout: float = 20.0, every: float = 0.05) -> T:
    """Poll until ``check`` returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")


class Background(threading.Thread):
    """A thread whose failure fails the test. An assert (or any error) in a plain thread
    only prints a warning and ends the thread, and the test goes on as if nothing
    happened; here what ``target`` raises is kept, and ``check`` and ``join`` raise it
    again in the test."""

    def __init__(self, target: Callable[..., object], *args: Any, daemon: bool = False) -> None:
        super().__init__(target=target, args=args, name=getattr(target, "__name__", None),
                         daemon=daemon)
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            super().run()
        except BaseException as exc:  # kept for the test, which raises it again
            self.failure = exc

    def check(self) -> None:
        """Raise what the thread raised, if it failed (it may still be running)."""
        if self.failure is not None:
            raise AssertionError(f"thread {self.name} failed: {self.failure!r}") \
                from self.failure

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to end, then raise what it raised; a thread still running
        after ``timeout`` is a failure too."""
        super().join(timeout)
        self.check()
        if self.is_alive():
            raise AssertionError(f"thread {self.name} still running after {timeout} s")


def envelope(i: int = 0, **over: object) -> dict:
    base = {
        "event_id": f"ev-{i}-{uuid.uuid4().hex[:8]}",
        "type": "complaint.filed",
        "occurred_at": f"2026-11-22T09:{i % 60:02d}:00+01:00",
        "source": "webform",
        "customer": {"id": "c-1001", "email": "Anna@Example.com ", "phone": "+36301234567",
                     "visitor_id": "v-77", "name": "Anna Kovács"},
        "channel": "web",
        "agent_id": None,
        "queue": "billing",
        "case_id": None,
        "payload": {"category": "billing", "priority": "high", "description": "Charged twice"},
    }
    base.update(over)  # type: ignore[arg-type]
    return base


def dump_tables(url: str, tables: tuple[str, ...]) -> dict[str, list[str]]:
    """Every row of each table as its JSON text, sorted: comparable across runs."""
    import psycopg

    with psycopg.connect(url) as conn:
        return {t: sorted(r[0] for r in conn.execute(
            f"SELECT row_to_json(x)::text FROM {t} x")) for t in tables}  # type: ignore[call-overload]


def all_rows(url: str) -> list[str]:
    """Every row of every table of the database, as text (bytes decoded leniently)."""
    import psycopg

    rows = []
    with psycopg.connect(url) as conn:
        tables = [t for (t,) in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):  # type: ignore[call-overload]
                rows.append(f"{table}:" + repr([
                    bytes(v).decode("utf-8", "replace") if isinstance(v, bytes | memoryview)
                    else v for v in row]))
    return rows
