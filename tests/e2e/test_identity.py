"""One customer, once: the same person reaching us by phone, email and web ends as one
customer with one timeline; an unmerge restores both; two customer ids never merge."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.system import Up
from tests.helpers import eventually

pytestmark = pytest.mark.e2e

PHONE, EMAIL, VISITOR = "+36 30 111 2222", "Kata.Kiss@example.hu", "v-kata-1"


def _env(type_: str, customer: dict[str, str], channel: str, minute: int,
         payload: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "type": type_,
            "occurred_at": f"2026-11-20T10:{minute:02d}:00+01:00", "source": "test",
            "customer": customer, "channel": channel, "payload": payload}


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    with Up(tmp_path_factory.mktemp("identity") / "data").start() as system:
        yield system


def _publish(up: Up, *events: dict[str, Any]) -> None:
    with up.client("publisher") as pub:
        for e in events:  # one at a time: each arrives after the previous is known
            assert pub.post("/v1/events", json=e).json()["accepted"] == 1


def _id(up: Up, **ident: str) -> str | None:
    resp = up.get("/v1/customers/lookup", **ident)
    return resp.json()["id"] if resp.status_code == 200 else None


def test_call_email_and_web_become_one_customer_then_an_unmerge_restores_both(up: Up) -> None:
    _publish(
        up,
        _env("call.started", {"phone": PHONE}, "voice", 1, {"direction": "inbound"}),
        _env("email.received", {"email": EMAIL, "name": "Kiss Katalin"}, "email", 2,
             {"subject": "Számla", "body": "Kérdésem van"}),
        _env("web.visit", {"visitor_id": VISITOR}, "web", 3, {"url": "https://shop/a"}),
    )
    # three strangers so far
    eventually(lambda: _id(up, visitor_id=VISITOR) is not None)
    assert len({_id(up, phone=PHONE), _id(up, email=EMAIL), _id(up, visitor_id=VISITOR)}) == 3
    # the visitor logs in with the email; later a call gives phone and email together
    _publish(
        up,
        _env("web.visit", {"visitor_id": VISITOR, "email": EMAIL}, "web", 4,
             {"url": "https://shop/account"}),
        _env("call.ended", {"phone": PHONE, "email": EMAIL}, "voice", 5,
             {"direction": "inbound", "outcome": "answered", "duration_s": 60, "wait_s": 5}),
    )
    one = eventually(lambda: (ids := {_id(up, phone=PHONE), _id(up, email=EMAIL),
                                      _id(up, visitor_id=VISITOR)}) and len(ids) == 1
                     and next(iter(ids)))
    view = up.get(f"/v1/customers/{one}").json()
    assert view["interaction_counts"] == {"voice": 2, "email": 1, "web": 2}
    assert view["name"] == "Kiss Katalin"
    assert view["identifiers"]["phone"] == ["+36301112222"]
    assert view["identifiers"]["email"] == ["kata.kiss@example.hu"]
    timeline = up.get(f"/v1/customers/{one}/timeline", type="call.started,call.ended,"
                      "email.received,web.visit").json()["items"]
    assert len(timeline) == 5
    history = up.get(f"/v1/customers/{one}/identity", role="supervisor").json()
    assert len(history["members"]) >= 3
    assert any(h["action"] == "merged" for h in history["history"])

    # a wrong merge: the phone belonged to someone else
    with up.client("admin") as admin:
        resp = admin.post(f"/v1/customers/{one}/unmerge",
                          json={"identifier": {"phone": PHONE}, "reason": "ticket 42"})
    assert resp.status_code == 202, resp.text
    seq = resp.json()["request"]
    eventually(lambda: up.get(f"/v1/identity/requests/{seq}", role="admin").json()["status"]
               == "done")
    phone_owner = eventually(lambda: (p := _id(up, phone=PHONE)) != _id(up, email=EMAIL)
                             and p)
    email_owner = _id(up, email=EMAIL)
    assert _id(up, visitor_id=VISITOR) == email_owner
    assert up.get(f"/v1/customers/{phone_owner}").json()["interaction_counts"] == {"voice": 1}
    assert up.get(f"/v1/customers/{email_owner}").json()["interaction_counts"] == {
        "voice": 1, "email": 1, "web": 2}
    # and they stay apart when both are named again
    _publish(up, _env("call.started", {"phone": PHONE, "email": EMAIL}, "voice", 6,
                      {"direction": "inbound"}))
    eventually(lambda: up.get(f"/v1/customers/{email_owner}").json()[
        "interaction_counts"].get("voice") == 2)
    assert _id(up, phone=PHONE) != _id(up, email=EMAIL)
    unmerged = up.get(f"/v1/customers/{email_owner}/identity", role="supervisor").json()
    assert not [m for m in unmerged["members"] if m == phone_owner]


def test_two_customer_ids_are_never_merged(up: Up) -> None:
    shared = "shared.desk@example.hu"
    _publish(
        up,
        _env("email.received", {"id": "c-first", "email": shared}, "email", 10,
             {"subject": "a"}),
        _env("email.received", {"id": "c-second", "email": shared}, "email", 11,
             {"subject": "b"}),
    )
    eventually(lambda: up.get("/v1/customers/c-second").status_code == 200)
    assert _id(up, id="c-first") == "c-first" and _id(up, id="c-second") == "c-second"
    assert _id(up, email=shared) == "c-first"  # the earlier claim keeps the email
    assert up.get("/v1/customers/c-first").json()["interaction_counts"] == {"email": 1}
    assert up.get("/v1/customers/c-second").json()["interaction_counts"] == {"email": 1}
