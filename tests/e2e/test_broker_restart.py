"""The embedded broker is supervised like the worker and the database (issue 10, item 4):
kill -9 it and `up` answers 503 at once (readiness and ingest), restarts it on the same
port, restores its log from the database, and everything resumes; nothing acknowledged is
lost and the log is not flooded meanwhile."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest

from tests.e2e.system import Up
from tests.helpers import envelope, eventually

pytestmark = pytest.mark.e2e


def _broker_pid(up: Up) -> int:
    assert up.proc is not None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == up.proc.pid and b"tansu" in cmdline:
            return int(entry.name)
    raise AssertionError("no broker under up")


def test_a_killed_broker_is_restarted_restored_and_nothing_acknowledged_is_lost(
        tmp_path: Path) -> None:
    up = Up(tmp_path / "data").start()
    try:
        with up.client("publisher") as pub:
            first = [envelope(i, customer={"id": "c-br"}, event_id=f"br-{i}") for i in range(40)]
            assert pub.post("/v1/events", json=first).json()["accepted"] == 40
        eventually(lambda: up.get("/v1/customers/c-br").json().get("interactions_total") == 40)

        old = _broker_pid(up)
        os.kill(old, signal.SIGKILL)
        # the restart takes ~0.1 s; the worker, stopped with the broker so that nothing it
        # publishes lands in the empty broker before the restore, takes ~2 s: /readyz
        # says so meanwhile (ingest's 503 during the outage itself: tests/integration/
        # test_ingest_to_timeline.py, with the real app and a broker marked down)
        down = eventually(lambda: (r := httpx.get(f"{up.url}/readyz", timeout=5))
                          .status_code == 503 and r, timeout=10)
        assert down.json()["status"] != "ready"
        assert up.get("/v1/customers/c-br").status_code == 200  # reads go on
        eventually(lambda: httpx.get(f"{up.url}/readyz", timeout=5).status_code == 200,
                   timeout=60)
        assert _broker_pid(up) != old
        with up.client("publisher") as pub:
            more = [envelope(i, customer={"id": "c-br"}, event_id=f"br-{i}")
                    for i in range(40, 60)]
            accepted = eventually(lambda: (r := pub.post("/v1/events", json=more))
                                  .status_code == 202 and r.json(), timeout=30)
        assert accepted["accepted"] + accepted["duplicates"] == 20
        eventually(lambda: up.get("/v1/customers/c-br").json().get("interactions_total") == 60,
                   timeout=60)
        # the old records are back at their offsets: a repeat of the first batch is a duplicate
        with up.client("publisher") as pub:
            again = pub.post("/v1/events", json=first[:5]).json()
        assert (again["accepted"], again["duplicates"]) == (0, 5)
    finally:
        code = up.stop()
    assert code == 0, up.logs()[-2000:]
    logs = up.logs()
    assert "broker.exited" in logs and "broker.restarted" in logs
    # aiokafka's connection errors are held back: not ~150 lines a second
    assert logs.count("Unable connect to node") < 20, logs.count("Unable connect to node")


def test_past_its_memory_limit_the_broker_restarts_on_a_window_of_its_log(
        tmp_path: Path) -> None:
    """Issue 10, item 5: what the projector passed comes back packed; nothing is lost."""
    up = Up(tmp_path / "data", env={"CONTACTSTREAM_BROKER_MAX_MB": "1"}).start()
    try:
        first = [envelope(i, customer={"id": f"c-w{i % 9}"}, event_id=f"w-{i}")
                 for i in range(200)]
        with up.client("publisher") as pub:
            assert pub.post("/v1/events", json=first).json()["accepted"] == 200
        eventually(lambda: "broker.compacting" in up.logs(), timeout=30)
        restored = eventually(lambda: [line for line in up.logs().splitlines()
                                       if '"packed"' in line and "broker.restored" in line
                                       and '"packed": 0' not in line], timeout=30)
        assert restored
        eventually(lambda: httpx.get(f"{up.url}/readyz", timeout=5).status_code == 200,
                   timeout=60)
        more = [envelope(i, customer={"id": f"c-w{i % 9}"}, event_id=f"w-{i}")
                for i in range(200, 260)]
        with up.client("publisher") as pub:
            accepted = eventually(lambda: (r := pub.post("/v1/events", json=more))
                                  .status_code == 202 and r.json(), timeout=30)
            assert accepted["accepted"] + accepted["duplicates"] == 60
            again = eventually(lambda: (r := pub.post("/v1/events", json=first[:10]))
                               .status_code == 202 and r.json(), timeout=30)
        assert (again["accepted"], again["duplicates"]) == (0, 10)
        eventually(lambda: sum(up.get(f"/v1/customers/c-w{k}").json()
                               .get("interactions_total", 0) for k in range(9)) == 260,
                   timeout=60)
    finally:
        code = up.stop()
    assert code == 0, up.logs()[-2000:]
