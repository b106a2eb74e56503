"""Stories of cases and their SLA clocks, on the real case store and control store
(SQLite), with a clock the test drives."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contactstream.adapters.caseservice import CaseService, case_app
from contactstream.adapters.control import ControlStore
from contactstream.adapters.database import Database
from contactstream.domain.calendars import BusinessCalendar
from contactstream.domain.sla import SlaPolicy
from contactstream.streams.sla import Escalations, ManualClock, SlaScheduler

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # a Monday


class Desk:
    """A contact centre desk: interactions come in, agents act, the supervisor watches."""

    def __init__(self, database_url: str, clock: ManualClock) -> None:
        self.clock = clock
        self.db = Database(database_url)
        self.control = ControlStore(self.db)
        self.cases = CaseService(case_app(database_url), self.control, clock.now)
        self.scheduler = SlaScheduler(self.cases, self.control, clock)
        self.escalations = Escalations(self.control, clock)

    def policy(self, name: str, **body: Any) -> None:
        self.control.put_policy(SlaPolicy.from_json(name, body))

    async def receive(self, customer: str, type: str, at: datetime | None = None,
                      **fields: Any) -> str | None:
        env = {"event_id": fields.pop("event_id", str(uuid.uuid4())), "type": type,
               "occurred_at": (at or self.clock.now()).isoformat(), "source": "test",
               "customer": {"id": customer}, "channel": fields.pop("channel", "email"),
               "agent_id": fields.pop("agent_id", None), "queue": "billing",
               "case_id": fields.pop("case_id", None), "payload": fields}
        self.escalations.handle(customer, env)
        case_id = self.cases.handle_interaction(customer, env)
        if case_id:
            self.scheduler.reschedule(case_id)
        await self.settle()
        return case_id

    async def agent(self, case_id: str, action: str, **body: Any) -> None:
        self.cases.command(case_id, action, body)
        self.scheduler.reschedule(case_id)
        await self.settle()

    async def settle(self) -> None:
        await self.clock.advance(0)
        await self.scheduler.settled()

    async def wait(self, **delta: float) -> None:
        """Let time pass in small steps, as a real clock would."""
        total = timedelta(**delta).total_seconds()
        step = min(60.0, total)
        while total > 1e-9:
            await self.clock.advance(min(step, total))
            await self.scheduler.settled()
            total -= step

    def alerts(self, case_id: str | None = None) -> list[tuple[str, str | None]]:
        return [(a["kind"], a["metric"]) for a in self.control.alerts(limit=1000)
                if case_id is None or a["case_id"] == case_id]


@pytest.fixture
async def desk(database_url: str) -> AsyncIterator[Desk]:
    d = Desk(database_url, ManualClock(START))
    yield d
    await d.scheduler.stop()
    d.cases.app.close()
    d.db.close()


async def test_an_unanswered_complaint_warns_then_breaches(desk: Desk) -> None:
    desk.policy("complaints", priority=["high"], first_response_s=3600, resolution_s=86400,
                warn_at=0.8)
    case = await desk.receive("c-1", "complaint.filed", channel="web", category="billing",
                              priority="high", description="Charged twice")
    assert case is not None
    await desk.wait(minutes=47)
    assert desk.alerts(case) == []
    await desk.wait(minutes=1)  # 48 minutes = 80 % of the hour
    assert desk.alerts(case) == [("sla.warning", "first_response")]
    await desk.wait(minutes=12)
    assert desk.alerts(case) == [("sla.warning", "first_response"),
                                 ("sla.breached", "first_response")]
    [breach] = [a for a in desk.control.alerts() if a["kind"] == "sla.breached"]
    assert breach["due_at"] == (START + timedelta(hours=1)).isoformat()
    assert breach["at"] == breach["due_at"]  # on the dot of the driven clock
    await desk.wait(hours=1)
    assert len(desk.alerts(case)) == 2  # each alert once


async def test_no_breach_when_the_agent_replies_in_time(desk: Desk) -> None:
    desk.policy("email", channel=["email"], first_response_s=600, resolution_s=7200)
    case = await desk.receive("c-2", "email.received", subject="Hello", body="Where is it?")
    assert case is not None
    await desk.wait(minutes=9)
    await desk.receive("c-2", "email.sent", agent_id="agent-7", subject="Re: Hello")
    await desk.wait(minutes=30)
    assert ("sla.breached", "first_response") not in desk.alerts(case)
    await desk.agent(case, "resolve", resolution="sent tracking number")
    await desk.wait(hours=3)
    assert desk.alerts(case) == [("sla.warning", "first_response")]  # 8 of 10 minutes


async def test_waiting_on_the_customer_moves_the_deadline(desk: Desk) -> None:
    desk.policy("std", first_response_s=600, resolution_s=3600, warn_at=0.5)
    case = await desk.receive("c-3", "complaint.filed", channel="web", category="x",
                              priority="normal", description="d")
    assert case is not None
    await desk.receive("c-3", "email.sent", agent_id="agent-1", subject="need details",
                       case_id=case)
    await desk.wait(minutes=20)
    await desk.agent(case, "wait")  # 20 of 60 minutes used
    await desk.wait(hours=5)
    assert ("sla.breached", "resolution") not in desk.alerts(case)
    view = desk.cases.get(case).clocks(desk.clock.now())["resolution"]
    assert view.paused and round(view.remaining_s) == 40 * 60
    await desk.receive("c-3", "email.received", subject="details", case_id=case)
    due = desk.cases.get(case).clocks(desk.clock.now())["resolution"].due_at
    assert due == START + timedelta(hours=5, minutes=20) + timedelta(minutes=40)
    await desk.wait(minutes=41)
    assert ("sla.breached", "resolution") in desk.alerts(case)


async def test_a_business_calendar_skips_weekend_holiday_and_dst(desk: Desk) -> None:
    cal = BusinessCalendar.from_json("budapest", {
        "timezone": "Europe/Budapest",
        "hours": {d: [["09:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri")},
        "holidays": ["2026-10-26"]})
    desk.control.put_calendar(cal, "budapest")
    desk.policy("office", first_response_s=2 * 3600, resolution_s=40 * 3600,
                calendar="budapest")
    # Friday 23 October 2026, 16:30 in Budapest (CEST, +02:00); DST ends Sunday 25th;
    # Monday 26th is a holiday: 30 minutes on Friday, 90 more on Tuesday from 09:00 CET
    filed = datetime(2026, 10, 23, 14, 30, tzinfo=UTC)
    desk.clock._now = filed  # noqa: SLF001 - this story starts in October
    case = await desk.receive("c-4", "complaint.filed", at=filed, channel="web",
                              category="x", priority="normal", description="d")
    clocks = desk.cases.get(case).clocks(filed)
    assert clocks["first_response"].due_at == datetime(2026, 10, 27, 9, 30, tzinfo=UTC)


async def test_the_third_complaint_in_30_days_escalates(desk: Desk) -> None:
    for day in (0, 10):
        await desk.receive("c-5", "complaint.filed", at=START + timedelta(days=day),
                           channel="web", category="x", priority="low", description="d")
    assert [a for a in desk.alerts() if a[0] == "escalation.repeat_complaint"] == []
    await desk.receive("c-5", "complaint.filed", at=START + timedelta(days=25),
                       channel="web", category="x", priority="low", description="d")
    escalations = [a for a in desk.control.alerts()
                   if a["kind"] == "escalation.repeat_complaint"]
    assert len(escalations) == 1 and escalations[0]["customer_id"] == "c-5"
    # another customer's complaints spread over 90 days do not escalate
    for day in (0, 31, 62):
        await desk.receive("c-6", "complaint.filed", at=START + timedelta(days=day),
                           channel="web", category="x", priority="low", description="d")
    assert all(a["customer_id"] != "c-6" for a in desk.control.alerts())


async def test_a_csat_of_1_escalates_once(desk: Desk) -> None:
    survey = {"event_id": "s-1", "kind": "csat", "score": 1}
    await desk.receive("c-7", "survey.answered", channel="web", **dict(survey))
    await desk.receive("c-7", "survey.answered", channel="web", **dict(survey))  # again
    await desk.receive("c-7", "survey.answered", channel="web", kind="csat", score=4)
    await desk.receive("c-7", "survey.answered", channel="web", kind="nps", score=6)
    kinds = [a for a in desk.alerts() if a[0] == "escalation.low_satisfaction"]
    assert len(kinds) == 2  # the CSAT 1 (once) and the NPS detractor


async def test_a_restart_emits_what_fell_due_meanwhile_once(desk: Desk, tmp_path: Path) -> None:
    desk.policy("fast", first_response_s=60, resolution_s=600)
    case = await desk.receive("c-8", "complaint.filed", channel="web", category="x",
                              priority="urgent", description="d")
    await desk.scheduler.stop()  # the worker goes down
    await desk.clock.advance(3600)
    assert desk.alerts(case) == []
    again = SlaScheduler(desk.cases, desk.control, desk.clock)  # and comes back
    await again.start()
    await again.settled()
    assert sorted(desk.alerts(case)) == sorted([
        ("sla.warning", "first_response"), ("sla.breached", "first_response"),
        ("sla.warning", "resolution"), ("sla.breached", "resolution")])
    await again.start()  # and again: nothing twice
    await again.settled()
    assert len(desk.alerts(case)) == 4
    await again.stop()


async def test_cases_falling_due_at_one_instant_are_alerted_together_each_once(
        desk: Desk) -> None:
    desk.policy("burst", first_response_s=600, resolution_s=86400, warn_at=0.5)
    cases = [await desk.receive(f"c-{i}", "complaint.filed", channel="web", category="x",
                                priority="high", description="d") for i in range(40)]
    writes: list[int] = []
    add_alerts = desk.control.add_alerts

    def counted(alerts: Any) -> list[int | None]:  # the real store, its calls counted
        writes.append(len(alerts))
        return add_alerts(alerts)

    desk.control.add_alerts = counted  # type: ignore[method-assign]
    await desk.wait(minutes=10)
    breaches = [a for a in desk.control.alerts(limit=1000) if a["kind"] == "sla.breached"]
    assert sorted(a["case_id"] for a in breaches) == sorted(cases)
    # the 40 warnings at minute 5 in one transaction, the 40 breaches at 10 in another
    assert writes == [40, 40]
    seqs = [a["seq"] for a in desk.control.alerts(limit=1000)]
    assert seqs == list(range(1, len(seqs) + 1))  # numbered without gaps
    await desk.wait(hours=1)
    assert len(desk.control.alerts(kinds=["sla.breached"], limit=1000)) == 40


async def test_a_timer_asks_the_stored_case_before_it_alerts(desk: Desk) -> None:
    desk.policy("std", first_response_s=600, resolution_s=3600, warn_at=0.9)
    case = await desk.receive("c-9", "complaint.filed", channel="web", category="x",
                              priority="normal", description="d")
    assert case is not None
    # an agent answers through the API: the reschedule has not reached this worker yet
    # (it comes through the outbox), so the timer still has the first response due
    desk.cases.command(case, "reply", {"agent_id": "agent-1"})
    await desk.wait(hours=2)
    assert desk.alerts(case) == [("sla.warning", "resolution"),
                                 ("sla.breached", "resolution")]


async def test_a_lot_that_fails_is_written_one_timer_at_a_time(desk: Desk) -> None:
    desk.policy("lot", first_response_s=600, resolution_s=86400, warn_at=0.9)
    cases = [await desk.receive(f"c-{i}", "complaint.filed", channel="web", category="x",
                                priority="high", description="d") for i in range(3)]
    add_alerts = desk.control.add_alerts
    lots: list[int] = []

    def failing_lots(alerts: Any) -> list[int | None]:  # the real store, lots refused
        lots.append(len(alerts))
        if len(alerts) > 1:
            raise RuntimeError("the lot's transaction failed")
        return add_alerts(alerts)

    desk.control.add_alerts = failing_lots  # type: ignore[method-assign]
    await desk.wait(minutes=10)
    breaches = desk.control.alerts(kinds=["sla.breached"], limit=100)
    assert sorted(a["case_id"] for a in breaches) == sorted(cases)  # none lost
    assert lots == [3, 1, 1, 1, 3, 1, 1, 1]  # warnings, then breaches: a lot, then each
