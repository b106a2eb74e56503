"""The consent fold: the latest answer per channel and purpose, whatever the order."""

from __future__ import annotations

import itertools
import json
import random
from typing import Any

from contactstream.projections.consent import current_consent


def row(eid: str, ms: int, channel: str, granted: bool, purpose: str = "marketing",
        source: str = "webform", as_json: bool = True) -> dict[str, Any]:
    payload = {"channel": channel, "granted": granted, "purpose": purpose}
    return {"event_id": eid, "occurred_ms": ms, "occurred_at": f"at-{ms}", "source": source,
            "payload": json.dumps(payload) if as_json else payload}


ROWS = [
    row("e1", 1_000, "email", True),
    row("e2", 2_000, "web", True),
    row("e3", 3_000, "email", False, source="unsubscribe"),
    row("e4", 1_500, "sms", True, purpose="service"),
    row("e5", 500, "sms", False, purpose="marketing", as_json=False),
]
EXPECTED = [
    {"channel": "email", "purpose": "marketing", "granted": False, "at": "at-3000",
     "source": "unsubscribe", "event_id": "e3"},
    {"channel": "sms", "purpose": "marketing", "granted": False, "at": "at-500",
     "source": "webform", "event_id": "e5"},
    {"channel": "sms", "purpose": "service", "granted": True, "at": "at-1500",
     "source": "webform", "event_id": "e4"},
    {"channel": "web", "purpose": "marketing", "granted": True, "at": "at-2000",
     "source": "webform", "event_id": "e2"},
]


def test_nothing_known_is_an_empty_list() -> None:
    assert current_consent([]) == []


def test_latest_wins_per_channel_and_purpose_in_any_order() -> None:
    for perm in itertools.permutations(ROWS):
        assert current_consent(perm) == EXPECTED


def test_duplicates_are_harmless() -> None:
    rng = random.Random(3)
    for _ in range(50):
        rows = ROWS * 3
        rng.shuffle(rows)
        assert current_consent(rows) == EXPECTED


def test_withdrawn_consent_shows_false_with_its_time_and_source() -> None:
    out = current_consent([row("a", 10, "email", True),
                           row("b", 20, "email", False, source="unsubscribe")])
    assert out == [{"channel": "email", "purpose": "marketing", "granted": False,
                    "at": "at-20", "source": "unsubscribe", "event_id": "b"}]


def test_granted_again_after_withdrawal() -> None:
    out = current_consent([row("a", 10, "email", True), row("b", 20, "email", False),
                           row("c", 30, "email", True, source="crm")])
    assert [(i["granted"], i["source"], i["event_id"]) for i in out] == [(True, "crm", "c")]


def test_a_tie_on_time_is_broken_by_event_id_whatever_the_order() -> None:
    a, b = row("x-1", 10, "email", True), row("x-2", 10, "email", False)
    assert current_consent([a, b]) == current_consent([b, a])
    assert current_consent([a, b])[0]["event_id"] == "x-2"


def test_purposes_of_one_channel_are_kept_apart() -> None:
    out = current_consent([row("a", 10, "email", True, purpose="marketing"),
                           row("b", 20, "email", False, purpose="profiling")])
    assert [(i["purpose"], i["granted"]) for i in out] == [("marketing", True),
                                                           ("profiling", False)]


def test_a_malformed_row_is_skipped() -> None:
    bad = row("z", 99, "email", True)
    bad["payload"] = json.dumps({"channel": "email", "granted": "yes", "purpose": "marketing"})
    assert current_consent([*ROWS, bad]) == EXPECTED
