"""Issue 10, "No input takes it down": hostile and malformed input through the whole HTTP
API (every route, the access audit, the erasure) on the real broker and database. Each
input gets a per-item rejection, a warning or a JSON 4xx with a reason; nothing answers a
bare 500, and a request answered 4xx publishes nothing."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from contactstream.adapters import runner
from contactstream.adapters.config import Settings
from tests.helpers import envelope
from tests.integration.system import System

pytestmark = pytest.mark.integration


class FullSystem(System):
    """The API as ``contactstream up`` serves it (runner.build_api), and the worker."""

    async def __aenter__(self) -> FullSystem:
        await super().__aenter__()
        await self.client.aclose()
        self.app, self.links, self.audit = runner.build_api(self.settings, self.api)
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app),
                                        base_url="http://test")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.app.state.api.listener.stop()
        await super().__aexit__(*exc)
        self.audit.close()
        self.links.close()

    async def post_raw(self, body: bytes | str, content_type: str = "application/json",
                       ) -> httpx.Response:
        return await self.client.post(
            "/v1/events", content=body.encode() if isinstance(body, str) else body,
            headers={**self.auth("publisher"), "Content-Type": content_type})


async def records_on_kafka(settings: Settings) -> int:
    """How many records the interactions topic holds (read from the start to the end)."""
    consumer = AIOKafkaConsumer(settings.interactions_topic, group_id=None,
                                bootstrap_servers=settings.bootstrap_servers,
                                auto_offset_reset="earliest")
    await consumer.start()
    seen, quiet = 0, 0
    try:
        while quiet < 5:
            batch = await consumer.getmany(timeout_ms=200)
            n = sum(len(records) for records in batch.values())
            seen, quiet = seen + n, 0 if n else quiet + 1
    finally:
        await consumer.stop()
    return seen


def is_error(resp: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The contract's error envelope, with ``status`` (and ``code``)."""
    assert resp.status_code == status, resp.text[:500]
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


def rejected(resp: httpx.Response) -> dict[int, str]:
    assert resp.status_code == 202, resp.text[:500]
    return {r["index"]: r["error"] for r in resp.json()["rejected"]}


# -- item 6: unhandled 500s ---------------------------------------------------------------
async def test_a_lone_surrogate_in_any_string_is_a_per_item_rejection(settings: Settings,
                                                                      ) -> None:
    async with FullSystem(settings) as sys:
        good = envelope(1)
        bad = [envelope(2, source="web\ud800form"),
               envelope(3, customer={"id": "c-1", "name": "Anna \udfff"}),
               envelope(4, payload={"category": "billing", "priority": "high",
                                    "description": "\ud800"}),
               envelope(5, payload={"category": "billing", "priority": "high",
                                    "description": "d", "note\ud800": 1})]
        # json.dumps writes each lone surrogate as the \\ud800 escape, as a client would
        resp = await sys.post_raw(json.dumps([good, *bad]))
        errors = rejected(resp)
        assert resp.json()["accepted"] == 1 and sorted(errors) == [1, 2, 3, 4]
        assert errors[1].startswith("source: contains a lone surrogate")
        assert errors[2].startswith("customer.name: contains a lone surrogate")
        assert errors[3].startswith("payload.description: contains a lone surrogate")
        assert errors[4].startswith("payload: a key contains a lone surrogate")
        await sys.wait_events(1)
        assert await records_on_kafka(settings) == 1


async def test_json_nested_too_deep_is_a_json_400_or_a_rejection(settings: Settings) -> None:
    async with FullSystem(settings) as sys:
        resp = await sys.post_raw("[" * 100_000 + "]" * 100_000)
        assert "nested too deeply" in is_error(resp, 400, "bad_json")["message"]
        deep = '{"x":' * 900 + "1" + "}" * 900  # parses, too deep for an envelope
        items = json.dumps([envelope(1), envelope(
            2, payload={"category": "b", "priority": "low", "description": "d", "deep": 0})])
        resp = await sys.post_raw(items.replace('"deep": 0', f'"deep": {deep}'))
        assert rejected(resp)[1].endswith(": nested deeper than 32 levels")
        assert resp.json()["accepted"] == 1
        # the unmerge takes a JSON body too
        resp = await sys.client.post("/v1/customers/c-1001/unmerge", content="[" * 100_000,
                                     headers=sys.auth("admin"))
        is_error(resp, 400, "bad_json")


async def test_an_event_too_big_for_a_record_is_refused_before_anything_is_produced(
        settings: Settings) -> None:
    async with FullSystem(settings) as sys:
        before = envelope(1)
        big = envelope(2, payload={"category": "billing", "priority": "high",
                                   "description": "x" * (7 * 1024 * 1024)})  # ~9.3 MiB sealed
        after = envelope(3)
        resp = await sys.post([before, big, after])
        errors = rejected(resp)
        assert list(errors) == [1] and "bytes on Kafka once encrypted" in errors[1]
        assert resp.json()["accepted"] == 2 and len(resp.content) < 500
        again = await sys.post([before, big, after])
        assert again.json() == {"accepted": 0, "duplicates": 2, "rejected": [
            {"index": 1, "error": errors[1]}]}
        await sys.wait_events(2)
        assert await records_on_kafka(settings) == 2
        page = (await sys.get("/v1/customers/c-1001/timeline")).json()
        assert {i["event_id"] for i in page["items"]} == {before["event_id"], after["event_id"]}


async def test_a_request_number_beyond_any_is_a_json_4xx(settings: Settings) -> None:
    async with FullSystem(settings) as sys:
        resp = await sys.get("/v1/identity/requests/99999999999999999999999", role="admin")
        assert "seq" in is_error(resp, 422, "invalid_request")["message"]
        is_error(await sys.get("/v1/identity/requests/0", role="admin"), 422)
        is_error(await sys.get("/v1/identity/requests/12", role="admin"), 404, "not_found")
        # cursors this API never issued, with numbers past PostgreSQL's bigint
        huge = "eyJvIjogOTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5fQ=="  # {"o": 999999999999999999999999}
        is_error(await sys.get("/v1/customers", cursor=huge), 400, "bad_cursor")


async def test_405_415_and_an_unexpected_500_use_the_error_envelope(settings: Settings,
                                                                    monkeypatch: Any) -> None:
    async with FullSystem(settings) as sys:
        is_error(await sys.client.delete("/v1/events", headers=sys.auth("publisher")), 405)
        is_error(await sys.client.put("/healthz"), 405)
        body = json.dumps([envelope(1)])
        is_error(await sys.post_raw(body, "text/plain"), 415, "unsupported_media_type")
        is_error(await sys.post_raw(body, "application/x-www-form-urlencoded"), 415)
        is_error(await sys.post_raw(body.encode("utf-16"), "application/json"), 415)
        is_error(await sys.post_raw(body.encode("utf-16"), "application/json; charset=utf-16"),
                 415)
        is_error(await sys.post_raw(body, "application/json; charset=latin-1"), 415)
        is_error(await sys.post_raw(body.encode(), ""), 415)
        ok = await sys.post_raw(body, "application/json; charset=UTF-8")
        assert ok.status_code == 202 and ok.json()["accepted"] == 1

        def broken(*_: Any, **__: Any) -> Any:
            raise RuntimeError("a bug")

        monkeypatch.setattr(sys.api.store, "resolve", broken)
        monkeypatch.setattr(sys.api.store, "subject", broken)  # the view's first read
        resp = await sys.get("/v1/customers/c-1001")
        assert is_error(resp, 500, "internal")["message"] == "an unexpected error; it was logged"
        # the next request on the same client is answered as usual
        assert (await sys.get("/v1/customers", role="agent")).status_code == 200
        await sys.wait_events(1)
        assert await records_on_kafka(settings) == 1  # the 415s published nothing


# -- item 7: length limits ------------------------------------------------------------------
async def test_megabyte_fields_are_refused_with_a_short_echo(settings: Settings) -> None:
    mb = "x" * 1_000_000
    async with FullSystem(settings) as sys:
        items = [envelope(0, event_id=mb), envelope(1, type=mb), envelope(2, source=mb),
                 envelope(3, queue=mb), envelope(4, agent_id=mb), envelope(5, case_id=mb),
                 envelope(6, customer={"id": mb}), envelope(7, customer={"id": "c", "name": mb}),
                 envelope(8, payload={"category": "b", "priority": "low", "description": "d",
                                      mb: 1}),
                 envelope(9, customer={"id": "c-1", mb: "x"})]
        resp = await sys.post(items)
        errors = rejected(resp)
        assert sorted(errors) == list(range(10))
        assert len(resp.content) < 4000, len(resp.content)
        assert errors[0] == "event_id: longer than 200 characters"
        assert errors[1] == "type: unknown event type '" + "x" * 40 + "'…"
        for i, key in [(2, "source"), (3, "queue"), (4, "agent_id"), (5, "case_id"),
                       (6, "customer.id")]:
            assert errors[i] == f"{key}: longer than 200 characters"
        assert errors[7] == "customer.name: longer than 300 characters"
        assert errors[8] == "payload: key '" + "x" * 40 + "'… longer than 64 characters"
        assert errors[9].startswith("customer." + "x" * 40 + "…: unknown field")
        assert await records_on_kafka(settings) == 0


# -- item 8: what was accepted but should not be ------------------------------------------
async def test_nan_currencies_negative_zero_and_bad_identifiers(settings: Settings) -> None:
    def purchase(i: int, **payload: Any) -> dict[str, Any]:
        return envelope(i, type="purchase.completed", customer={"id": "c-9"},
                        payload={"amount": "10.00", "currency": "EUR", "order_id": f"o-{i}",
                                 **payload})

    async with FullSystem(settings) as sys:
        body = json.dumps([purchase(0), purchase(1, extra=1.5), purchase(2, currency="ZZZ"),
                           purchase(3, amount="-0.00"), purchase(4, amount="12.50")])
        body = body.replace("1.5", "NaN")  # JSON has no NaN; Python's parser takes it
        errors = rejected(await sys.post_raw(body))
        assert errors == {
            1: "payload.extra: not a finite number (NaN and Infinity are not JSON)",
            2: "payload.currency: must be an ISO 4217 currency code, like EUR",
            3: 'payload.amount: must be a decimal string like "12.50": at least 0, less than'
               " 1,000,000,000,000, at most 4 decimals, no sign or exponent"}
        resp = await sys.post_raw(json.dumps([purchase(6, tip=1)]).replace("1}", "Infinity}"))
        assert "not a finite number" in rejected(resp)[0]

        # a bad identifier is dropped while a good one remains, with a warning
        anna = envelope(10, customer={"id": "c-1001", "email": "not-an-email", "phone": "abc",
                                      "visitor_id": "v-77"})
        lone = envelope(11, customer={"email": "not-an-email"})
        resp = await sys.post([anna, lone])
        body_ = resp.json()
        assert body_["accepted"] == 1
        assert body_["warnings"] == [{"index": 0, "warning":
                                      "customer.email: not an e-mail address (dropped; the"
                                      " event was accepted on the other identifiers); "
                                      "customer.phone: not a phone number (dropped; the event"
                                      " was accepted on the other identifiers)"}]
        assert rejected(resp) == {1: "customer.email: not an e-mail address; customer: needs"
                                     " at least one of id, email, phone, visitor_id"}
        await sys.wait_events(3)
        view = (await sys.get("/v1/customers/c-1001")).json()
        assert view["identifiers"].get("email", []) == []
        assert view["identifiers"].get("phone", []) == []
        assert view["identifiers"]["visitor_id"] == ["v-77"]
        # no warnings key when there is nothing to warn about (the v1 answer as it was)
        assert set((await sys.post(envelope(12))).json()) == {"accepted", "duplicates",
                                                               "rejected"}


# -- item 9: ids that could never be read back ----------------------------------------------
async def test_customer_ids_that_cannot_be_read_by_id_are_refused(settings: Settings) -> None:
    async with FullSystem(settings) as sys:
        ids = ["a/b", "..", ".", " c-1", "c-1 ", "c\n1"]
        resp = await sys.post([envelope(i, customer={"id": cid, "email": "a@example.com"})
                               for i, cid in enumerate(ids)] + [envelope(9)])
        errors = rejected(resp)
        assert errors == {0: "customer.id: must not contain '/'",
                          1: "customer.id: must not be '.' or '..'",
                          2: "customer.id: must not be '.' or '..'",
                          3: "customer.id: must not start or end with white space",
                          4: "customer.id: must not start or end with white space",
                          5: "customer.id: must not contain control characters"}
        await sys.wait_events(1)
        assert (await sys.get("/v1/customers/c-1001")).status_code == 200


async def test_an_unexpected_error_keeps_the_connection_over_real_http(
        settings: Settings, monkeypatch: Any) -> None:
    """Over uvicorn, as `up` serves it: a JSON 500, then the next request on the same
    keep-alive connection is answered (a raised error made the server close it)."""
    import asyncio
    import socket

    import uvicorn

    async with FullSystem(settings) as sys:
        def broken(*_: Any, **__: Any) -> Any:
            raise RuntimeError("a bug")

        monkeypatch.setattr(sys.api.store, "resolve", broken)
        monkeypatch.setattr(sys.api.store, "subject", broken)  # the view's first read
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(sys.app, log_level="critical", lifespan="off"))
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            while not server.started:
                await asyncio.sleep(0.02)
            reader, writer = await asyncio.open_connection(*sock.getsockname())
            token = sys.tokens["agent"]
            answers = []
            for path in ("/v1/customers/c-1001", "/healthz"):
                writer.write(f"GET {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer"
                             f" {token}\r\n\r\n".encode())
                await writer.drain()
                head = (await reader.readuntil(b"\r\n\r\n")).decode()
                length = int(head.lower().split("content-length:")[1].split("\r\n")[0])
                answers.append((head.split(" ")[1], await reader.readexactly(length), head))
            writer.close()
            (s1, b1, h1), (s2, b2, _) = answers
            assert s1 == "500" and "application/json" in h1.lower()
            assert json.loads(b1) == {"error": {"code": "internal",
                                                "message": "an unexpected error; it was logged"}}
            assert s2 == "200" and json.loads(b2) == {"status": "ok"}
        finally:
            server.should_exit = True
            await serving
