"""The case stage the projector calls for each batch: cases and escalations, then the
timers of the cases touched. (The outbox sources are adapters: adapters/outbox_sources.py.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from eventsourcing.persistence import IntegrityError

from .ports import CaseStore
from .sla import CaseTimers, Escalations, timers_of

log = structlog.get_logger(__name__)


def case_stage(cases: CaseStore, escalations: Escalations,
               on_cases_changed: Callable[[list[CaseTimers]], None],
               ) -> Callable[[list[tuple[str, dict]]], None]:
    """Runs on the projector's compute thread for each batch, beside the commit in flight
    of the batch before: cases and escalations.
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
            with cases.batch(relevant), escalations.batch(relevant):
                touched = apply(relevant)
                # inside the batch: the calendars its opens read, not read again
                calendars = cases.calendars() if touched else {}
        except IntegrityError:
            # an agent changed a case meanwhile: one by one, each saved on its own
            log.info("cases.batch_conflict", events=len(relevant))
            escalations.raised = False
            touched = apply(relevant)
            calendars = cases.calendars() if touched else {}
        escalations.flush()
        if touched:
            on_cases_changed([timers_of(cases.peek(c), calendars) for c in sorted(touched)])
    return stage


# the interaction types that can open or move a case or raise an escalation
RELEVANT = frozenset({"complaint.filed", "email.received", "email.sent", "chat.message",
                      "survey.answered"})
