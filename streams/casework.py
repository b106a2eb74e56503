"""Wiring of cases and alerts in the worker: the stage the projector calls for each
batch, the two outbox sources (case events, alerts) and what follows publication."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from eventsourcing.persistence import IntegrityError

from ..adapters.caseservice import EVENT_TYPES, CaseService
from ..adapters.control import ControlStore
from ..adapters.logging import get_logger
from ..adapters.records import RecordCodec
from .outbox import OutboxItem
from .sla import CaseTimers, Escalations, timers_of

log = get_logger(__name__)


def case_stage(cases: CaseService, escalations: Escalations,
               on_cases_changed: Callable[[list[CaseTimers]], None],
               ) -> Callable[[list[tuple[str, dict]]], None]:
    """Runs on the projector's writer thread for each batch: cases and escalations.
    ``on_cases_changed`` gets the timers of the cases touched, after they were saved."""
    def apply(resolved: list[tuple[str, dict[str, Any]]]) -> set[str]:
        touched = set()
        for customer_id, env in resolved:
            escalations.handle(customer_id, env)
            case_id = cases.handle_interaction(customer_id, env)
            if case_id is not None:
                touched.add(case_id)
        return touched

    def stage(resolved: list[tuple[str, dict[str, Any]]]) -> None:
        relevant = [(c, e) for c, e in resolved if e["type"] in RELEVANT]
        if not relevant:
            return
        try:
            with cases.batch():
                touched = apply(relevant)
        except IntegrityError:
            # an agent changed a case meanwhile: one by one, each saved on its own
            log.info("cases.batch_conflict", events=len(relevant))
            escalations.raised = False
            touched = apply(relevant)
        escalations.flush()
        if touched:
            calendars = cases.control.calendars()
            on_cases_changed([timers_of(cases.peek(c), calendars) for c in sorted(touched)])
    return stage


# the interaction types that can open or move a case or raise an escalation
RELEVANT = frozenset({"complaint.filed", "email.received", "email.sent", "chat.message",
                      "survey.answered"})


def _ms(at: datetime | None) -> str:
    return "" if at is None else str(int(at.timestamp() * 1000))


def case_event_source(cases: CaseService, codec: RecordCodec,
                      ) -> Callable[[int, int], Sequence[OutboxItem]]:
    """The case store's notification log as Kafka records (with each case's state after
    the event, so consumers need no other source)."""
    app = cases.app
    # each case as of the last event relayed, moved on by the next event's mutate(): no
    # reload of the whole history per event
    states: dict[Any, Any] = {}

    def state_after(n: Any, ev: Any) -> Any:
        case = states.pop(n.originator_id, None)
        if case is not None and case.version == n.originator_version - 1:
            case = ev.mutate(case)
        else:
            case = app.repository.get(n.originator_id, version=n.originator_version)
        states[n.originator_id] = case
        if len(states) > 10_000:
            states.pop(next(iter(states)))
        return case

    def fetch(after: int, limit: int) -> list[OutboxItem]:
        items = []
        for n in app.recorder.select_notifications(after + 1, limit):  # type: ignore
            ev = app.mapper.to_domain_event(n)
            case: Any = state_after(n, ev)
            attrs = ev.__dict__
            at: datetime = attrs.get("at") or attrs["opened_at"]
            data = {"opened_at": case.opened_at.isoformat(), "opened_ms": _ms(case.opened_at),
                    "first_response_ms": _ms(case.first_response_at),
                    "resolved_ms": _ms(case.resolved_at)}
            if attrs.get("resolution"):
                data["resolution"] = str(attrs["resolution"])
            record = {
                "event_id": f"case:{case.id}:{n.originator_version}",
                "case_id": str(case.id), "version": n.originator_version,
                "type": EVENT_TYPES.get(type(ev).__name__, "case.changed"),
                "occurred_at": at.isoformat(), "customer_id": case.customer_id,
                "channel": case.channel, "priority": case.priority, "queue": case.queue,
                "status": case.status, "agent_id": case.agent_id,
                "policy": case.policy.get("name") if case.policy else None,
                "trigger_event_id": attrs.get("event_id") or attrs.get("opened_by_event_id"),
                "data": data,
            }
            items.append(OutboxItem(n.id, str(case.id).encode(), codec.encode(record),
                                    ref=(str(case.id), n.originator_version)))
        return items
    return fetch


def alert_source(control: ControlStore, codec: RecordCodec,
                 ) -> Callable[[int, int], Sequence[OutboxItem]]:
    def fetch(after: int, limit: int) -> list[OutboxItem]:
        items = []
        for a in control.alerts(after=after, limit=limit):
            key = (a["case_id"] or a["customer_id"] or "").encode()
            record = {**a, "detail": {k: str(v) for k, v in a["detail"].items()}}
            items.append(OutboxItem(a["seq"], key, codec.encode(record), ref=a))
        return items
    return fetch
