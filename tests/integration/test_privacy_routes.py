"""The export and the access audit over HTTP, on a real read store, control store and audit log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from contactstream.adapters.api.app import add_privacy_routes, create_app
from contactstream.adapters.api.auth import token_fingerprint
from contactstream.adapters.audit import AuditLog
from contactstream.adapters.auth import TokenTable
from contactstream.adapters.control import ControlStore, NewAlert
from contactstream.adapters.database import Database
from contactstream.adapters.insights import Insights
from contactstream.adapters.readstore import ReadStore, ReadStoreWriter
from contactstream.projections import timeline
from contactstream.streams.ports import BatchChanges
from tests.helpers import envelope

pytestmark = pytest.mark.integration

TOKENS = {"publisher": "tok-pub", "agent": "tok-agent", "supervisor": "tok-sup",
          "admin": "tok-admin"}
HEADERS = {r: {"Authorization": f"Bearer {t}"} for r, t in TOKENS.items()}
ADMIN, AGENT = HEADERS["admin"], HEADERS["agent"]
NAME = "Anna Kovács"
EMAIL = "anna@example.com"
TEXTS = ["Kétszer terheltek meg, kérem a visszatérítést", "سلام، سفارش من کجاست؟",
         "我的订单还没到"]
VISITS = 520  # more than one page of the export's timeline reads


@dataclass
class Env:
    client: httpx.AsyncClient
    audit: AuditLog
    db: Database
    event_ids: list[str]


def _events() -> list[dict[str, Any]]:
    anna = {"id": "c-1001", "email": "Anna@Example.com ", "phone": "+36301234567",
            "visitor_id": "v-77", "name": NAME}
    evs = [envelope(0, event_id="ev-complaint", customer=anna,
                    occurred_at="2026-11-20T09:00:00+01:00",
                    payload={"category": "billing", "priority": "high",
                             "description": TEXTS[0]}),
           envelope(1, event_id="ev-chat", type="chat.message", channel="chat", customer=anna,
                    occurred_at="2026-11-20T10:00:00+01:00",
                    payload={"direction": "inbound", "text": TEXTS[1]}),
           envelope(2, event_id="ev-mail", type="email.received", channel="email",
                    customer={"email": EMAIL}, occurred_at="2026-11-20T11:00:00+01:00",
                    payload={"subject": "订单", "body": TEXTS[2]})]
    evs += [envelope(i, event_id=f"ev-visit-{i:04d}", type="web.visit",
                     customer={"visitor_id": "v-77"},
                     occurred_at=f"2026-11-21T{i // 60 % 24:02d}:{i % 60:02d}:00+01:00",
                     payload={"url": f"https://shop.example/p/{i}"}) for i in range(VISITS)]
    evs.append(envelope(9, event_id="ev-other", customer={"id": "c-2002", "name": "Li Wei",
                                                           "email": "li@example.org"},
                        payload={"category": "x", "priority": "low",
                                 "description": "someone else"}))
    return evs


@pytest.fixture
async def env(db: Database) -> AsyncIterator[Env]:
    events = _events()
    state = timeline.TimelineState()
    for ev in events:
        state = timeline.apply(state, ev)
    writer = ReadStoreWriter(db)
    opened_ms = timeline.occurred_ms("2026-11-20T09:00:01+01:00")
    writer.commit(BatchChanges(timeline=state, cases=[{
        "case_id": "case-1", "customer_id": "c-1001", "status": "open", "priority": "high",
        "channel": "web", "queue": "billing", "agent_id": None, "policy": None,
        "occurred_at": "2026-11-20T09:00:01+01:00", "occurred_ms": opened_ms, "version": 1,
        "data": {"opened_at": "2026-11-20T09:00:01+01:00", "opened_ms": opened_ms}}]))
    writer.close()
    store = ReadStore(db)
    control = ControlStore(db)
    control.add_alert(NewAlert(id="a-1", kind="sla.breached", at="2026-11-20T10:00:01+00:00",
                               level="critical", case_id="case-1", customer_id="c-1001",
                               metric="first_response"))
    control.add_alert(NewAlert(id="a-2", kind="escalation.low_satisfaction", level="warning",
                               at="2026-11-20T10:00:02+00:00", customer_id="c-2002"))
    audit = AuditLog(db)
    insights = Insights(store)
    app = create_app(None, store, TokenTable(TOKENS), insights=insights)
    add_privacy_routes(app, control, audit, links=None)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield Env(client, audit, db,
                  [e["event_id"] for e in events if e["event_id"] != "ev-other"])
    audit.close()


async def test_export_as_admin_holds_everything_published(env: Env) -> None:
    resp = await env.client.get("/v1/customers/c-1001/export", headers=ADMIN)
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    assert set(doc) == {"exported_at", "customer", "identifiers", "timeline", "cases",
                        "alerts", "access_log"}
    assert doc["customer"]["id"] == "c-1001" and doc["customer"]["name"] == NAME
    assert doc["customer"]["open_cases"][0]["id"] == "case-1"
    assert {"satisfaction", "value", "churn_risk"} <= set(doc["customer"])
    assert doc["identifiers"]["email"] == [EMAIL]
    assert doc["identifiers"]["phone"] == ["+36301234567"]
    assert doc["identifiers"]["visitor_id"] == ["v-77"]
    # every timeline item, every page, oldest first, texts unchanged
    items = doc["timeline"]
    assert sorted(i["event_id"] for i in items) == sorted(env.event_ids)
    assert len(items) == VISITS + 3
    assert [i["event_id"] for i in items[:3]] == ["ev-complaint", "ev-chat", "ev-mail"]
    assert items[-1]["event_id"] == f"ev-visit-{VISITS - 1:04d}"
    assert items[0]["payload"]["description"] == TEXTS[0]
    assert items[1]["payload"]["text"] == TEXTS[1]
    assert items[2]["payload"]["body"] == TEXTS[2]
    assert [c["case_id"] for c in doc["cases"]] == ["case-1"]
    assert doc["cases"][0]["priority"] == "high"
    assert [a["id"] for a in doc["alerts"]] == ["a-1"]
    assert "Li Wei" not in resp.text and "someone else" not in resp.text


async def test_export_refused_to_every_role_but_admin(env: Env) -> None:
    for who in ("publisher", "agent", "supervisor"):
        resp = await env.client.get("/v1/customers/c-1001/export", headers=HEADERS[who])
        assert resp.status_code == 403, who
        assert resp.json()["error"]["code"] == "forbidden"
    resp = await env.client.get("/v1/customers/c-1001/export")
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "unauthenticated"
    resp = await env.client.get("/v1/customers/nobody/export", headers=ADMIN)
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"


async def test_every_read_of_personal_data_is_audited(env: Env) -> None:
    c = env.client
    assert (await c.get("/v1/customers/c-1001", headers=AGENT)).status_code == 200
    assert (await c.get("/v1/customers/c-1001/timeline?limit=5",
                        headers=AGENT)).status_code == 200
    lookup = await c.get("/v1/customers/lookup", params={"email": "Anna@Example.com"},
                         headers=AGENT)
    assert lookup.status_code == 200 and lookup.json() == {"id": "c-1001"}
    assert (await c.get("/v1/customers/c-1001/export", headers=AGENT)).status_code == 403
    assert (await c.get("/v1/customers/c-1001")).status_code == 401
    assert (await c.get("/v1/reports/segments", headers=ADMIN)).status_code == 200  # not a read

    resp = await c.get("/v1/audit", params={"customer_id": "c-1001", "role": "agent"},
                       headers=ADMIN)
    assert resp.status_code == 200, resp.text
    items = resp.json()["items"]
    reads = [(i["method"], i["path"], i["action"], i["status"]) for i in items
             if i["status"] == 200]
    assert reads == [  # newest first
        ("GET", "/v1/customers/lookup", "customer.lookup", 200),
        ("GET", "/v1/customers/{customer_id}/timeline", "customer.timeline", 200),
        ("GET", "/v1/customers/{customer_id}", "customer.view", 200)]
    for i in items:
        assert i["role"] == "agent" and i["customer_id"] == "c-1001"
        assert i["token_id"] == token_fingerprint(TOKENS["agent"])
        assert i["at"].endswith("+00:00")
        assert i["items"] is None  # only an audience export counts what it gave out

    everything = (await c.get("/v1/audit", params={"customer_id": "c-1001"},
                              headers=ADMIN)).json()["items"]
    refused = [i for i in everything if i["status"] in (401, 403)]
    assert [(i["action"], i["status"]) for i in refused] == [("customer.view", 401),
                                                             ("customer.export", 403)]
    assert refused[0]["role"] is None and refused[0]["token_id"] is None
    # the 403 is known by its token's fingerprint; its role once the auth dependency
    # records who asked before it refuses
    assert refused[1]["token_id"] == token_fingerprint(TOKENS["agent"])
    assert refused[1]["role"] == "agent"
    assert all(i["action"] != "customer.list" for i in everything)

    # the audit is for admins only, and lists newest first in pages
    assert (await c.get("/v1/audit", headers=HEADERS["supervisor"])).status_code == 403
    page1 = (await c.get("/v1/audit", params={"limit": 2}, headers=ADMIN)).json()
    page2 = (await c.get("/v1/audit", params={"limit": 2, "cursor": page1["next"]},
                         headers=ADMIN)).json()
    seqs = [i["seq"] for i in page1["items"] + page2["items"]]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == 4
    later = await c.get("/v1/audit", params={"since": "2999-01-01T00:00:00Z"}, headers=ADMIN)
    assert later.json() == {"items": [], "next": None}

    # the export carries the customer's own access log
    doc = (await c.get("/v1/customers/c-1001/export", headers=ADMIN)).json()
    assert {a["action"] for a in doc["access_log"]} >= {"customer.view", "customer.timeline",
                                                        "customer.lookup"}


async def test_audit_rows_hold_no_personal_data(env: Env) -> None:
    c = env.client
    await c.get("/v1/customers/lookup", params={"email": EMAIL}, headers=AGENT)
    await c.get("/v1/customers/lookup", params={"phone": "+36 30 123 4567"}, headers=AGENT)
    await c.get("/v1/customers/lookup", params={"email": "nobody@example.net"}, headers=AGENT)
    await c.get("/v1/customers/c-1001/timeline", params={"type": "chat.message"},
                headers=AGENT)
    await c.get("/v1/customers/c-1001/export", headers=ADMIN)
    assert env.audit.flush()
    rows = env.db.all("SELECT * FROM access_log ORDER BY seq")
    assert len(rows) == 5
    text = repr(rows).lower()
    for secret in ("anna", "kovács", "example.com", "example.net", "3630", "+36", "email",
                   "phone", "?", "chat.message", "tok-"):
        assert secret not in text, secret
    assert {r[7] for r in rows} == {"c-1001", None}  # the unknown email resolves to nobody


async def test_a_failing_audit_never_breaks_the_request(env: Env) -> None:
    env.db.execute("DROP TABLE access_log")
    resp = await env.client.get("/v1/customers/c-1001", headers=AGENT)
    assert resp.status_code == 200 and resp.json()["name"] == NAME
    assert env.audit.flush()  # the write failed, was logged, and the writer goes on


async def test_the_timeline_pages_by_cursor_with_before_as_its_alias(env: Env) -> None:
    c = env.client
    path = "/v1/customers/c-1001/timeline"
    first = (await c.get(path, headers=AGENT, params={"limit": 50})).json()
    assert len(first["items"]) == 50 and first["next"]
    by_cursor = (await c.get(path, headers=AGENT, params={"limit": 50, "cursor": first["next"]})
                 ).json()
    by_before = (await c.get(path, headers=AGENT, params={"limit": 50, "before": first["next"]})
                 ).json()
    assert by_cursor == by_before and len(by_cursor["items"]) == 50
    seen = {i["event_id"] for i in first["items"]}
    assert not seen & {i["event_id"] for i in by_cursor["items"]}
    both = await c.get(path, headers=AGENT, params={"cursor": first["next"], "before": "x"})
    assert both.status_code == 400 and both.json()["error"]["code"] == "bad_query"
    bad = await c.get(path, headers=AGENT, params={"cursor": "not-one"})
    assert bad.status_code == 400 and bad.json()["error"]["message"].startswith("cursor:")
    unknown = await c.get(path, headers=AGENT, params={"page": "2"})
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "unknown_parameter"
    # as it stood before anything was received (this fixture's rows were received at 0 ms)
    before_all = await c.get(path, headers=AGENT, params={"as_of": "1969-12-31T23:59:59Z"})
    assert before_all.status_code == 200 and before_all.json()["items"] == []
    since_then = await c.get(path, headers=AGENT, params={"as_of": "1970-01-01T01:00:00+01:00"})
    assert len(since_then.json()["items"]) == 50
    for wrong in ("0", "", "2026-11-20T10:00:00", "yesterday"):  # not ISO 8601 with an offset
        resp = await c.get(path, headers=AGENT, params={"as_of": wrong})
        assert resp.status_code == 400 and resp.json()["error"]["code"] == "bad_query", wrong


async def test_an_unmerge_naming_what_no_store_can_keep_is_a_422(env: Env) -> None:
    """Found by schemathesis in CI: a member id holding U+0000 reached PostgreSQL (a 500)."""
    resp = await env.client.post("/v1/customers/c-1001/unmerge", headers=ADMIN,
                                 json={"member": "c-1\x00", "identifier": None})
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == "invalid_request"
    assert "NUL" in resp.json()["error"]["message"]
