"""Nothing acknowledged is lost: kill -9 the whole process tree, start again, and every
accepted event is in the timelines exactly once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.system import Up
from tests.helpers import Background, envelope, eventually

pytestmark = pytest.mark.e2e

CUSTOMERS = [f"c-{i:02d}" for i in range(8)]


def _batch(start: int, n: int) -> list[dict]:
    return [envelope(i, customer={"id": CUSTOMERS[i % len(CUSTOMERS)], "name": "Nagy Éva"},
                     event_id=f"dur-{i}") for i in range(start, start + n)]


def _timeline_ids(up: Up, customer: str) -> list[str]:
    ids, cursor = [], None
    while True:
        params = {"limit": 500, **({"before": cursor} if cursor else {})}
        page = up.get(f"/v1/customers/{customer}/timeline", **params).json()
        ids += [i["event_id"] for i in page.get("items", []) if i["event_id"].startswith("dur-")]
        cursor = page.get("next")
        if not cursor:
            return ids


def _all_ids(up: Up) -> list[str]:
    return [eid for c in CUSTOMERS for eid in _timeline_ids(up, c)]


def _publish_until_killed(up: Up, accepted: set[str], stop: threading.Event) -> None:
    """Keep posting batches; remember only what a 202 acknowledged."""
    i = 10_000
    with httpx.Client(base_url=up.url, timeout=10,
                      headers={"Authorization": f"Bearer {up.tokens['publisher']}"}) as c:
        while not stop.is_set():
            batch = _batch(i, 100)
            i += 100
            try:
                resp = c.post("/v1/events", json=batch)
            except httpx.HTTPError:
                return
            if resp.status_code == 202:
                assert resp.json()["accepted"] == 100, resp.json()
                accepted.update(e["event_id"] for e in batch)


def test_kill_9_loses_nothing_acknowledged(tmp_path: Path) -> None:
    data = tmp_path / "data"
    up = Up(data).start()
    accepted: set[str] = set()
    stop = threading.Event()
    writer = Background(_publish_until_killed, up, accepted, stop)
    try:
        with up.client("publisher") as pub:
            for start in range(0, 2000, 500):
                resp = pub.post("/v1/events", json=_batch(start, 500))
                assert resp.status_code == 202
                accepted.update(e["event_id"] for e in _batch(start, 500))
        # part of it projected, the rest still in flight: then a publisher is cut off
        # mid-stream
        writer.start()

        def flowing() -> bool:
            writer.check()  # a writer that failed fails the test now, not after a timeout
            return len(accepted) > 2200

        eventually(flowing, timeout=60)
        time.sleep(0.3)
    finally:
        up.kill9()  # the crash this test is about (and no tree left behind by a failure)
        stop.set()
    writer.join(60)  # what the writer raised (say, a 202 with a wrong count), raised here
    assert len(accepted) > 2000

    up2 = Up(data).start()
    try:
        ids = eventually(lambda: (got := _all_ids(up2)) and len(got) >= len(accepted) and got,
                         timeout=60)
        assert len(ids) == len(set(ids)), "an event appears twice"
        assert accepted <= set(ids), f"lost {len(accepted - set(ids))} acknowledged events"
        # after the restart the system takes new events and survives a second crash too
        with up2.client("publisher") as pub:
            assert pub.post("/v1/events", json=_batch(50_000, 300)).json()["accepted"] == 300
        accepted.update(e["event_id"] for e in _batch(50_000, 300))
        up2.kill9()
        with Up(data).start() as up3:
            ids = eventually(lambda: (got := _all_ids(up3)) and accepted <= set(got) and got,
                             timeout=60)
            assert len(ids) == len(set(ids))
            with up3.client("publisher") as pub:
                again = pub.post("/v1/events", json=_batch(0, 100)).json()
            assert again == {"accepted": 0, "duplicates": 100, "rejected": []}
    finally:
        if up2.proc and up2.proc.poll() is None:
            up2.stop()
