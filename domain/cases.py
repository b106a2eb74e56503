"""The Case aggregate: a customer's request from open to resolution, event-sourced."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any, Final

from eventsourcing.domain import Aggregate, event

from contactstream.domain import sla
from contactstream.domain.calendars import BusinessCalendar, Calendar
from contactstream.domain.interactions import CHANNELS, PRIORITIES

# uuid5 namespace of case ids: fixed forever, or the same trigger would open a second case
CASE_NAMESPACE: Final = uuid.UUID("6a1f3c52-8a3e-5d0e-9f57-3b1c2d4e5f60")
STATUSES: Final = ("open", "waiting", "resolved")
# command -> the statuses it is allowed from
ALLOWED_FROM: Final = {
    "assign": ("open", "waiting"),
    "reply": ("open", "waiting"),
    "wait_for_customer": ("open",),
    "customer_replied": ("open", "waiting"),
    "resolve": ("open", "waiting"),
    "reopen": ("resolved",),
}


class CaseError(Exception):
    """A command the case refuses (HTTP 409 / 422 at the edge)."""


class InvalidTransition(CaseError):
    """The command is not allowed in the case's current status."""

    def __init__(self, case_id: uuid.UUID, action: str, status: str) -> None:
        super().__init__(f"case {case_id}: cannot {action.replace('_', ' ')} "
                         f"a case that is {status}")
        self.case_id, self.action, self.status = case_id, action, status


class InvalidCommand(CaseError):
    """A command with a value the case cannot take (naive time, unknown priority ...)."""


def _check_aware(at: Any, what: str = "at") -> None:
    if not isinstance(at, datetime) or at.tzinfo is None or at.utcoffset() is None:
        raise InvalidCommand(f"{what} must be a timezone-aware datetime (event time), got {at!r}")


class Case(Aggregate):
    """A case. Every command takes the event time `at` and the id of the event that caused
    it (`event_id`); a command whose `event_id` the case already handled changes nothing
    and returns False, so redelivered inbound events are harmless."""

    @staticmethod
    def id_for(source_key: str) -> uuid.UUID:
        """The case id for what opened it: the same source key always gives the same id."""
        return _case_uuid(source_key)

    @staticmethod
    def create_id(source_key: str) -> uuid.UUID:
        return Case.id_for(source_key)

    @classmethod
    def open(cls, *, customer_id: str, channel: str, priority: str, queue: str | None,
             opened_by_event_id: str, opened_at: datetime,
             policy: Mapping[str, Any] | None = None, source_key: str | None = None) -> Case:
        """Opens a case; `policy` is the snapshot of the matched SLA policy
        (sla.policy_snapshot), None when no policy matched. `source_key` defaults to the
        opening event's id."""
        if not customer_id:
            raise InvalidCommand("a case needs a customer_id")
        if channel not in CHANNELS:
            raise InvalidCommand(f"channel {channel!r} is not one of {', '.join(CHANNELS)}")
        if priority not in PRIORITIES:
            raise InvalidCommand(f"priority {priority!r} is not one of {', '.join(PRIORITIES)}")
        if not opened_by_event_id:
            raise InvalidCommand("a case needs the id of the event that opened it")
        _check_aware(opened_at, "opened_at")
        return cls(source_key=source_key or opened_by_event_id, customer_id=customer_id,
                   channel=channel, priority=priority, queue=queue,
                   opened_by_event_id=opened_by_event_id, opened_at=opened_at,
                   policy=None if policy is None else dict(policy))

    @event("Opened")
    def __init__(self, source_key: str, customer_id: str, channel: str, priority: str,
                 queue: str | None, opened_by_event_id: str, opened_at: datetime,
                 policy: dict[str, Any] | None) -> None:
        self.source_key = source_key
        self.customer_id = customer_id
        self.channel = channel
        self.priority = priority
        self.queue = queue
        self.opened_by_event_id = opened_by_event_id
        self.opened_at = opened_at
        self.policy = policy
        self.status = "open"
        self.agent_id: str | None = None
        self.first_response_at: datetime | None = None
        self.last_response_at: datetime | None = None
        self.last_customer_reply_at: datetime | None = None
        self.resolved_at: datetime | None = None
        self.resolution: str | None = None
        self.reopened_count = 0
        # (kind, event time): what the SLA clocks are computed from (sla.clocks)
        self.history: list[tuple[str, datetime]] = [(sla.OPENED, opened_at)]
        self._handled: set[str] = {opened_by_event_id}

    # --- queries ------------------------------------------------------------------------

    def handled(self, event_id: str | None) -> bool:
        """Whether the event with this id already acted on the case."""
        return event_id is not None and event_id in self._handled

    @property
    def is_open(self) -> bool:
        return self.status != "resolved"

    def sla_policy(self, calendars: Mapping[str, BusinessCalendar] | None = None,
                   ) -> tuple[sla.SlaPolicy, Calendar] | None:
        """The policy and calendar fixed at open, or None when the case has no SLA."""
        return None if self.policy is None else sla.from_snapshot(self.policy, calendars)

    def clocks(self, now: datetime, calendars: Mapping[str, BusinessCalendar] | None = None,
               ) -> dict[str, sla.Clock]:
        fixed = self.sla_policy(calendars)
        return {} if fixed is None else sla.clocks(self.history, *fixed, now=now)

    def due_times(self, calendars: Mapping[str, BusinessCalendar] | None = None,
                  ) -> list[sla.Due]:
        fixed = self.sla_policy(calendars)
        return [] if fixed is None else sla.due_times(self.history, *fixed)

    # --- invariants ---------------------------------------------------------------------

    def check_transition(self, action: str) -> None:
        if self.status not in ALLOWED_FROM[action]:
            raise InvalidTransition(self.id, action, self.status)

    def _accepts(self, action: str, at: datetime, event_id: str | None) -> bool:
        """False for a duplicate; raises for a command the case refuses."""
        if self.handled(event_id):
            return False
        _check_aware(at)
        self.check_transition(action)
        return True

    # --- commands -----------------------------------------------------------------------

    def assign(self, agent_id: str, at: datetime, event_id: str | None = None) -> bool:
        if not agent_id:
            raise InvalidCommand("assign needs an agent_id")
        if not self._accepts("assign", at, event_id):
            return False
        self._assigned(agent_id=agent_id, at=at, event_id=event_id)
        return True

    def reply(self, agent_id: str, at: datetime, event_id: str | None = None) -> bool:
        """An agent's reply: the first response, then later responses. The first agent to
        reply to an unassigned case takes it. Replying does not end a wait on the customer."""
        if not agent_id:
            raise InvalidCommand("reply needs an agent_id")
        if not self._accepts("reply", at, event_id):
            return False
        if self.first_response_at is None:
            self._first_response_given(agent_id=agent_id, at=at, event_id=event_id)
        else:
            self._response_given(agent_id=agent_id, at=at, event_id=event_id)
        return True

    def wait_for_customer(self, at: datetime, event_id: str | None = None) -> bool:
        """The case waits on the customer: its SLA clocks pause."""
        if not self._accepts("wait_for_customer", at, event_id):
            return False
        self._paused_for_customer(at=at, event_id=event_id)
        return True

    def customer_replied(self, at: datetime, event_id: str | None = None) -> bool:
        """The customer wrote again: a wait ends and, once answered before, the next
        response is due."""
        if not self._accepts("customer_replied", at, event_id):
            return False
        self._customer_replied(at=at, event_id=event_id)
        return True

    def resolve(self, at: datetime, resolution: str | None = None,
                event_id: str | None = None) -> bool:
        if not self._accepts("resolve", at, event_id):
            return False
        self._resolved(at=at, resolution=resolution, event_id=event_id)
        return True

    def reopen(self, at: datetime, event_id: str | None = None) -> bool:
        if not self._accepts("reopen", at, event_id):
            return False
        self._reopened(at=at, event_id=event_id)
        return True

    # --- events: they only change state, never check --------------------------------------

    def _record(self, kind: str, at: datetime, event_id: str | None) -> None:
        self.history.append((kind, at))
        if event_id is not None:
            self._handled.add(event_id)

    @event("Assigned")
    def _assigned(self, agent_id: str, at: datetime, event_id: str | None) -> None:
        self.agent_id = agent_id
        self._record(sla.ASSIGNED, at, event_id)

    @event("FirstResponseGiven")
    def _first_response_given(self, agent_id: str, at: datetime, event_id: str | None) -> None:
        self.agent_id = self.agent_id or agent_id
        self.first_response_at = self.last_response_at = at
        self._record(sla.FIRST_RESPONSE_GIVEN, at, event_id)

    @event("ResponseGiven")
    def _response_given(self, agent_id: str, at: datetime, event_id: str | None) -> None:
        self.agent_id = self.agent_id or agent_id
        self.last_response_at = at
        self._record(sla.RESPONSE_GIVEN, at, event_id)

    @event("PausedForCustomer")
    def _paused_for_customer(self, at: datetime, event_id: str | None) -> None:
        self.status = "waiting"
        self._record(sla.WAITING, at, event_id)

    @event("CustomerReplied")
    def _customer_replied(self, at: datetime, event_id: str | None) -> None:
        self.status = "open"
        self.last_customer_reply_at = at
        self._record(sla.CUSTOMER_REPLIED, at, event_id)

    @event("Resolved")
    def _resolved(self, at: datetime, resolution: str | None, event_id: str | None) -> None:
        self.status = "resolved"
        self.resolved_at, self.resolution = at, resolution
        self._record(sla.RESOLVED, at, event_id)

    @event("Reopened")
    def _reopened(self, at: datetime, event_id: str | None) -> None:
        self.status = "open"
        self.resolved_at = self.resolution = None
        self.reopened_count += 1
        self._record(sla.REOPENED, at, event_id)


# a batch asks for the id of each interaction that could open a case, then again for the
# ones that do (the preload, the open, the aggregate's creation)
@lru_cache(maxsize=8192)
def _case_uuid(source_key: str) -> uuid.UUID:
    return uuid.uuid5(CASE_NAMESPACE, source_key)
