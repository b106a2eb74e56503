"""The embedded PostgreSQL is supervised like the worker: kill -9 it and `up` answers 503
at once (readiness and ingest), restarts it, and then everything resumes."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest

from tests.e2e.system import Up
from tests.helpers import envelope, eventually

pytestmark = pytest.mark.e2e


def _postmaster_pid(data: Path) -> int:
    return int((data / "postgres" / "postmaster.pid").read_text().split()[0])


def test_a_killed_database_is_restarted_and_nothing_acknowledged_is_lost(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    with Up(data).start() as up:
        with up.client("publisher") as pub:
            first = [envelope(i, customer={"id": "c-db"}, event_id=f"db-{i}") for i in range(50)]
            assert pub.post("/v1/events", json=first).json()["accepted"] == 50
        eventually(lambda: up.get("/v1/customers/c-db").json().get("interactions_total") == 50)

        old = _postmaster_pid(data)
        os.kill(old, signal.SIGKILL)
        # while it is down: 503 with the error envelope, quickly, for readiness and ingest
        down = eventually(lambda: (r := httpx.get(f"{up.url}/readyz", timeout=5))
                          .status_code == 503 and r, timeout=10)
        assert down.json()["status"] != "ready"
        with up.client("publisher") as pub:
            # a request that waits for the database instead of refusing fails on the
            # client's timeout (an answer in time, not a measured duration, is the check)
            pub.timeout = httpx.Timeout(10)
            refused = eventually(lambda: (r := pub.post("/v1/events", json=[envelope(
                99, customer={"id": "c-db"}, event_id="db-during")])).status_code == 503 and r,
                timeout=10)
        assert refused.json()["error"]["code"] == "database_unavailable"
        assert refused.headers.get("retry-after") == "1"

        # restarted by `up` (a new postmaster), then everything resumes
        eventually(lambda: httpx.get(f"{up.url}/readyz", timeout=5).status_code == 200,
                   timeout=60)
        assert _postmaster_pid(data) != old
        with up.client("publisher") as pub:
            more = [envelope(i, customer={"id": "c-db"}, event_id=f"db-{i}")
                    for i in range(50, 80)]
            accepted = eventually(lambda: (r := pub.post("/v1/events", json=more))
                                  .status_code == 202 and r.json(), timeout=30)
        assert accepted["accepted"] + accepted["duplicates"] == 30
        eventually(lambda: up.get("/v1/customers/c-db").json().get("interactions_total") == 80,
                   timeout=60)
    assert "database.exited" in up.logs() and "database.restarted" in up.logs()
