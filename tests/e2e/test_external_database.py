"""With CONTACTSTREAM_DATABASE_URL the data dir holds nothing the system needs but what a
deployment gives it (master key, tokens): a fresh data dir pointed at the same database
with the same master key sees every customer, case and alert again, and the embedded
broker's log comes back from the database."""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

import pytest

from tests.e2e.system import Up
from tests.helpers import envelope, eventually

pytestmark = pytest.mark.e2e


def test_a_fresh_data_dir_on_the_same_database_sees_everything(
        tmp_path: Path, database_url: str) -> None:
    env = {"CONTACTSTREAM_DATABASE_URL": database_url,
           "CONTACTSTREAM_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
           "CONTACTSTREAM_TOKENS_FILE": str(tmp_path / "secrets" / "tokens.json")}
    (tmp_path / "secrets").mkdir()
    first = tmp_path / "first"
    events = [envelope(i, customer={"id": f"c-x{i % 3}", "name": f"Tóth Anna {i % 3}",
                                    "phone": f"+3630123456{i % 3}"}, event_id=f"ext-{i}")
              for i in range(30)]
    with Up(first, env=env).start() as up:
        with up.client("publisher") as pub:
            assert pub.post("/v1/events", json=events).json()["accepted"] == 30
        view = eventually(lambda: (v := up.get("/v1/customers/c-x1").json()).get(
            "interactions_total") == 10 and v)
        cases = eventually(lambda: (items := up.get("/v1/cases", limit=100).json()["items"])
                           and len(items) == 30 and items)
        alerts = eventually(lambda: (items := up.get(
            "/v1/alerts", role="supervisor", limit=100).json()["items"]) and items)
    # nothing of the system's state was written to the data dir: no key store, no key
    # file, no tokens (they are the deployment's), only the broker's log and runtime files
    left = sorted(p.name for p in first.iterdir())
    assert not {"keys.sqlite", "master.key", "tokens.json", "postgres"} & set(left), left
    shutil.rmtree(first)

    second = tmp_path / "second"
    with Up(second, env=env).start() as up2:
        again = up2.get("/v1/customers/c-x1").json()
        assert again["name"] == view["name"] == "Tóth Anna 1"
        assert again["identifiers"] == view["identifiers"]
        assert again["interactions_total"] == 10
        assert {c["id"] for c in up2.get("/v1/cases", limit=100).json()["items"]} == \
            {c["id"] for c in cases}
        assert [a["id"] for a in up2.get("/v1/alerts", role="supervisor",
                                         limit=100).json()["items"]] == \
            [a["id"] for a in alerts]
        with up2.client("publisher") as pub:  # the journal is in the database too
            assert pub.post("/v1/events", json=events[:3]).json()["duplicates"] == 3
