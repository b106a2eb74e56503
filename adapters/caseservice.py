"""Cases: the eventsourcing application (SQLite recorder) and the rules that turn
interactions and agents' commands into Case commands.

What opens and moves cases (issue 3):
- ``complaint.filed`` opens a case, priority from the payload;
- an inbound ``email.received`` or ``chat.message`` opens one when the customer has no
  open case on that channel, otherwise it is the customer's reply;
- an agent's ``email.sent`` or outbound ``chat.message`` is a reply on the open case;
- an envelope with ``case_id`` of an existing case acts on that case.
The same event twice changes nothing: case ids derive from the opening event, and every
command carries the id of the event that caused it.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError

from ..domain import sla
from ..domain.calendars import BusinessCalendar
from ..domain.cases import Case, CaseError, InvalidCommand
from ..domain.interactions import parse_occurred_at
from ..streams.ports import CaseNotFound
from .control import ControlStore
from .database import eventsourcing_env
from .logging import get_logger

log = get_logger(__name__)
_T = TypeVar("_T")

EVENT_TYPES = {
    "Opened": "case.opened", "Assigned": "case.assigned",
    "FirstResponseGiven": "case.first_response", "ResponseGiven": "case.response",
    "PausedForCustomer": "case.waiting", "CustomerReplied": "case.customer_replied",
    "Resolved": "case.resolved", "Reopened": "case.reopened",
}


class CaseApp(Application[uuid.UUID]):
    """Cases in the eventsourcing recorder; its notification log feeds the outbox."""

    # names the recorder's table, contactstream_cases_events (adapters/migrations)
    name = "contactstream_cases"


def case_app(database_url: str) -> CaseApp:
    return CaseApp(env=eventsourcing_env(database_url))


class CaseService:
    def __init__(self, app: CaseApp, control: ControlStore,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 seal: Callable[[str, str], str] | None = None,
                 values: Callable[[str], sla.CustomerValue | None] | None = None) -> None:
        self.app = app
        # the customer's stored segment and revenue, for policies that match on them
        self.values = values
        # encrypts an agent's free text with the customer's data key (adapters/privacy.py)
        self.seal = seal
        self.control = control
        self.now = now
        # inside batch(): cases changed by this thread, saved together at the end
        self._pending: dict[uuid.UUID, Case] | None = None
        # the worker's cases as last saved by it (batch mode only): saves no reload per
        # event; a case an agent changed meanwhile fails the batch's save with
        # IntegrityError, the cache is dropped and the batch redone from the store
        self._cache: OrderedDict[uuid.UUID, Case] = OrderedDict()
        # inside batch(): the control store's settings read once for the whole batch
        # (the SLA policies for its opens, the calendars for its opens and its timers)
        self._read_once: dict[str, Any] = {}
        # inside batch(): case ids known not to be stored when it began
        self._absent: set[uuid.UUID] = set()

    @contextmanager
    def batch(self, interactions: Sequence[tuple[str, dict[str, Any]]] = (),
              ) -> Iterator[None]:
        """Apply many interactions, then save every changed case in one transaction (and
        the control store's writes in one more). IntegrityError when an agent changed one
        of the cases meanwhile: nothing of the batch is saved, and the caller redoes it
        interaction by interaction (every command is idempotent). ``interactions``, the
        (customer, envelope)s the batch will handle, are looked up in a few queries first
        (their routes, the customers' open cases, which cases they would open exist)."""
        self._pending = {}
        self._read_once = {}
        self._absent = set()
        try:
            with self.control.batch():
                if interactions:
                    self._preload(interactions)
                yield
                if self._pending:
                    self.app.save(*self._pending.values())
            for cid, case in self._pending.items():
                self._cache[cid] = case
                self._cache.move_to_end(cid)
            while len(self._cache) > 20_000:
                self._cache.popitem(last=False)
        except BaseException:
            self._cache.clear()  # some cached cases may hold unsaved changes
            raise
        finally:
            self._pending = None
            self._read_once = {}
            self._absent = set()

    def _preload(self, interactions: Sequence[tuple[str, dict[str, Any]]]) -> None:
        event_ids = [env["event_id"] for _, env in interactions]
        self.control.preload(event_ids, {(c, env["channel"]) for c, env in interactions})
        # the cases these interactions would open, if not opened already (a redelivery,
        # a crash after the save): one query instead of one a message. (Looked up in the
        # cache one by one: a set of the cache, 20,000 UUIDs hashed in Python, took
        # ~10 ms a batch, most of a small batch's time under a steady load.)
        cached = self._cache
        ids = {i for i in map(Case.id_for, event_ids) if i not in cached}
        if ids:
            self._absent = ids - self.app.recorder.last_versions(ids).keys()  # type: ignore[attr-defined]

    # -- queries ---------------------------------------------------------------------------
    def get(self, case_id: str | uuid.UUID) -> Case:
        try:
            cid = case_id if isinstance(case_id, uuid.UUID) else uuid.UUID(str(case_id))
            if self._pending is not None:
                if cid in self._pending:
                    return self._pending[cid]
                if cid in self._cache:
                    return self._cache[cid]
                if cid in self._absent:  # not stored when the batch began
                    raise AggregateNotFoundError(cid)
            return self.app.repository.get(cid)  # type: ignore[return-value]
        except (ValueError, AggregateNotFoundError) as exc:
            raise CaseNotFound(str(case_id)) from exc

    def stored(self, case_id: str) -> Case:
        """A case as stored, bypassing this process's cache (safe from any thread)."""
        try:
            return self.app.repository.get(uuid.UUID(str(case_id)))  # type: ignore
        except (ValueError, AggregateNotFoundError) as exc:
            raise CaseNotFound(str(case_id)) from exc

    def peek(self, case_id: str) -> Case:
        """A case as this process last saved it (the worker's cache), else from the store."""
        cid = uuid.UUID(str(case_id))
        return self._cache.get(cid) or self.get(cid)

    def case_ids(self) -> Iterator[str]:
        """Every case in the store, in the order they were first saved."""
        seen: set[str] = set()
        start = 1
        while batch := self.app.recorder.select_notifications(  # type: ignore[attr-defined]
                start, 1000):
            for n in batch:
                if (cid := str(n.originator_id)) not in seen:
                    seen.add(cid)
                    yield cid
            start = batch[-1].id + 1

    def calendars(self) -> dict[str, BusinessCalendar]:
        """The business calendars; inside ``batch()`` read once for the whole batch (its
        opens and its cases' timers)."""
        return self._batch_read("calendars", self.control.calendars)

    def _batch_read(self, name: str, read: Callable[[], _T]) -> _T:
        """``read()``, once a batch inside ``batch()``, at each call outside it."""
        if self._pending is None:
            return read()
        if name not in self._read_once:
            self._read_once[name] = read()
        return self._read_once[name]

    def versions_of(self, case_ids: Sequence[str]) -> dict[str, int]:
        """The stored versions of many cases in one query (ids not stored are left out)."""
        found = self.app.recorder.last_versions(  # type: ignore[attr-defined]
            uuid.UUID(str(c)) for c in case_ids)
        return {str(cid): v for cid, v in found.items()}

    def _open_case(self, customer_id: str, channel: str) -> Case | None:
        case_id = self.control.open_case_for(customer_id, channel)
        if case_id is None:
            return None
        case = self.get(case_id)
        return case if case.is_open else None

    # -- from interactions -----------------------------------------------------------------
    def handle_interaction(self, customer_id: str, env: dict[str, Any]) -> str | None:
        """Apply what the interaction means for cases; returns the case id it touched, None
        when it touched none or was handled before.

        Which case an interaction goes to depends on state that moves on with the log (the
        case index, which cases exist and are open), so a second look at the same event (a
        redelivery, a partition read again, a crash before the read-store commit, a replay)
        must not decide again: against a later index it would reach a case opened after
        it, which has not seen its event id. The decision is kept by event id
        (``case_routes``, in the batch's transaction) and a handled event changes nothing."""
        typ, payload = env["type"], env.get("payload") or {}
        inbound = typ == "email.received" or (
            typ == "chat.message" and payload.get("direction") == "inbound")
        outbound = typ == "email.sent" or (
            typ == "chat.message" and payload.get("direction") == "outbound")
        if not (typ == "complaint.filed" or inbound or outbound):
            return None
        handled, _ = self.control.case_route(env["event_id"])
        if handled:
            return None
        case_id = self._route(customer_id, env, inbound, outbound)
        # after the case is saved (or queued in the batch whose control transaction this
        # joins): a crash in between finds no route, decides again against the same index,
        # and the case it reaches has the event id already
        self.control.record_case_route(env["event_id"], case_id)
        return case_id

    def _route(self, customer_id: str, env: dict[str, Any], inbound: bool, outbound: bool,
               ) -> str | None:
        typ, payload, eid = env["type"], env.get("payload") or {}, env["event_id"]
        at = parse_occurred_at(env["occurred_at"])
        channel = env["channel"]
        target = None
        if env.get("case_id"):
            try:
                target = self.get(env["case_id"])
            except CaseNotFound:
                target = None
        if typ == "complaint.filed" and target is None:
            return self._open(customer_id, env, at, payload.get("priority", "normal"))
        if target is None:
            target = self._open_case(customer_id, channel)
        if target is None:
            if inbound:
                return self._open(customer_id, env, at, "normal")
            return None  # an agent's message outside any case
        try:
            if inbound:
                target.customer_replied(at, event_id=eid)
            elif outbound:
                target.reply(env.get("agent_id") or "unknown", at, event_id=eid)
            else:  # a complaint about an existing case: the customer is still waiting
                target.customer_replied(at, event_id=eid)
        except CaseError as exc:
            # facts are not rejected: an interaction that does not fit the case's state
            # (say, a reply to a resolved case) stays in the timeline, the case unchanged
            log.debug("case.interaction_ignored", case_id=str(target.id), event_id=eid,
                      reason=type(exc).__name__)
            return str(target.id)
        self._save(target)
        return str(target.id)

    def _open(self, customer_id: str, env: dict[str, Any], at: datetime, priority: str,
              ) -> str:
        case_id = Case.id_for(env["event_id"])
        try:
            existing = self.get(case_id)
            self.control.index_case(customer_id, env["channel"], str(case_id))
            return str(existing.id)  # opened before a crash or by a redelivery
        except CaseNotFound:
            pass
        if priority not in ("low", "normal", "high", "urgent"):
            priority = "normal"
        policies = self._policies()
        value = None  # read only when a policy matches on it (issue 14)
        if self.values is not None and any(p.on_value for p in policies):
            value = self.values(customer_id) or sla.CustomerValue()
        policy = sla.first_matching(policies, priority, env["channel"], value)
        snapshot = None
        if policy is not None:
            calendar = self.calendars().get(policy.calendar) if policy.calendar else None
            snapshot = sla.policy_snapshot(policy, calendar, value)
        case = Case.open(customer_id=customer_id, channel=env["channel"], priority=priority,
                         queue=env.get("queue"), opened_by_event_id=env["event_id"],
                         opened_at=at, policy=snapshot)
        try:
            self._save(case)
        except IntegrityError:
            pass  # opened concurrently by the same event: the one stored stands
        self.control.index_case(customer_id, env["channel"], str(case.id))
        log.debug("case.opened", case_id=str(case.id), priority=priority,
                  policy=policy.name if policy else None)
        return str(case.id)

    def _policies(self) -> list[sla.SlaPolicy]:
        return self._batch_read("policies", self.control.policies)

    def _save(self, case: Case) -> None:
        if self._pending is not None:
            self._pending[case.id] = case
        else:
            self.app.save(case)

    # -- agents' commands (HTTP) -----------------------------------------------------------
    def command(self, case_id: str, action: str, body: dict[str, Any]) -> Case:
        """assign / reply / wait / resolve / reopen by an agent, at the current time.
        Raises CaseNotFound, CaseError (409) or IntegrityError (a concurrent change)."""
        case = self.get(case_id)
        at = self.now()
        if action == "assign":
            case.assign(_agent(body), at)
        elif action == "reply":
            case.reply(_agent(body), at)
        elif action == "wait":
            case.wait_for_customer(at)
        elif action == "resolve":
            text = body.get("resolution")
            if isinstance(text, str) and self.seal is not None:
                text = self.seal(case.customer_id, text)
            case.resolve(at, resolution=text)
        elif action == "reopen":
            case.reopen(at)
        else:
            raise InvalidCommand(f"unknown action {action!r}")
        self._save(case)
        return case


def _agent(body: dict[str, Any]) -> str:
    agent = body.get("agent_id")
    if not isinstance(agent, str) or not agent:
        raise InvalidCommand("agent_id is required")
    return agent


def case_json(case: Case, now: datetime, calendars: dict[str, Any] | None = None,
              open_text: Callable[[Any], Any] = lambda v: v) -> dict[str, Any]:
    """A case with its SLA clocks as the API shows it."""
    clocks = {}
    for metric, clock in case.clocks(now, calendars).items():
        clocks[metric] = {
            "target_s": clock.target_s, "started_at": _iso(clock.started_at),
            "due_at": _iso(clock.due_at), "warn_at": _iso(clock.warn_at),
            "paused": clock.paused, "stopped_at": _iso(clock.stopped_at),
            "breached": clock.breached, "remaining_s": round(clock.remaining_s, 3),
        }
    return {
        "id": str(case.id), "customer_id": case.customer_id, "status": case.status,
        "priority": case.priority, "channel": case.channel, "queue": case.queue,
        "agent_id": case.agent_id, "opened_at": _iso(case.opened_at),
        "first_response_at": _iso(case.first_response_at),
        "resolved_at": _iso(case.resolved_at), "resolution": open_text(case.resolution),
        "policy": case.policy.get("name") if case.policy else None,
        # the segment and revenue the policy was chosen on, when a policy matched on them
        "customer_value": case.policy.get(sla.VALUE_KEY) if case.policy else None,
        "version": case.version, "sla": clocks,
    }


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None
