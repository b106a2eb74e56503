"""The case, SLA, alert, webhook and service-report routes over HTTP, on real stores."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from contactstream.adapters.api import alerts as alert_routes
from contactstream.adapters.api.app import add_case_routes, create_app
from contactstream.adapters.auth import TokenTable
from contactstream.adapters.caseservice import CaseService, case_app
from contactstream.adapters.control import ControlStore, NewAlert
from contactstream.adapters.database import Database
from contactstream.adapters.readstore import ReadStore
from tests.helpers import envelope

pytestmark = pytest.mark.integration

TOKENS = {"publisher": "tok-pub", "agent": "tok-agent", "supervisor": "tok-sup",
          "admin": "tok-admin"}
SUP = {"Authorization": "Bearer tok-sup"}
AGENT = {"Authorization": "Bearer tok-agent"}
OPENED = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)  # 09:00+01:00, the complaint's time
CALENDAR = {"timezone": "Europe/Budapest", "hours": {d: [["09:00", "17:00"]] for d in
                                                      ("mon", "tue", "wed", "thu", "fri")},
            "holidays": ["2026-12-25"]}
POLICY = {"priority": ["high", "urgent"], "first_response_s": 3600, "resolution_s": 86400,
          "warn_at": 0.8}


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


@dataclass
class Env:
    app: FastAPI
    clock: Clock
    cases: CaseService
    control: ControlStore
    store: ReadStore
    client: httpx.AsyncClient


@pytest.fixture
async def env(database_url: str) -> AsyncIterator[Env]:
    clock = Clock(OPENED + timedelta(minutes=10))
    db = Database(database_url)
    control = ControlStore(db)
    cases = CaseService(case_app(database_url), control, now=clock.now)
    store = ReadStore(db)
    tokens = TokenTable(TOKENS)
    app = create_app(None, store, tokens)
    add_case_routes(app, cases, control, clock.now)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield Env(app, clock, cases, control, store, client)
    cases.app.close()
    db.close()


def error_code(resp: httpx.Response) -> str:
    return resp.json()["error"]["code"]


async def setup_sla(env: Env) -> None:
    c = env.client
    bad_cal = await c.put("/v1/calendars/office", headers=SUP,
                          json={**CALENDAR, "timezone": "Mars/Olympus"})
    assert bad_cal.status_code == 422 and error_code(bad_cal) == "invalid_calendar"
    assert "Mars/Olympus" in bad_cal.json()["error"]["message"]
    cal = await c.put("/v1/calendars/office", headers=SUP, json=CALENDAR)
    assert cal.status_code == 200, cal.text
    assert cal.json()["name"] == "office" and cal.json()["timezone"] == "Europe/Budapest"

    bad = await c.put("/v1/sla-policies/vip", headers=SUP, json={"first_response_s": 60})
    assert bad.status_code == 422 and bad.json()["error"]["message"] == "resolution_s is required"
    unknown_cal = await c.put("/v1/sla-policies/vip", headers=SUP,
                              json={**POLICY, "calendar": "nowhere"})
    assert unknown_cal.status_code == 422
    not_json = await c.put("/v1/sla-policies/vip", headers={**SUP, "Content-Type":
                                                             "application/json"}, content=b"{")
    assert not_json.status_code == 400 and error_code(not_json) == "bad_json"
    forbidden = await c.put("/v1/sla-policies/vip", headers=AGENT, json=POLICY)
    assert forbidden.status_code == 403 and error_code(forbidden) == "forbidden"
    assert (await c.put("/v1/sla-policies/vip", json=POLICY)).status_code == 401

    ok = await c.put("/v1/sla-policies/vip", headers=SUP, json=POLICY)
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"name": "vip", "priority": ["high", "urgent"], "channel": None,
                         "first_response_s": 3600.0, "next_response_s": None,
                         "resolution_s": 86400.0, "warn_at": 0.8, "calendar": None,
                         "segment": None, "min_lifetime_revenue": None}
    office = await c.put("/v1/sla-policies/office", headers=SUP,
                         json={"first_response_s": 28800, "resolution_s": 144000,
                               "calendar": "office"})
    assert office.status_code == 200
    listed = await c.get("/v1/sla-policies", headers=SUP)
    assert [p["name"] for p in listed.json()["items"]] == ["vip", "office"]
    cals = await c.get("/v1/calendars", headers=SUP)
    assert [x["name"] for x in cals.json()["items"]] == ["office"]


def open_complaint(env: Env, **over: Any) -> str:
    case_id = env.cases.handle_interaction("c-1001", envelope(
        0, occurred_at="2026-11-22T09:00:00+01:00", **over))
    assert case_id is not None
    return case_id


async def test_a_case_through_its_life_over_http(env: Env) -> None:
    await setup_sla(env)
    case_id = open_complaint(env)
    c = env.client

    got = await c.get(f"/v1/cases/{case_id}", headers=AGENT)
    assert got.status_code == 200, got.text
    view = got.json()
    assert view["status"] == "open" and view["priority"] == "high" and view["policy"] == "vip"
    fr = view["sla"]["first_response"]
    assert datetime.fromisoformat(fr["due_at"]) == OPENED + timedelta(hours=1)
    assert fr["paused"] is False
    assert view["breached"] == {"first_response": False, "resolution": False}

    env.clock.at = OPENED + timedelta(hours=2)  # an hour past the first-response deadline
    late = (await c.get(f"/v1/cases/{case_id}", headers=AGENT)).json()
    assert late["breached"] == {"first_response": True, "resolution": False}

    assigned = await c.post(f"/v1/cases/{case_id}/assign", headers=AGENT,
                            json={"agent_id": "agent-7"})
    assert assigned.status_code == 200, assigned.text
    assert assigned.json()["agent_id"] == "agent-7"
    missing_agent = await c.post(f"/v1/cases/{case_id}/assign", headers=AGENT, json={})
    assert missing_agent.status_code == 422 and error_code(missing_agent) == "invalid_command"
    not_object = await c.post(f"/v1/cases/{case_id}/assign", headers=AGENT, json=["x"])
    assert not_object.status_code == 422

    env.clock.at += timedelta(minutes=5)
    replied = await c.post(f"/v1/cases/{case_id}/reply", headers=AGENT,
                           json={"agent_id": "agent-7", "text": "We are on it"})
    assert replied.status_code == 200
    assert datetime.fromisoformat(replied.json()["first_response_at"]) == env.clock.at
    assert replied.json()["sla"]["first_response"]["stopped_at"] is not None

    waiting = await c.post(f"/v1/cases/{case_id}/wait", headers=AGENT)  # no body at all
    assert waiting.status_code == 200 and waiting.json()["status"] == "waiting"
    assert waiting.json()["sla"]["resolution"]["paused"] is True
    again = await c.post(f"/v1/cases/{case_id}/wait", headers=AGENT)
    assert again.status_code == 409 and error_code(again) == "invalid_transition"

    resolved = await c.post(f"/v1/cases/{case_id}/resolve", headers=AGENT,
                            json={"resolution": "refunded"})
    assert resolved.json()["status"] == "resolved"
    assert resolved.json()["resolution"] == "refunded"
    assert (await c.post(f"/v1/cases/{case_id}/reply", headers=AGENT,
                         json={"agent_id": "a"})).status_code == 409
    reopened = await c.post(f"/v1/cases/{case_id}/reopen", headers=AGENT, content=b"")
    assert reopened.status_code == 200 and reopened.json()["status"] == "open"
    assert reopened.json()["version"] == 6

    for unknown in ("0c6b5f4e-2d9c-4f59-8d8e-6a0f0d3b0f11", "not-a-uuid"):
        assert (await c.get(f"/v1/cases/{unknown}", headers=AGENT)).status_code == 404
        gone = await c.post(f"/v1/cases/{unknown}/resolve", headers=AGENT)
        assert gone.status_code == 404 and error_code(gone) == "not_found"
    assert (await c.get(f"/v1/cases/{case_id}", headers={"Authorization": "Bearer tok-pub"})
            ).status_code == 403


async def test_a_concurrent_change_is_a_409_conflict_not_a_lost_update(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    case_id = open_complaint(env)
    first, second = env.cases.get(case_id), env.cases.get(case_id)  # two copies, version 1
    first.assign("agent-1", env.clock.now())
    env.cases.app.save(first)
    # the request loads the other copy, as a request racing the first one would have
    monkeypatch.setattr(env.cases, "get", lambda _id: second)
    resp = await env.client.post(f"/v1/cases/{case_id}/assign", headers=AGENT,
                                 json={"agent_id": "agent-2"})
    assert resp.status_code == 409 and error_code(resp) == "conflict"
    monkeypatch.undo()
    assert env.cases.get(case_id).agent_id == "agent-1"


def add_case_row(env: Env, case_id: str, status: str, priority: str, opened: datetime,
                 queue: str = "billing", policy: str | None = "vip",
                 first_response: datetime | None = None,
                 resolved: datetime | None = None) -> None:
    ms = int(opened.timestamp() * 1000)
    env.store.db.execute(
        "INSERT INTO cases VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)", (
            case_id, "c-1001", status, priority, "web", queue, None, policy, opened.isoformat(),
            ms, int(first_response.timestamp() * 1000) if first_response else None,
            int(resolved.timestamp() * 1000) if resolved else None, 1, ms))


def breach(env: Env, case_id: str, i: int = 0) -> int:
    seq = env.control.add_alert(NewAlert(
        id=f"{case_id}:first_response#1:sla.breached", kind="sla.breached",
        at=(OPENED + timedelta(hours=1, minutes=i)).isoformat(), level="critical",
        case_id=case_id, customer_id="c-1001", metric="first_response",
        due_at=(OPENED + timedelta(hours=1)).isoformat()))
    assert seq is not None
    return seq


async def test_case_list_filters_and_pages_newest_first(env: Env) -> None:
    add_case_row(env, "case-a", "open", "high", OPENED)
    add_case_row(env, "case-b", "waiting", "normal", OPENED + timedelta(minutes=1),
                 queue="support")
    add_case_row(env, "case-c", "resolved", "urgent", OPENED + timedelta(minutes=2))
    breach(env, "case-a")
    c = env.client

    async def ids(query: str) -> list[str]:
        resp = await c.get(f"/v1/cases{query}", headers=AGENT)
        assert resp.status_code == 200, resp.text
        return [x["id"] for x in resp.json()["items"]]

    assert await ids("") == ["case-c", "case-b", "case-a"]
    assert await ids("?status=waiting") == ["case-b"]
    assert await ids("?breached=true") == ["case-a"]
    assert await ids("?breached=false") == ["case-c", "case-b"]
    assert await ids("?queue=billing&status=open") == ["case-a"]
    assert await ids("?customer_id=c-1001&status=resolved") == ["case-c"]
    item = (await c.get("/v1/cases?breached=true", headers=AGENT)).json()["items"][0]
    assert item == {"id": "case-a", "customer_id": "c-1001", "status": "open",
                    "priority": "high", "channel": "web", "queue": "billing", "agent_id": None,
                    "policy": "vip", "opened_at": OPENED.isoformat(), "breached": True}

    page = (await c.get("/v1/cases?limit=2", headers=AGENT)).json()
    assert [x["id"] for x in page["items"]] == ["case-c", "case-b"]
    rest = (await c.get(f"/v1/cases?limit=2&cursor={page['next']}", headers=AGENT)).json()
    assert [x["id"] for x in rest["items"]] == ["case-a"] and rest["next"] is None
    bad = await c.get("/v1/cases?cursor=nonsense", headers=AGENT)
    assert bad.status_code == 400 and error_code(bad) == "bad_cursor"
    assert (await c.get("/v1/cases?status=closed", headers=AGENT)).status_code == 422


async def test_alert_list_filters_by_kind_and_since_and_pages(env: Env) -> None:
    first = breach(env, "case-a", 0)
    warn = env.control.add_alert(NewAlert(
        id="case-b:first_response#1:sla.warning", kind="sla.warning",
        at="2026-11-22T10:30:00+01:00", level="warning", case_id="case-b",
        customer_id="c-1001", metric="first_response", due_at="2026-11-22T10:45:00+01:00"))
    esc = env.control.add_alert(NewAlert(
        id="escalation.repeat_complaint:c-1001:e3", kind="escalation.repeat_complaint",
        at="2026-11-22T09:40:00+00:00", level="critical", customer_id="c-1001"))
    c = env.client

    everything = (await c.get("/v1/alerts", headers=SUP)).json()
    assert [a["seq"] for a in everything["items"]] == [esc, warn, first]
    assert set(everything["items"][0]) >= {"id", "kind", "case_id", "customer_id", "metric",
                                           "due_at", "at", "level", "seq"}
    breached = (await c.get("/v1/alerts?kind=sla.breached", headers=SUP)).json()["items"]
    assert [a["kind"] for a in breached] == ["sla.breached"]
    assert breached[0]["case_id"] == "case-a" and breached[0]["level"] == "critical"
    two = (await c.get("/v1/alerts?kind=sla.breached,sla.warning", headers=SUP)).json()
    assert [a["seq"] for a in two["items"]] == [warn, first]
    repeated = (await c.get("/v1/alerts?kind=sla.warning&kind=escalation.repeat_complaint",
                            headers=SUP)).json()
    assert [a["seq"] for a in repeated["items"]] == [esc, warn]

    # since compares instants, whatever the offsets: 10:30+01:00 is 09:30Z, before 09:35Z
    since = await c.get("/v1/alerts", headers=SUP, params={"since": "2026-11-22T09:35:00Z"})
    assert [a["seq"] for a in since.json()["items"]] == [esc]
    since_offset = await c.get("/v1/alerts", headers=SUP,
                               params={"since": "2026-11-22T10:30:00+01:00"})
    assert [a["seq"] for a in since_offset.json()["items"]] == [esc, warn]
    naive = await c.get("/v1/alerts?since=2026-11-22T09:00:00", headers=SUP)
    assert naive.status_code == 400

    page = (await c.get("/v1/alerts?limit=2", headers=SUP)).json()
    assert [a["seq"] for a in page["items"]] == [esc, warn] and page["next"]
    rest = (await c.get(f"/v1/alerts?limit=2&cursor={page['next']}", headers=SUP)).json()
    assert [a["seq"] for a in rest["items"]] == [first] and rest["next"] is None
    assert (await c.get("/v1/alerts", headers=AGENT)).status_code == 403


async def test_webhooks_are_validated_and_listed_without_secrets(env: Env) -> None:
    c = env.client
    for body in ({"url": "ftp://x", "secret": "s", "kinds": []},
                 {"url": "https://hooks.example.com/a", "secret": "", "kinds": []},
                 {"url": "https://hooks.example.com/a", "secret": "s", "kinds": "sla.breached"},
                 {"url": "https://hooks.example.com/a", "secret": "s", "kinds": [1]},
                 {"url": "https://hooks.example.com/a", "secret": "s", "extra": 1}):
        resp = await c.put("/v1/webhooks/ops", headers=SUP, json=body)
        assert resp.status_code == 422, body
        assert error_code(resp) == "invalid_webhook"
    ok = await c.put("/v1/webhooks/ops", headers=SUP,
                     json={"url": "https://hooks.example.com/a", "secret": "shh",
                           "kinds": ["sla.breached"]})
    assert ok.status_code == 200
    assert ok.json() == {"name": "ops", "url": "https://hooks.example.com/a",
                         "kinds": ["sla.breached"]}
    await c.put("/v1/webhooks/all", headers=SUP,
                json={"url": "http://127.0.0.1:9/x", "secret": "s2", "kinds": []})
    env.control.record_webhook_failure("ops", 1, "HTTP 500 after 7 attempt(s)",
                                       "2026-11-22T10:00:00+00:00")
    listed = await c.get("/v1/webhooks", headers=SUP)
    assert listed.json()["items"] == [
        {"name": "all", "url": "http://127.0.0.1:9/x", "kinds": [], "failures": 0},
        {"name": "ops", "url": "https://hooks.example.com/a", "kinds": ["sla.breached"],
         "failures": 1}]
    assert "shh" not in listed.text
    assert env.control.webhooks()["ops"]["secret"] == "shh"
    assert (await c.put("/v1/webhooks/x", headers=AGENT, json={})).status_code == 403


async def test_service_report_from_the_read_store(env: Env) -> None:
    env.clock.at = OPENED + timedelta(hours=12)
    add_case_row(env, "case-a", "open", "high", OPENED)  # breached
    add_case_row(env, "case-b", "resolved", "normal", OPENED + timedelta(hours=1),
                 first_response=OPENED + timedelta(hours=1, minutes=2),
                 resolved=OPENED + timedelta(hours=3))
    add_case_row(env, "case-c", "waiting", "urgent", OPENED - timedelta(days=5),
                 first_response=OPENED - timedelta(days=5) + timedelta(minutes=30))
    add_case_row(env, "case-d", "open", "low", OPENED, policy=None)
    breach(env, "case-a")
    with env.store.db.tx() as conn:
        for i, (hours, outcome) in enumerate(((1, "abandoned"), (2, "answered"),
                                              (3, "answered"), (-30, "abandoned"))):
            at = OPENED + timedelta(hours=hours)
            conn.execute("INSERT INTO timeline_rows (etext, customer_id, occurred_ms,"
                         " occurred_at, received_at, type, channel, source, agent_id, queue,"
                         " case_id, payload, key_id) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,"
                         "%s::jsonb,%s)", (
                             f"call-{i}", "c-1001", int(at.timestamp() * 1000), at.isoformat(),
                             0, "call.ended", "voice", "pbx", None, None, None,
                             json.dumps({"direction": "inbound", "outcome": outcome}), None))

    resp = await env.client.get("/v1/reports/service", headers=SUP)
    assert resp.status_code == 200, resp.text
    report = resp.json()
    assert report["sla_attainment_pct"] == 50.0  # a breached, b not; d has no policy
    assert report["backlog"] == {"low": 1, "normal": 0, "high": 1, "urgent": 1}
    assert report["mean_first_response_s"] == 120.0
    assert report["mean_resolution_s"] == 7200.0
    assert report["abandonment_rate"] == round(1 / 3, 4)
    assert report["counts"]["cases_opened"] == 3 and report["counts"]["calls_ended"] == 3
    assert report["window_days"] == 1
    week = (await env.client.get("/v1/reports/service?window_days=7", headers=SUP)).json()
    assert week["counts"]["cases_opened"] == 4 and week["abandonment_rate"] == 0.5
    assert (await env.client.get("/v1/reports/service", headers=AGENT)).status_code == 403


async def test_service_report_today_counts_from_midnight_in_the_configured_zone(
        env: Env) -> None:
    # 20:00 UTC on 22 November is 05:00 on the 23rd in Tokyo: today began at 15:00 UTC
    env.clock.at = OPENED + timedelta(hours=12)
    add_case_row(env, "case-a", "open", "high", OPENED + timedelta(hours=11),
                 first_response=OPENED + timedelta(hours=11, minutes=1))
    add_case_row(env, "case-b", "open", "high", OPENED + timedelta(hours=2),
                 first_response=OPENED + timedelta(hours=3), queue="support")
    app = create_app(None, env.store, TokenTable(TOKENS))
    add_case_routes(app, env.cases, env.control, env.clock.now,
                    tz=ZoneInfo("Asia/Tokyo"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://api") as client:
        today = (await client.get("/v1/reports/service?today=true", headers=SUP)).json()
        day = (await client.get("/v1/reports/service", headers=SUP)).json()
    assert today["counts"]["cases_opened"] == 1 and today["mean_first_response_s"] == 60.0
    assert today["from"] == "2026-11-23T00:00:00+09:00"
    assert today["timezone"] == "Asia/Tokyo" and today["window_days"] is None
    assert day["counts"]["cases_opened"] == 2  # the last 24 hours
    # the backlog is of all time, by queue
    assert today["backlog_by_queue"] == [
        {"queue": "billing", "status": "open", "priority": "high", "cases": 1},
        {"queue": "support", "status": "open", "priority": "high", "cases": 1}]


# -- the alert stream, over a real socket (httpx's ASGITransport buffers whole responses) ---

@pytest.fixture
def served(env: Env) -> Iterator[str]:
    config = uvicorn.Config(env.app, host="127.0.0.1", port=0, log_level="warning",
                            lifespan="off", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


async def next_event(lines: AsyncIterator[str]) -> dict[str, str]:
    event: dict[str, str] = {}
    async for line in lines:
        if not line:
            if "data" in event:
                return event
            event = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(":")
            event[key] = value.removeprefix(" ")
    raise AssertionError("the stream ended")


async def test_the_alert_stream_sends_alerts_appended_after_connecting(
        env: Env, served: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alert_routes, "SSE_KEEPALIVE_S", 0.3)
    old = breach(env, "case-old")
    async with httpx.AsyncClient(base_url=served, timeout=10) as client:
        async with client.stream("GET", "/v1/alerts/stream", headers=SUP) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            lines = resp.aiter_lines()
            async with asyncio.timeout(5):
                async for line in lines:  # connected: from here on, new alerts only
                    if line == ": connected":
                        break
                seq = breach(env, "case-new")
                event = await next_event(lines)
            # the first event after connecting is the new alert (not the old one before it)
            assert event["id"] == str(seq) and event["event"] == "sla.breached"
            data = json.loads(event["data"])
            assert data["case_id"] == "case-new" and data["seq"] == seq

        # a reconnect with Last-Event-ID replays what came after it first
        async with client.stream("GET", "/v1/alerts/stream",
                                 headers={**SUP, "Last-Event-ID": str(old - 1)}) as resp:
            lines = resp.aiter_lines()
            async with asyncio.timeout(5):
                replayed = [await next_event(lines), await next_event(lines)]
            assert [int(e["id"]) for e in replayed] == [old, seq]

        # a quiet stream sends a keep-alive comment (every 15 s; shortened here)
        async with client.stream("GET", "/v1/alerts/stream", headers=SUP) as resp:
            async with asyncio.timeout(5):
                async for line in resp.aiter_lines():
                    if line == ": keep-alive":
                        break

        forbidden = await client.get("/v1/alerts/stream", headers=AGENT)
        assert forbidden.status_code == 403


async def test_policies_calendars_and_webhooks_can_be_deleted(env: Env) -> None:
    c = env.client
    await setup_sla(env)
    hook = {"url": "https://hooks.example.com/a", "secret": "s", "kinds": ["sla.breached"]}
    assert (await c.put("/v1/webhooks/ops", headers=SUP, json=hook)).status_code == 200
    env.control.record_webhook_failure("ops", 1, "HTTP 500", "2026-11-22T10:00:00+00:00")

    # a calendar a policy names stays until the policy goes
    in_use = await c.delete("/v1/calendars/office", headers=SUP)
    assert in_use.status_code == 409 and error_code(in_use) == "in_use"
    assert "office" in in_use.json()["error"]["message"]
    assert (await c.delete("/v1/sla-policies/vip", headers=AGENT)).status_code == 403
    for path in ("/v1/sla-policies/office", "/v1/calendars/office", "/v1/webhooks/ops"):
        gone = await c.delete(path, headers=SUP)
        assert gone.status_code == 204 and gone.content == b"", path
        again = await c.delete(path, headers=SUP)
        assert again.status_code == 404 and error_code(again) == "not_found", path

    policies = (await c.get("/v1/sla-policies", headers=SUP)).json()["items"]
    assert [p["name"] for p in policies] == ["vip"]
    assert (await c.get("/v1/calendars", headers=SUP)).json()["items"] == []
    assert (await c.get("/v1/webhooks", headers=SUP)).json()["items"] == []
    assert "ops" not in env.control.webhooks() and env.control.webhook_failures() == {}
    # put again under the same name: a new webhook, with no failures of the old one
    assert (await c.put("/v1/webhooks/ops", headers=SUP, json=hook)).status_code == 200
    listed = (await c.get("/v1/webhooks", headers=SUP)).json()["items"]
    assert listed == [{"name": "ops", "url": hook["url"], "kinds": ["sla.breached"],
                       "failures": 0}]


async def test_webhook_kinds_are_the_known_alert_kinds(env: Env) -> None:
    c = env.client
    body = {"url": "https://hooks.example.com/a", "secret": "s"}
    resp = await c.put("/v1/webhooks/ops", headers=SUP, json={**body, "kinds": ["sla.breachd"]})
    assert resp.status_code == 422 and error_code(resp) == "invalid_webhook"
    assert "sla.breachd" in resp.json()["error"]["message"] or \
        "sla.breached" in resp.json()["error"]["message"]
    every = ["sla.warning", "sla.breached", "escalation.repeat_complaint",
             "escalation.low_satisfaction"]
    ok = await c.put("/v1/webhooks/ops", headers=SUP, json={**body, "kinds": every})
    assert ok.status_code == 200 and ok.json()["kinds"] == every


async def test_every_list_pages_by_cursor_and_refuses_unknown_parameters(env: Env) -> None:
    c = env.client
    for i in range(3):
        assert (await c.put(f"/v1/sla-policies/p{i}", headers=SUP, json=POLICY)).status_code == 200
        assert (await c.put(f"/v1/calendars/c{i}", headers=SUP, json=CALENDAR)).status_code == 200
        assert (await c.put(f"/v1/webhooks/w{i}", headers=SUP, json={
            "url": "https://hooks.example.com/a", "secret": "s"})).status_code == 200
    for path in ("/v1/sla-policies", "/v1/calendars", "/v1/webhooks"):
        first = (await c.get(path, headers=SUP, params={"limit": 2})).json()
        rest = (await c.get(path, headers=SUP, params={"limit": 2, "cursor": first["next"]})
                ).json()
        names = [i["name"] for i in first["items"] + rest["items"]]
        assert len(first["items"]) == 2 and rest["next"] is None, path
        assert sorted(names) == sorted({*names}) and len(names) == 3, path
        bad = await c.get(path, headers=SUP, params={"cursor": "nope"})
        assert bad.status_code == 400 and error_code(bad) == "bad_cursor", path

    for path, params in (("/v1/cases", {"page": "2"}), ("/v1/alerts", {"kinds": "x"}),
                         ("/v1/sla-policies", {"offset": "1"}),
                         ("/v1/reports/service", {"window": "7"}),
                         ("/v1/cases", {"status": "open", "sort": "asc"})):
        resp = await c.get(path, headers=SUP, params=params)
        assert resp.status_code == 400 and error_code(resp) == "unknown_parameter", path
        unknown = next(k for k in params if k not in ("status",))
        assert repr(unknown) in resp.json()["error"]["message"], resp.text
    known = await c.get("/v1/cases", headers=SUP, params={"status": "open", "limit": 5})
    assert known.status_code == 200


async def test_a_body_no_store_can_keep_is_the_routes_422(env: Env) -> None:
    """Found by schemathesis: U+0000 in a body field reached PostgreSQL and was a 500. Every
    body model refuses what no store can keep, as its route's 422 in the envelope."""
    c = env.client
    for path, body, headers, code in (
            ("/v1/cases/x/assign", {"agent_id": "a\x00b"}, SUP, "invalid_command"),
            ("/v1/sla-policies/p", {**POLICY, "calendar": "c\x00"}, SUP, "invalid_policy"),
            ("/v1/webhooks/w", {"url": "http://127.0.0.1:9/\x00", "kinds": ["sla.breached"]},
             SUP, "invalid_webhook")):
        send = c.put if "assign" not in path else c.post
        resp = await send(path, headers=headers, json=body)
        assert resp.status_code == 422, (path, resp.text)
        assert set(resp.json()) == {"error"}
        assert error_code(resp) == code
        assert "NUL" in resp.json()["error"]["message"]


async def test_a_wrong_method_is_405_with_allow_and_bad_input_is_the_envelope(env: Env) -> None:
    c = env.client
    resp = await c.post("/v1/sla-policies", headers=SUP, json={})
    assert resp.status_code == 405 and error_code(resp) == "http_error"
    assert resp.headers["allow"] == "GET"
    resp = await c.patch("/v1/webhooks/ops", headers=SUP, json={})
    assert resp.status_code == 405 and resp.headers["allow"] == "DELETE, PUT"
    # what FastAPI would answer as {"detail": [...]} is the contract's envelope
    bad = await c.get("/v1/cases", headers=SUP, params={"limit": "many"})
    assert bad.status_code == 422 and set(bad.json()) == {"error"}
    assert error_code(bad) == "invalid_request" and "limit" in bad.json()["error"]["message"]
    bad = await c.put("/v1/sla-policies/p", headers=SUP, json={**POLICY, "warn_at": "0.5"})
    assert bad.status_code == 422 and error_code(bad) == "invalid_policy"
    assert bad.json()["error"]["message"].startswith("warn_at:")
