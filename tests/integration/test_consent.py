"""Consent events through ingest -> real broker -> projector -> the customer view."""

from __future__ import annotations

from typing import Any

import pytest

from contactstream.adapters.config import Settings
from tests.helpers import envelope
from tests.integration.system import System

pytestmark = pytest.mark.integration


def consent(i: int, at: str, channel: str, granted: bool, source: str,
            via: str = "web", purpose: str = "marketing") -> dict[str, Any]:
    return envelope(i, type="consent.changed", occurred_at=at, source=source, channel=via,
                    customer={"id": "c-77", "email": "zsofia@example.com"}, queue=None,
                    payload={"channel": channel, "granted": granted, "purpose": purpose})


async def test_the_customer_view_shows_the_latest_consent_per_channel(
        settings: Settings) -> None:
    events = [
        consent(1, "2026-11-01T10:00:00+01:00", "email", True, "webform"),
        consent(2, "2026-11-01T10:00:05+01:00", "web", True, "webform"),
        # the withdrawal arrives first, the older grant after it: the later answer still wins
        consent(3, "2026-11-20T08:30:00+00:00", "email", False, "unsubscribe", via="email"),
        consent(4, "2026-11-10T12:00:00+01:00", "email", True, "crm", via="voice"),
        consent(5, "2026-11-12T09:00:00+01:00", "sms", False, "crm", purpose="service"),
    ]
    bad = consent(6, "2026-11-21T08:30:00+00:00", "email", "yes", "webform")  # type: ignore[arg-type]
    async with System(settings) as sys:
        body = (await sys.post([events[2], events[0], events[1], bad])).json()
        assert body["accepted"] == 3
        assert [r["index"] for r in body["rejected"]] == [3]
        assert "granted" in body["rejected"][0]["error"]
        assert (await sys.post(events[3:] + [events[2]])).json()["duplicates"] == 1
        await sys.wait_events(5)
        view = (await sys.get("/v1/customers/c-77")).json()
        assert view["consent"] == [
            {"channel": "email", "purpose": "marketing", "granted": False,
             "at": "2026-11-20T08:30:00+00:00", "source": "unsubscribe",
             "event_id": events[2]["event_id"]},
            {"channel": "sms", "purpose": "service", "granted": False,
             "at": "2026-11-12T09:00:00+01:00", "source": "crm",
             "event_id": events[4]["event_id"]},
            {"channel": "web", "purpose": "marketing", "granted": True,
             "at": "2026-11-01T10:00:05+01:00", "source": "webform",
             "event_id": events[1]["event_id"]},
        ]
        # the changes themselves stay in the timeline, granted as a JSON boolean
        page = (await sys.get("/v1/customers/c-77/timeline", type="consent.changed")).json()
        assert len(page["items"]) == 5
        assert {i["payload"]["granted"] for i in page["items"]} == {True, False}
        # a customer without any consent event has an empty block
        assert (await sys.post(envelope(7, customer={"id": "c-78"}))).json()["accepted"] == 1
        await sys.wait_events(6)
        assert (await sys.get("/v1/customers/c-78")).json()["consent"] == []
