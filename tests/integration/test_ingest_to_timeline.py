"""Ingest over the real HTTP app -> real broker -> projector -> read store -> agent's view."""

from __future__ import annotations

import asyncio

import pytest

from contactstream.adapters.config import Settings
from tests.helpers import envelope
from tests.integration.system import System

pytestmark = pytest.mark.integration


async def test_a_batch_with_good_and_bad_items_accepts_the_good_ones(settings: Settings) -> None:
    async with System(settings) as sys:
        good1, good2 = envelope(1), envelope(2, type="call.ended", channel="voice",
                                             payload={"direction": "inbound",
                                                      "outcome": "answered",
                                                      "duration_s": 120, "wait_s": 15})
        bad_type = envelope(3, type="fax.received")
        no_customer = envelope(4, customer={"name": "Nobody"})
        bad_priority = envelope(5, payload={"category": "x", "priority": "asap",
                                            "description": "d"})
        resp = await sys.post([good1, bad_type, good2, no_customer, bad_priority, "nonsense"])
        assert resp.status_code == 202
        body = resp.json()
        assert body["accepted"] == 2 and body["duplicates"] == 0
        rejected = {r["index"]: r["error"] for r in body["rejected"]}
        assert set(rejected) == {1, 3, 4, 5}
        assert "type" in rejected[1] and "customer" in rejected[3]
        assert "priority" in rejected[4]
        await sys.wait_events(2)
        page = (await sys.get("/v1/customers/c-1001/timeline")).json()
        assert [i["event_id"] for i in page["items"]] == [good2["event_id"], good1["event_id"]]


async def test_duplicates_are_counted_once(settings: Settings) -> None:
    async with System(settings) as sys:
        e = envelope(7)
        first = (await sys.post([e, e])).json()
        assert (first["accepted"], first["duplicates"]) == (1, 1)
        again = (await sys.post(e)).json()
        assert (again["accepted"], again["duplicates"]) == (0, 1)
        concurrent = envelope(8)
        results = await asyncio.gather(*(sys.post(concurrent) for _ in range(5)))
        assert sum(r.json()["accepted"] for r in results) == 1
        await sys.wait_events(2)
        await asyncio.sleep(0.3)
        view = (await sys.get("/v1/customers/c-1001")).json()
        assert view["interaction_counts"] == {"web": 2}


async def test_more_than_1000_items_is_413(settings: Settings) -> None:
    async with System(settings) as sys:
        resp = await sys.post([envelope(i) for i in range(1001)])
        assert resp.status_code == 413
        assert resp.json()["error"]["code"] == "too_many"


async def test_agents_view_lookup_filters_paging_and_unicode(settings: Settings) -> None:
    async with System(settings) as sys:
        names = {"hu": "Kovács Anna Éva", "fa": "مریم احمدی", "zh": "王芳"}
        events = [
            envelope(1, customer={"id": "c-1", "email": " Maryam@Example.IR", "name": names["fa"]},
                     type="email.received", channel="email",
                     payload={"subject": "سلام", "body": "صورتحساب من دو بار پرداخت شد"},
                     occurred_at="2026-11-20T10:00:00+03:30"),
            envelope(2, customer={"id": "c-1", "phone": "06 30 123 4567"}, type="call.started",
                     channel="voice", payload={"direction": "inbound"},
                     occurred_at="2026-11-21T08:00:00+01:00"),
            envelope(3, customer={"visitor_id": "v-9", "email": "maryam@example.ir"},
                     type="web.visit", channel="web", payload={"url": "https://x.example/ár"},
                     occurred_at="2026-11-22T08:00:00+00:00"),
            envelope(4, customer={"id": "c-2", "name": names["zh"]}, type="chat.message",
                     channel="chat", payload={"direction": "inbound", "text": "我的订单在哪里？"},
                     occurred_at="2026-11-22T09:00:00+08:00"),
        ]
        # the web visit comes once the email is known to belong to c-1: which customer an
        # earlier anonymous visit belongs to is identity resolution's job (merging)
        assert (await sys.post(events[:2] + events[3:])).json()["accepted"] == 3
        await sys.wait_events(3)
        assert (await sys.post(events[2])).json()["accepted"] == 1
        await sys.wait_events(4)
        assert (await sys.get("/v1/customers/lookup", email="MARYAM@example.ir ")).json() == {
            "id": "c-1"}
        assert (await sys.get("/v1/customers/lookup", phone="+36 30 123 4567")).json() == {
            "id": "c-1"}
        assert (await sys.get("/v1/customers/lookup", visitor_id="v-9")).json() == {"id": "c-1"}
        assert (await sys.get("/v1/customers/lookup", email="nobody@x.y")).status_code == 404
        view = (await sys.get("/v1/customers/c-1")).json()
        assert view["name"] == names["fa"]
        assert view["interaction_counts"] == {"email": 1, "voice": 1, "web": 1}
        assert view["last_contact_at"] == "2026-11-22T08:00:00+00:00"
        assert view["identifiers"]["phone"] == ["+36301234567"]
        page1 = (await sys.get("/v1/customers/c-1/timeline", limit=2)).json()
        assert [i["type"] for i in page1["items"]] == ["web.visit", "call.started"]
        page2 = (await sys.get("/v1/customers/c-1/timeline", limit=2,
                               before=page1["next"])).json()
        assert [i["type"] for i in page2["items"]] == ["email.received"]
        assert page2["next"] is None
        assert page2["items"][0]["payload"]["body"] == "صورتحساب من دو بار پرداخت شد"
        only_voice = (await sys.get("/v1/customers/c-1/timeline", channel="voice")).json()
        assert [i["type"] for i in only_voice["items"]] == ["call.started"]
        by_type = (await sys.get("/v1/customers/c-1/timeline", type="web.visit")).json()
        assert len(by_type["items"]) == 1
        chat = (await sys.get("/v1/customers/c-2/timeline")).json()["items"][0]
        assert chat["payload"]["text"] == "我的订单在哪里？"
        assert (await sys.get("/v1/customers/c-2")).json()["name"] == names["zh"]
        assert (await sys.get("/v1/customers/nope")).status_code == 404


async def test_roles_401_and_403(settings: Settings) -> None:
    async with System(settings) as sys:
        c = sys.client
        assert (await c.post("/v1/events", json=envelope(1))).status_code == 401
        bad = {"Authorization": "Bearer not-a-token"}
        assert (await c.get("/v1/customers/lookup?id=x", headers=bad)).status_code == 401
        for role in ("agent", "supervisor"):
            resp = await sys.post(envelope(1), role=role)
            assert resp.status_code == 403 and resp.json()["error"]["code"] == "forbidden"
        assert (await sys.get("/v1/customers/lookup", role="publisher", id="x")).status_code == 403
        assert (await sys.post(envelope(2), role="admin")).status_code == 202
        for role in ("agent", "supervisor", "admin"):
            assert (await sys.get("/v1/customers/lookup", role=role, id="x")).status_code == 404
        for path in ("/healthz", "/readyz", "/openapi.json", "/docs", "/metrics"):
            assert (await c.get(path)).status_code == 200, path
        spec = (await c.get("/openapi.json")).json()
        for path in ("/v1/events", "/v1/customers/lookup", "/v1/customers/{customer_id}",
                     "/v1/customers/{customer_id}/timeline"):
            assert path in spec["paths"]


async def test_while_the_broker_is_down_ingest_is_503_at_once_and_reads_go_on(
        settings: Settings) -> None:
    """Issue 10, item 4: `up` marks the broker down while it restarts it."""
    up = [True]
    async with System(settings, kafka_up=lambda: up[0]) as sys:
        assert (await sys.post([envelope(1, customer={"id": "c-k"})])).status_code == 202
        await sys.wait_events(1)
        journaled = sys.api.db.scalar("SELECT COUNT(*) FROM ingest_journal")
        up[0] = False
        refused = await sys.post([envelope(2, customer={"id": "c-k"})])
        assert refused.status_code == 503
        # refused before any produce (not after a produce timed out): nothing journaled
        assert refused.json()["error"] == {
            "code": "broker_unavailable",
            "message": "Kafka is not reachable; nothing was accepted, retry"}
        assert refused.headers["retry-after"] == "1"
        assert sys.api.db.scalar("SELECT COUNT(*) FROM ingest_journal") == journaled
        assert (await sys.get("/v1/customers/c-k")).status_code == 200
        up[0] = True
        assert (await sys.post([envelope(2, customer={"id": "c-k"})])).json()["accepted"] == 1
