"""A supervisor's view: a 2-second first-response target, a complaint over HTTP, and the
breach on the live alert stream within 3 seconds."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.e2e.system import Up
from tests.helpers import eventually

pytestmark = pytest.mark.e2e


def _listen(up: Up, got: list[dict], ready: threading.Event, stop: threading.Event) -> None:
    headers = {"Authorization": f"Bearer {up.tokens['supervisor']}"}
    with httpx.Client(base_url=up.url, timeout=httpx.Timeout(30, read=30)) as c, \
            c.stream("GET", "/v1/alerts/stream", headers=headers) as resp:
        assert resp.status_code == 200
        ready.set()
        event: dict[str, str] = {}
        for line in resp.iter_lines():
            if stop.is_set():
                return
            if line.startswith("data:"):
                event["data"] = line[5:].strip()
            elif line.startswith("event:"):
                event["event"] = line[6:].strip()
            elif line == "" and "data" in event:
                got.append({**json.loads(event["data"]), "received": time.time()})
                event = {}


def test_a_breach_reaches_the_alert_stream_within_3_seconds(tmp_path: Path) -> None:
    up = Up(tmp_path / "data").start()
    try:
        with up.client("supervisor") as sup:
            resp = sup.put("/v1/sla-policies/urgent-web", json={
                "priority": ["urgent"], "channel": ["web"], "first_response_s": 2,
                "resolution_s": 3600, "warn_at": 0.5})
            assert resp.status_code == 200, resp.text
        got: list[dict] = []
        ready, stop = threading.Event(), threading.Event()
        listener = threading.Thread(target=_listen, args=(up, got, ready, stop), daemon=True)
        listener.start()
        assert ready.wait(10)
        filed = datetime.now(UTC)
        complaint = {
            "event_id": str(uuid.uuid4()), "type": "complaint.filed",
            "occurred_at": filed.isoformat(), "source": "webform",
            "customer": {"id": "c-sla", "email": "sla@example.com"}, "channel": "web",
            "queue": "billing", "payload": {"category": "billing", "priority": "urgent",
                                            "description": "Nobody answers"}}
        with up.client("publisher") as pub:
            assert pub.post("/v1/events", json=complaint).json()["accepted"] == 1
        breach = eventually(lambda: next((a for a in got if a["kind"] == "sla.breached"),
                                         None), timeout=10, every=0.02)
        warning = next(a for a in got if a["kind"] == "sla.warning")
        assert breach["metric"] == "first_response" and breach["customer_id"] == "c-sla"
        assert breach["received"] - filed.timestamp() < 3.0, breach
        assert warning["received"] <= breach["received"]
        # the case is visible with its breached clock, and in the alert list
        case = up.get(f"/v1/cases/{breach['case_id']}").json()
        assert case["sla"]["first_response"]["breached"] is True
        listed = up.get("/v1/alerts", role="supervisor", kind="sla.breached").json()
        assert [a["id"] for a in listed["items"]] == [breach["id"]]
        metrics = httpx.get(f"{up.url}/metrics").text
        assert 'contactstream_alerts_total{kind="sla.breached"} 1.0' in metrics
        # the agent replies, resolves; the customer view shows no open case after that
        with up.client("agent") as agent:
            r = agent.post(f"/v1/cases/{breach['case_id']}/reply",
                           json={"agent_id": "agent-7", "text": "Sorry!"})
            assert r.status_code == 200, r.text
            assert agent.post(f"/v1/cases/{breach['case_id']}/resolve",
                              json={}).json()["status"] == "resolved"
            assert agent.post(f"/v1/cases/{breach['case_id']}/resolve",
                              json={}).status_code == 409
        eventually(lambda: up.get("/v1/customers/c-sla").json().get("open_cases") == [])
        timeline = up.get("/v1/customers/c-sla/timeline").json()["items"]
        assert {"case.opened", "case.first_response", "case.resolved"} <= {
            i["type"] for i in timeline}
        stop.set()
    finally:
        assert up.stop() == 0
