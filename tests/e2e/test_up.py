"""A new user's path: `contactstream up`, publish over HTTP, read the timeline back."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.system import Up
from tests.helpers import envelope, eventually

pytestmark = pytest.mark.e2e

ANNA = {"id": "c-1001", "email": "anna.kovacs@example.com", "phone": "+36301234567",
        "name": "Kovács Anna"}


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    # at DEBUG: the per-batch and per-case lines too, for the personal-data check below
    with Up(tmp_path_factory.mktemp("up") / "data",
            env={"CONTACTSTREAM_LOG_LEVEL": "debug"}).start() as system:
        yield system


def test_publish_over_http_and_read_the_timeline(up: Up) -> None:
    events = [envelope(i, customer=ANNA, payload={
        "category": "billing", "priority": "high", "description": f"Kétszer terheltek {i}"})
        for i in range(5)]
    with up.client("publisher") as pub:
        resp = pub.post("/v1/events", json=events)
    assert resp.status_code == 202 and resp.json()["accepted"] == 5
    # each complaint also opened a case, whose events share the timeline
    page = eventually(lambda: (r := up.get("/v1/customers/c-1001/timeline",
                                           type="complaint.filed").json())
                      and len(r.get("items", [])) == 5 and r)
    assert {i["event_id"] for i in page["items"]} == {e["event_id"] for e in events}
    assert page["items"][0]["payload"]["description"].startswith("Kétszer terheltek")
    assert up.get("/v1/customers/lookup", email="Anna.Kovacs@example.com").json() == {
        "id": "c-1001"}
    view = up.get("/v1/customers/c-1001").json()
    assert view["name"] == "Kovács Anna" and view["interaction_counts"] == {"web": 5}


def test_tokens_file_is_private_and_roles_hold(up: Up) -> None:
    mode = stat.S_IMODE((up.data_dir / "tokens.json").stat().st_mode)
    assert mode == 0o600
    assert set(up.tokens) == {"publisher", "agent", "supervisor", "admin"}
    assert up.get("/v1/customers/c-1001", role="publisher").status_code == 403
    with up.client("agent") as agent:
        assert agent.post("/v1/events", json=envelope(1)).status_code == 403


def test_publish_command_reports_rejects_and_exits_nonzero(up: Up, tmp_path: Path) -> None:
    good = [envelope(100 + i, customer={"id": "c-2002", "name": "王芳"}) for i in range(3)]
    lines = [json.dumps(e, ensure_ascii=False) for e in good]
    lines.insert(1, "{not json")
    lines.append(json.dumps(envelope(200, channel="fax")))
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    run = subprocess.run(
        [sys.executable, "-m", "contactstream.adapters.cli", "publish", str(path), "--url",
         up.url, "--token", up.tokens["publisher"]], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert "accepted 3, duplicates 0, rejected 2" in run.stdout
    assert "line 2" in run.stdout and "line 5" in run.stdout
    again = subprocess.run(
        [sys.executable, "-m", "contactstream.adapters.cli", "publish", str(path), "--url",
         up.url, "--token", up.tokens["publisher"]], capture_output=True, text=True, timeout=60)
    assert "accepted 0, duplicates 3, rejected 2" in again.stdout
    eventually(lambda: len(up.get("/v1/customers/c-2002/timeline", type="complaint.filed")
                           .json().get("items", [])) == 3)
    cases = eventually(lambda: len(items := up.get("/v1/cases", customer_id="c-2002")
                                   .json().get("items", [])) == 3 and items, timeout=45)
    assert {c["status"] for c in cases} == {"open"}


def test_logs_are_structured_and_carry_no_personal_data(up: Up) -> None:
    # its own customer, published and projected here: the test needs no other to run first
    person = {"id": "c-3003", "name": "Szabó Péter", "email": "peter.szabo@example.com",
              "phone": "+36705556677", "visitor_id": "v-peter-3"}
    events = [envelope(300 + i, customer=person, payload={
        "category": "billing", "priority": "high", "description": f"Elromlott a router {i}"})
        for i in range(2)]
    with up.client("publisher") as pub:
        assert pub.post("/v1/events", json=events).json()["accepted"] == 2
    eventually(lambda: len(up.get("/v1/customers/c-3003/timeline", type="complaint.filed")
                           .json().get("items", [])) == 2)
    eventually(lambda: len(up.get("/v1/cases", customer_id="c-3003").json().get("items", []))
               == 2)  # the case stage has run over them too
    logs = up.logs()
    records = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert any(r.get("event") == "ingest.batch" for r in records)
    assert any(r.get("event") == "case.opened" for r in records)
    # this test's person, and those of the other tests if they ran before
    for secret in ("Szabó", "peter.szabo", "+36705556677", "v-peter-3", "Elromlott",
                   "anna.kovacs", "Kovács", "+36301234567", "王芳", "Kétszer"):
        assert secret not in logs, secret


def test_the_crm_routes_are_served_and_documented(up: Up) -> None:
    """Issue 14: every CRM endpoint is in `up`'s OpenAPI document and answers its role."""
    paths = up.get("/openapi.json").json()["paths"]
    for path in ("/v1/reports/churn", "/v1/reports/cohorts", "/v1/reports/workload",
                 "/v1/audiences", "/v1/retention-policy"):
        assert path in paths, path
    assert "put" in paths["/v1/retention-policy"] and "get" in paths["/v1/retention-policy"]
    for path, params in (("/v1/reports/churn", {"window_days": 30}),
                         ("/v1/reports/cohorts", {"period": "quarter"}),
                         ("/v1/reports/workload", {})):
        assert up.get(path, role="supervisor", **params).status_code == 200, path
        assert up.get(path, role="agent", **params).status_code == 403, path
    export = up.get("/v1/audiences", role="admin", channel="email", format="csv")
    assert export.status_code == 200 and "x-contactstream-excluded" in export.headers
    assert export.text.splitlines()[0] == "customer_id,contact,segment,churn_risk,consent_at"
    assert up.get("/v1/audiences", role="supervisor", channel="email").status_code == 403
    assert up.get("/v1/retention-policy", role="admin").json()["inactive_days"] is None
