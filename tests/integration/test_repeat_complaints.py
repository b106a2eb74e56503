"""The repeat-complaint escalation depends on the complaints, not on their arrival order."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contactstream.adapters.control import ControlStore
from contactstream.adapters.database import Database
from contactstream.streams.sla import Escalations, ManualClock

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 1, tzinfo=UTC)


def escalations(db: Database, days: list[tuple[int, float]]) -> dict[str, str | None]:
    """The complaints that escalate when these arrive in this order, on an empty store,
    each with the case its alert names. Complaint ``i`` is about case ``case-<i>``."""
    db.execute("TRUNCATE complaints, alerts")
    control = ControlStore(db)
    esc = Escalations(control, ManualClock(START))
    for i, day in days:
        esc.handle("c-1", {"event_id": f"cmp-{i}", "type": "complaint.filed",
                           "occurred_at": (START + timedelta(days=day)).isoformat(),
                           "case_id": f"case-{i}", "payload": {}})
    return {a["id"].rsplit(":", 1)[1]: a["case_id"] for a in control.alerts(limit=1000)
            if a["kind"] == "escalation.repeat_complaint"}


def escalated(db: Database, days: list[tuple[int, float]]) -> set[str]:
    return set(escalations(db, days))


def test_the_third_complaint_in_30_days_and_every_further_one_escalate(db: Database) -> None:
    assert escalated(db, list(enumerate([0, 10, 25]))) == {"cmp-2"}
    assert escalated(db, list(enumerate([0, 10, 25, 26]))) == {"cmp-2", "cmp-3"}
    assert escalated(db, list(enumerate([0, 31, 62]))) == set()


def test_a_late_complaint_gives_the_same_alerts_as_in_order(db: Database) -> None:
    days = [0, 1, 2, 0.5]  # the fourth (at day 0.5) arrives last
    in_order = sorted(enumerate(days), key=lambda x: x[1])
    assert escalations(db, list(enumerate(days))) == escalations(db, in_order) == {
        "cmp-1": "case-1", "cmp-2": "case-2"}


def test_an_escalation_names_the_case_of_the_complaint_it_is_about(db: Database) -> None:
    # the complaint of day 5 arrives last: it makes the one of day 10 the third in its 30
    # days, and that one's alert is about that one's case, not the late complaint's
    assert escalations(db, [(0, 0), (1, 10), (2, 5)]) == {"cmp-1": "case-1"}
    assert escalations(db, [(0, 0), (2, 5), (1, 10)]) == {"cmp-1": "case-1"}  # in order


# the store is emptied at the start of every example (escalated)
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(0, 90), min_size=1, max_size=7), st.randoms())
def test_any_arrival_order_gives_the_same_escalations(db: Database, days: list[int],
                                                     rnd: object) -> None:
    events = list(enumerate(days))
    shuffled = events[:]
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    # the same complaints escalate, each alert naming the same case, whatever the order
    assert escalations(db, events) == escalations(db, shuffled) == escalations(
        db, list(itertools.chain(shuffled, shuffled)))  # and duplicates change nothing


def _alerts_in_batches(db: Database, days: list[tuple[int, float]], size: int,
                       ) -> list[tuple[str, str, dict[str, str]]]:
    """The repeat-complaint alerts (id, case, detail) when the complaints arrive in this
    order, handled ``size`` at a time as the case stage does (one transaction, the
    history read once, the complaints recorded together); size 0: one by one."""
    db.execute("TRUNCATE complaints, alerts")
    control = ControlStore(db)
    esc = Escalations(control, ManualClock(START))
    envs = [("c-1", {"event_id": f"cmp-{i}", "type": "complaint.filed",
                     "occurred_at": (START + timedelta(days=day)).isoformat(),
                     "case_id": f"case-{i}", "payload": {}}) for i, day in days]
    if size == 0:
        for customer, env in envs:
            esc.handle(customer, env)
    for start in range(0, len(envs) if size else 0, size or 1):
        chunk = envs[start:start + size]
        with control.batch(), esc.batch(chunk):
            for customer, env in chunk:
                esc.handle(customer, env)
    return [(a["id"], a["case_id"], a["detail"]) for a in control.alerts(limit=1000)
            if a["kind"] == "escalation.repeat_complaint"]


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(0, 60), min_size=1, max_size=8), st.integers(1, 5), st.randoms())
def test_batches_give_the_alerts_one_by_one_gives_with_their_details(
        db: Database, days: list[int], size: int, rnd: object) -> None:
    events = list(enumerate(days))
    rnd.shuffle(events)  # type: ignore[attr-defined]
    events += events[:2]  # a redelivery or two
    one_by_one = _alerts_in_batches(db, events, 0)
    # the same alerts in the same order, each with the same count and first complaint
    assert _alerts_in_batches(db, events, size) == one_by_one
    assert db.scalar("SELECT count(*) FROM complaints") == len({i for i, _ in events})


def test_a_complaint_seen_again_under_another_customer_counts_once_in_a_batch(
        db: Database) -> None:
    """The log keeps a complaint id once, whoever it came under (a merge or an erasure
    renames the customer): handled again under another customer it adds nothing, in a
    batch as alone."""
    def complaint(customer: str, event_id: str, day: int) -> tuple[str, dict[str, Any]]:
        return customer, {"event_id": event_id, "type": "complaint.filed",
                          "occurred_at": (START + timedelta(days=day)).isoformat(),
                          "case_id": None, "payload": {}}

    stream = [complaint("c-b", "e2", 1), complaint("c-b", "e3", 2), complaint("c-b", "e1", 0)]
    found = []
    for size in (0, 3):
        db.execute("TRUNCATE complaints, alerts")
        control = ControlStore(db)
        esc = Escalations(control, ManualClock(START))
        esc.handle(*complaint("c-a", "e1", 0))  # before: recorded under another customer
        if size == 0:
            for customer, env in stream:
                esc.handle(customer, env)
        else:
            with control.batch(), esc.batch(stream):
                for customer, env in stream:
                    esc.handle(customer, env)
        found.append([a["id"] for a in control.alerts(limit=100)])
    assert found == [[], []]
