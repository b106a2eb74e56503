"""The case stage seeing interactions a second time (a partition read again, a crash
before the read-store commit, a replay) changes no case and arms no timer, on the real
case store and control store (PostgreSQL) and the real broker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError

from contactstream.adapters import bootstrap, kafka
from contactstream.adapters.caseservice import CaseService, case_app
from contactstream.adapters.config import Settings
from contactstream.adapters.control import ControlStore
from contactstream.adapters.database import Database
from contactstream.domain.sla import SlaPolicy
from contactstream.streams.casework import case_stage
from contactstream.streams.sla import Escalations, ManualClock

pytestmark = pytest.mark.integration

T0 = datetime(2026, 8, 1, 9, 0, tzinfo=UTC)


def env(type_: str, minutes: int, **over: Any) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "type": type_,
            "occurred_at": (T0 + timedelta(minutes=minutes)).isoformat(), "source": "t",
            "customer": {"id": "c-1"}, "channel": "email", "queue": "billing",
            "agent_id": over.pop("agent_id", None), "case_id": None,
            "payload": over}


def stored_events(db: Database) -> int:
    return int(db.scalar("SELECT COUNT(*) FROM contactstream_cases_events"))


def log() -> list[dict[str, Any]]:
    """An agent's e-mail before any case (no case: ignored), a complaint on e-mail, the
    reply to it, a second complaint (the case index moves on to it), a customer's e-mail."""
    return [
        env("email.sent", 0, agent_id="a-1", subject="s", body="b"),
        env("complaint.filed", 10, category="billing", priority="high", description="d"),
        env("email.sent", 20, agent_id="a-2", subject="s", body="b"),
        env("complaint.filed", 30, category="billing", priority="high", description="d"),
        env("email.received", 40, subject="s", body="b"),
    ]


def test_an_interaction_is_routed_once(db: Database, database_url: str) -> None:
    control = ControlStore(db)
    cases = CaseService(case_app(database_url), control)
    clock = ManualClock(T0)
    changed: list[str] = []
    stage = case_stage(cases, Escalations(control, clock),
                       lambda timers: changed.extend(t.id for t in timers))
    events = log()
    stage([("c-1", e) for e in events])
    first = stored_events(db)
    index = control.open_case_for("c-1", "email")
    assert first == 4 and changed  # 2 opens, a first response, a customer reply
    changed.clear()

    # the whole log again, and each event on its own (a partition read again, a replay)
    stage([("c-1", e) for e in events])
    for e in events:
        stage([("c-1", e)])
    assert stored_events(db) == first
    assert control.open_case_for("c-1", "email") == index
    assert changed == []  # nothing changed: no timer to re-arm
    cases.app.close()


async def test_no_timer_runs_before_the_scheduler_is_started(settings: Settings,
                                                             db: Database) -> None:
    await kafka.ensure_topics(settings, kafka.all_topics(settings))
    control = ControlStore(db)
    control.put_policy(SlaPolicy.from_json("p", {"first_response_s": 60,
                                                 "resolution_s": 120}))
    services = await bootstrap.worker_services(settings)
    try:
        opened = env("complaint.filed", 0, category="billing", priority="high",
                     description="d")  # long overdue: a started scheduler alerts at once
        stage = services.projector.case_stage
        assert stage is not None
        await asyncio.to_thread(stage, [("c-1", opened)])
        await asyncio.sleep(0.2)
        assert control.alerts(limit=10) == []  # a replay: nobody started the timers
        await services.scheduler.start()  # the worker: every case in the store armed
        await services.scheduler.settled()
        await asyncio.sleep(0.2)
        kinds = sorted(a["kind"] for a in control.alerts(limit=10))
        assert kinds == ["sla.breached", "sla.breached", "sla.warning", "sla.warning"]
    finally:
        await services.close()


def test_a_batch_an_agent_changed_a_case_of_is_redone_one_by_one(
        db: Database, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker saves a batch's cases from its cache at their last saved version; an
    agent's command on one of them in between fails the batch's save (IntegrityError),
    nothing of the batch is kept, and the case stage redoes it interaction by interaction
    from the store: the agent's change and the batch's both stand, every new case and
    escalation is there once, and the alert relay is told once."""
    control = ControlStore(db)
    worker = CaseService(case_app(database_url), control)
    api = CaseService(case_app(database_url), ControlStore(db))  # the API process's
    told: list[int] = []
    changed: dict[str, int] = {}  # case -> the version its timers were computed from
    stage = case_stage(worker, Escalations(control, ManualClock(T0),
                                           on_alert=lambda: told.append(1)),
                       lambda timers: changed.update((t.id, t.version) for t in timers))
    conflicts: list[IntegrityError] = []
    batch = worker.batch

    @contextmanager
    def watched(interactions: Sequence[tuple[str, dict[str, Any]]] = ()) -> Iterator[None]:
        try:
            with batch(interactions):
                yield
        except IntegrityError as exc:
            conflicts.append(exc)
            raise

    monkeypatch.setattr(worker, "batch", watched)

    first = env("complaint.filed", 0, category="billing", priority="high", description="d")
    stage([("c-1", first)])
    case_id = control.open_case_for("c-1", "email")
    assert case_id is not None and worker.stored(case_id).version == 1
    assert conflicts == [] and told == []

    api.command(case_id, "assign", {"agent_id": "agent-9"})  # version 2, not in the cache
    reply = env("email.sent", 5, agent_id="a-2", subject="s", body="b")
    more = [env("complaint.filed", m, category="billing", priority="high", description="d")
            for m in (10, 20)]  # with the first, three in 30 days: an escalation
    changed.clear()
    stage([("c-1", e) for e in (reply, *more)])

    assert len(conflicts) == 1  # the batch's save failed, and the stage went on
    case = worker.stored(case_id)
    assert case.version == 3
    assert case.agent_id == "agent-9"  # the agent's change stands ...
    assert case.first_response_at is not None  # ... and so does the batch's reply
    assert control.case_route(reply["event_id"]) == (True, case_id)
    opened = [control.case_route(e["event_id"]) for e in more]
    assert [handled for handled, _ in opened] == [True, True]
    assert len({c for _, c in opened} | {case_id}) == 3
    assert stored_events(db) == 5  # 3 opens, the assignment, the first response
    # the timers of every case touched, from the cases as stored (not a stale copy)
    assert changed == {case_id: 3, **{c: 1 for _, c in opened if c is not None}}
    alerts = [a["id"] for a in control.alerts(limit=10)]
    assert alerts == [f"escalation.repeat_complaint:c-1:{more[-1]['event_id']}"]
    assert told == [1]

    # the next batch on the same case saves without a conflict: no stale copy was kept
    changed.clear()
    again = env("email.sent", 30, agent_id="a-2", subject="s", body="b")
    again["case_id"] = case_id  # the index has moved on to the newest complaint's case
    stage([("c-1", again)])
    assert len(conflicts) == 1
    assert worker.stored(case_id).version == 4 and changed == {case_id: 4}
    worker.app.close()
    api.app.close()


class _CountingControl(ControlStore):
    """The control store, counting its reads of the business calendars."""

    calendar_reads = 0

    def calendars(self) -> dict[str, Any]:
        self.calendar_reads += 1
        return super().calendars()


def test_a_batch_reads_the_calendars_once_for_its_opens_and_its_timers(
        db: Database, database_url: str) -> None:
    from contactstream.domain.calendars import BusinessCalendar
    control = _CountingControl(db)
    control.put_calendar(BusinessCalendar.from_json("office", {
        "timezone": "UTC", "hours": {d: [["09:00", "17:00"]] for d in ("mon", "tue", "wed",
                                                                        "thu", "fri")}}),
        "office")
    control.put_policy(SlaPolicy.from_json("office", {
        "first_response_s": 3600, "resolution_s": 8 * 3600, "calendar": "office"}))
    cases = CaseService(case_app(database_url), control)
    timers: list[Any] = []
    stage = case_stage(cases, Escalations(control, ManualClock(T0)), timers.extend)
    complaints = [("c-1", {**env("complaint.filed", i, category="billing",
                                 priority="high", description="d"),
                           "customer": {"id": f"c-{i}"}}) for i in range(3)]
    stage([(env_["customer"]["id"], env_) for _, env_ in complaints])
    assert control.calendar_reads == 1
    assert len(timers) == 3
    assert all(t.dues for t in timers)  # computed against the calendar read
    for _, env_ in complaints:  # each case opened under the calendar's policy
        case = cases.get(cases.control.open_case_for(env_["customer"]["id"], "email") or "")
        assert case.policy is not None and case.policy["calendar"] is not None
