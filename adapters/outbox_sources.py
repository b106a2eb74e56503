"""The two outbox sources of the worker (streams/outbox.py relays them): the case store's
notification log and the alert log, as Kafka records."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from ..domain.sla import VALUE_KEY
from ..streams.outbox import OutboxItem
from ..streams.webhooks import alert_queue
from .caseservice import EVENT_TYPES, CaseService
from .control import ControlStore
from .records import RecordCodec


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
            worth = (case.policy or {}).get(VALUE_KEY)
            if worth:  # the customer value the policy was chosen on (issue 14)
                data["segment"] = str(worth["segment"])
                data["lifetime_revenue"] = str(worth["lifetime_revenue"])
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
                                    ref=(str(case.id), n.originator_version),
                                    partition_key=str(case.customer_id).encode()))
        return items
    return fetch


def alert_source(control: ControlStore, codec: RecordCodec,
                 ) -> Callable[[int, int], Sequence[OutboxItem]]:
    def fetch(after: int, limit: int) -> list[OutboxItem]:
        items = []
        for a in control.alerts(after=after, limit=limit):
            key = (a["case_id"] or a["customer_id"] or "").encode()
            record = {**a, "queue": alert_queue(a),
                      "detail": {k: str(v) for k, v in a["detail"].items()}}
            items.append(OutboxItem(a["seq"], key, codec.encode(record), ref=a))
        return items
    return fetch
