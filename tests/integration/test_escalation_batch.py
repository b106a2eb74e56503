"""A batch's escalation alerts are added together at its end, in the order raised, each
once, and only if the batch's transaction commits."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from contactstream.adapters.control import ControlStore
from contactstream.adapters.database import Database
from contactstream.domain import sla
from contactstream.streams.sla import Escalations, ManualClock

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 1, tzinfo=UTC)


def survey(event_id: str, score: int, kind: str = "csat") -> tuple[str, dict[str, Any]]:
    return "c-1", {"event_id": event_id, "type": "survey.answered",
                   "occurred_at": START.isoformat(), "case_id": None, "agent_id": "a-1",
                   "queue": "billing", "payload": {"kind": kind, "score": score}}


def low_satisfaction_ids(control: ControlStore) -> list[str]:
    return [a["id"] for a in control.alerts(limit=100)
            if a["kind"] == sla.LOW_SATISFACTION]


def test_a_batch_adds_its_alerts_at_its_end_in_order_each_once(db: Database) -> None:
    db.execute("TRUNCATE alerts")
    control = ControlStore(db)
    esc = Escalations(control, ManualClock(START))
    esc.handle(*survey("s-known", 1))  # alone: added at once
    assert low_satisfaction_ids(control) == [f"{sla.LOW_SATISFACTION}:s-known"]
    esc.raised = False
    batch = [survey("s-2", 2), survey("s-ok", 5), survey("s-known", 1),
             survey("s-1", 0, "nps"), survey("s-2", 2)]  # a redelivery within the batch
    with control.batch(), esc.batch(batch):
        for customer, env in batch:
            esc.handle(customer, env)
        # raised only once the batch added them
        assert not esc.raised
        assert low_satisfaction_ids(control) == [f"{sla.LOW_SATISFACTION}:s-known"]
    assert esc.raised
    assert low_satisfaction_ids(control) == [f"{sla.LOW_SATISFACTION}:{e}"
                                             for e in ("s-known", "s-2", "s-1")]


def test_a_batch_of_known_alerts_raises_nothing(db: Database) -> None:
    db.execute("TRUNCATE alerts")
    control = ControlStore(db)
    esc = Escalations(control, ManualClock(START))
    esc.handle(*survey("s-1", 1))
    esc.raised = False
    with control.batch(), esc.batch([survey("s-1", 1)]):
        esc.handle(*survey("s-1", 1))
    assert not esc.raised
    assert len(low_satisfaction_ids(control)) == 1


def test_a_failed_batch_adds_no_alert_and_leaves_nothing_for_the_next(db: Database) -> None:
    db.execute("TRUNCATE alerts")
    control = ControlStore(db)
    esc = Escalations(control, ManualClock(START))
    with pytest.raises(RuntimeError), control.batch(), esc.batch([survey("s-1", 1)]):
        esc.handle(*survey("s-1", 1))
        raise RuntimeError("the batch fails before its end")
    assert low_satisfaction_ids(control) == []
    assert not esc.raised
    esc.handle(*survey("s-2", 1))  # after it, alone: added at once
    assert low_satisfaction_ids(control) == [f"{sla.LOW_SATISFACTION}:s-2"]
    assert esc.raised
