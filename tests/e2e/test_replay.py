"""`contactstream replay` rebuilds the read store from the log: same result as live."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from contactstream.adapters.database import EmbeddedPostgres
from tests.e2e.system import Up
from tests.helpers import dump_tables, envelope, eventually

pytestmark = pytest.mark.e2e


def _dump(data: Path) -> dict[str, list[str]]:
    """The read model of a stopped `up`, read through its own embedded server."""
    with EmbeddedPostgres(data / "postgres") as pg:
        return dump_tables(pg.url, ("timeline", "identifiers", "customers"))


def test_replay_after_a_stop_equals_the_live_projection(tmp_path: Path) -> None:
    data = tmp_path / "data"
    events = [envelope(i, customer={"id": f"c-{i % 4}", "email": f"r{i % 4}@példa.hu",
                                    "name": f"Ügyfél {i % 4}"}, event_id=f"rp-{i}")
              for i in range(400)]
    with Up(data).start() as up:
        with up.client("publisher") as pub:
            assert pub.post("/v1/events", json=events).json()["accepted"] == 400
        eventually(lambda: sum(up.get(f"/v1/customers/c-{i}").json().get(
            "interactions_total", 0) for i in range(4)) == 400)
        # settled: every complaint's case event has come back through cases.v1 too (else
        # the replay would project records the live run had not read yet)
        eventually(lambda: len(up.get("/v1/cases", limit=500).json()["items"]) == 400)
    live = _dump(data)
    run = subprocess.run([sys.executable, "-m", "contactstream.adapters.cli", "replay",
                          "--data-dir", str(data)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "400 events" in run.stdout
    assert _dump(data) == live
