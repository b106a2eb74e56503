"""Webhooks against a real local HTTP server: signature, a retry after a 500, kinds, give-up."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from contactstream.adapters.control import ControlStore, NewAlert
from contactstream.adapters.crypto import CryptoError, SecretBox
from contactstream.adapters.database import Database
from contactstream.streams.webhooks import DELIVERIES, WebhookDispatcher, sign

pytestmark = pytest.mark.integration

SECRET = "s3cret-ä"


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1; `statuses` says what each POST is answered."""

    statuses: Callable[[int], int]
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def receiver() -> Iterator[Callable[[Callable[[int], int]], Receiver]]:
    servers: list[ThreadingHTTPServer] = []

    def start(statuses: Callable[[int], int]) -> Receiver:
        rec = Receiver(statuses)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                rec.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(rec.statuses(len(rec.requests)))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        rec.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        return rec

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def alert(i: int, kind: str = "sla.breached") -> NewAlert:
    return NewAlert(id=f"case-{i}:first_response#1:{kind}", kind=kind,
                    at=f"2026-11-22T09:{i:02d}:00+00:00", level="critical", case_id=f"case-{i}",
                    customer_id="c-1", metric="first_response",
                    due_at=f"2026-11-22T09:{i:02d}:00+00:00", detail={"priority": "high"})


async def until(check: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def counter(outcome: str) -> float:
    return DELIVERIES.labels(outcome)._value.get()


async def test_a_500_is_retried_and_the_signed_alert_arrives(
        db: Database, receiver: Callable[[Callable[[int], int]], Receiver]) -> None:
    control = ControlStore(db, SecretBox(os.urandom(32)))
    rec = receiver(lambda n: 500 if n == 1 else 200)
    control.put_webhook("ops", {"url": rec.url, "secret": SECRET, "kinds": ["sla.breached"]})
    stored = db.scalar("SELECT body::text FROM webhooks WHERE name='ops'")
    assert SECRET not in stored and '"secret": "encs1:' in stored  # sealed at rest
    seq = control.add_alert(alert(1))
    retried = counter("retried")
    dispatcher = WebhookDispatcher(control, backoff_s=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    try:
        await until(lambda: control.position("webhook:ops") == seq)
        assert len(rec.requests) == 2  # the 500, then the retry that got 200
        headers, body = rec.requests[-1]
        expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert headers["x-contactstream-signature"] == f"sha256={expected}"
        assert headers["x-contactstream-signature"] == sign(SECRET, body)
        assert headers["content-type"] == "application/json"
        sent = json.loads(body)
        assert headers["x-contactstream-alert-id"] == sent["id"] == alert(1).id
        assert sent["kind"] == "sla.breached" and sent["case_id"] == "case-1"
        assert sent["due_at"] == alert(1).due_at and sent["seq"] == seq
        assert counter("retried") == retried + 1

        # a kind the webhook does not subscribe to is skipped, the position still moves on
        skipped = control.add_alert(alert(2, kind="escalation.repeat_complaint"))
        wanted = control.add_alert(alert(3))
        dispatcher.notify()
        await until(lambda: control.position("webhook:ops") == wanted)
        assert skipped is not None and skipped < wanted
        assert [json.loads(b)["id"] for _, b in rec.requests[2:]] == [alert(3).id]
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_a_permanently_failing_endpoint_is_given_up_on_and_the_next_alert_goes(
        db: Database, receiver: Callable[[Callable[[int], int]], Receiver]) -> None:
    control = ControlStore(db)
    bad = receiver(lambda n: 500)
    good = receiver(lambda n: 200)
    control.put_webhook("bad", {"url": bad.url, "secret": SECRET, "kinds": []})
    control.put_webhook("good", {"url": good.url, "secret": "other", "kinds": []})
    failed = counter("failed")
    first = control.add_alert(alert(1))
    second = control.add_alert(alert(2, kind="escalation.low_satisfaction"))
    stop = asyncio.Event()
    task = asyncio.create_task(WebhookDispatcher(control, retries=2, backoff_s=0.01).run(stop))
    try:
        await until(lambda: control.position("webhook:bad") == second)
        await until(lambda: control.position("webhook:good") == second)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    assert len(bad.requests) == 6  # two alerts, each tried 1 + 2 times
    failures = control.db.all(
        "SELECT webhook, alert_seq, error FROM webhook_failures ORDER BY alert_seq")
    assert [(w, s) for w, s, _ in failures] == [("bad", first), ("bad", second)]
    assert "HTTP 500" in failures[0][2]
    assert counter("failed") == failed + 2
    # the healthy webhook was not held up by the failing one
    assert [json.loads(b)["seq"] for _, b in good.requests] == [first, second]


async def test_a_4xx_is_not_retried_and_a_new_webhook_is_picked_up(
        db: Database, receiver: Callable[[Callable[[int], int]], Receiver]) -> None:
    control = ControlStore(db)
    stop = asyncio.Event()
    task = asyncio.create_task(WebhookDispatcher(control, backoff_s=0.01).run(stop))
    try:
        await asyncio.sleep(0.1)
        gone = receiver(lambda n: 410)
        control.put_webhook("gone", {"url": gone.url, "secret": SECRET, "kinds": []})
        await asyncio.sleep(1.3)  # the dispatcher re-reads the webhooks every second
        seq = control.add_alert(alert(1))
        await until(lambda: control.position("webhook:gone") == seq)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    assert len(gone.requests) == 1
    assert control.db.scalar("SELECT error FROM webhook_failures").startswith("HTTP 410")


def test_secrets_stored_in_the_clear_are_sealed_and_still_sign(db: Database) -> None:
    """A webhook registered before secrets were sealed (issue 10, item 11)."""
    ControlStore(db).put_webhook("old", {"url": "http://127.0.0.1:9/", "secret": SECRET,
                                         "kinds": []})
    assert SECRET in db.scalar("SELECT body::text FROM webhooks WHERE name='old'")
    master = os.urandom(32)
    control = ControlStore(db, SecretBox(master))
    assert control.seal_webhook_secrets() == 1
    assert control.seal_webhook_secrets() == 0
    assert SECRET not in db.scalar("SELECT body::text FROM webhooks WHERE name='old'")
    assert control.webhooks()["old"]["secret"] == SECRET
    with pytest.raises(CryptoError, match="does not open"):
        ControlStore(db, SecretBox(os.urandom(32))).webhooks()
