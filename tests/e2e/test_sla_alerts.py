"""A supervisor's view: a 2-second first-response target, a complaint over HTTP, and on
the live alert stream its warning, then its breach. (How soon after the deadline the
breach arrives is measured by `contactstream bench --alerts`, not asserted here.)"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.system import Up
from tests.helpers import Background, eventually

pytestmark = pytest.mark.e2e


def _listen(up: Up, got: list[dict[str, Any]], ready: threading.Event,
            stop: threading.Event) -> None:
    """Every alert of the stream, in the order it came, until ``stop`` (when `up` is
    stopped the stream breaks off: that is not a failure then)."""
    headers = {"Authorization": f"Bearer {up.tokens['supervisor']}"}
    try:
        with httpx.Client(base_url=up.url, timeout=httpx.Timeout(30, read=30)) as c, \
                c.stream("GET", "/v1/alerts/stream", headers=headers) as resp:
            assert resp.status_code == 200, resp.status_code
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
                    got.append({"event": event.get("event"), **json.loads(event["data"])})
                    event = {}
    except httpx.HTTPError:
        if not stop.is_set():
            raise


def test_a_breach_reaches_the_alert_stream_after_its_warning(tmp_path: Path) -> None:
    got: list[dict[str, Any]] = []
    ready, stop = threading.Event(), threading.Event()
    with Up(tmp_path / "data").start() as up:
        with up.client("supervisor") as sup:
            resp = sup.put("/v1/sla-policies/urgent-web", json={
                "priority": ["urgent"], "channel": ["web"], "first_response_s": 2,
                "resolution_s": 3600, "warn_at": 0.5})
            assert resp.status_code == 200, resp.text
        listener = Background(_listen, up, got, ready, stop, daemon=True)
        listener.start()
        if not ready.wait(10):
            listener.check()  # the listener's own failure, if it failed
            raise AssertionError("the alert stream did not answer within 10 s")
        filed = datetime.now(UTC)
        complaint = {
            "event_id": str(uuid.uuid4()), "type": "complaint.filed",
            "occurred_at": filed.isoformat(), "source": "webform",
            "customer": {"id": "c-sla", "email": "sla@example.com"}, "channel": "web",
            "queue": "billing", "payload": {"category": "billing", "priority": "urgent",
                                            "description": "Nobody answers"}}
        with up.client("publisher") as pub:
            assert pub.post("/v1/events", json=complaint).json()["accepted"] == 1

        def breached() -> list[dict[str, Any]]:
            listener.check()  # a failed listener fails the test now, not after a timeout
            return [a for a in got if a["kind"] == "sla.breached"]

        eventually(breached, every=0.02)
        # the stream's alerts in order: the warning (at half the target), then the breach
        first_response = [a for a in got if a["metric"] == "first_response"]
        assert [a["kind"] for a in first_response] == ["sla.warning", "sla.breached"], got
        warning, breach = first_response
        for alert in (warning, breach):
            assert alert["event"] == alert["kind"]
            assert alert["customer_id"] == "c-sla"
            assert alert["case_id"] == breach["case_id"]
        assert warning["seq"] < breach["seq"]
        assert datetime.fromisoformat(warning["due_at"]) == \
            datetime.fromisoformat(breach["due_at"])  # both about the same deadline
        assert datetime.fromisoformat(breach["due_at"]) == filed + timedelta(seconds=2)
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
    listener.join(30)  # `up` stopped: the stream ended; what the listener raised, raised here
