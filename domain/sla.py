"""SLA policies (which cases, what targets) and the SLA clocks as a pure function of history."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from contactstream.domain.calendars import ALWAYS, BusinessCalendar, Calendar
from contactstream.domain.interactions import CHANNELS, PRIORITIES
from contactstream.domain.segments import PROSPECT, SEGMENTS

_FIELDS: Final = ("priority", "channel", "first_response_s", "next_response_s",
                  "resolution_s", "warn_at", "calendar", "segment", "min_lifetime_revenue")
# what a case's snapshot keeps besides the policy: the customer's value it matched on
VALUE_KEY: Final = "customer_value"


class PolicyError(ValueError):
    """An SLA policy definition that cannot be used; the message says which field and why."""


def _choices(name: str, value: Any, allowed: tuple[str, ...]) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list | tuple) or not value:
        raise PolicyError(f"{name} must be a non-empty list (leave it out to match any {name})")
    for v in value:
        if v not in allowed:
            raise PolicyError(f"{name}: {v!r} is not one of {', '.join(allowed)}")
    return tuple(dict.fromkeys(value))


def _revenue(value: Any) -> Decimal | None:
    """``min_lifetime_revenue``: a decimal string (or a number) of at least 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise PolicyError("min_lifetime_revenue must be a decimal string such as \"1000.00\"")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise PolicyError(f"min_lifetime_revenue: {str(value)[:40]!r} is not a decimal"
                          " number") from exc
    if not amount.is_finite() or amount.is_signed() or amount >= 10 ** 15:
        raise PolicyError("min_lifetime_revenue must be at least 0 and below 10^15")
    return amount


@dataclass(frozen=True)
class CustomerValue:
    """What a policy can match on besides priority and channel: the customer's segment and
    lifetime revenue (base currency) as the stored figures had them when the case opened."""

    segment: str = PROSPECT
    lifetime_revenue: Decimal = Decimal("0.00")

    def to_dict(self) -> dict[str, str]:
        return {"segment": self.segment, "lifetime_revenue": str(self.lifetime_revenue)}


def _seconds(name: str, value: Any, required: bool = True) -> float | None:
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value <= 0:
        raise PolicyError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class SlaPolicy:
    """Targets in seconds of business time (elapsed time when `calendar` is None).

    `priority` / `channel` None match any; a case takes the first matching policy at open.
    """

    name: str
    first_response_s: float
    resolution_s: float
    next_response_s: float | None = None
    priority: tuple[str, ...] | None = None
    channel: tuple[str, ...] | None = None
    warn_at: float = 0.8
    calendar: str | None = None
    segment: tuple[str, ...] | None = None  # the customer's segment at open; None: any
    min_lifetime_revenue: Decimal | None = None  # base currency; None: any

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise PolicyError("a policy needs a non-empty name")
        _seconds("first_response_s", self.first_response_s)
        _seconds("resolution_s", self.resolution_s)
        _seconds("next_response_s", self.next_response_s, required=False)
        if isinstance(self.warn_at, bool) or not isinstance(self.warn_at, int | float) \
                or not 0 < self.warn_at < 1:
            raise PolicyError(f"warn_at must be a fraction between 0 and 1, got {self.warn_at!r}")
        if self.calendar is not None and (not isinstance(self.calendar, str)
                                          or not self.calendar.strip()):
            raise PolicyError("calendar must be the name of a calendar, or left out")

    @classmethod
    def from_json(cls, name: str, data: Any) -> SlaPolicy:
        """The policy of `PUT /v1/sla-policies/{name}`; PolicyError says what is wrong."""
        if not isinstance(data, Mapping):
            raise PolicyError("a policy must be a JSON object")
        unknown = sorted(set(data) - set(_FIELDS) - {"name"})
        if unknown:
            raise PolicyError(f"unknown field {unknown[0]!r}")
        for required in ("first_response_s", "resolution_s"):
            if required not in data:
                raise PolicyError(f"{required} is required")
        warn_at = data.get("warn_at")
        return cls(
            name=name,
            first_response_s=_seconds("first_response_s", data["first_response_s"]) or 0.0,
            resolution_s=_seconds("resolution_s", data["resolution_s"]) or 0.0,
            next_response_s=_seconds("next_response_s", data.get("next_response_s"), False),
            priority=_choices("priority", data.get("priority"), PRIORITIES),
            channel=_choices("channel", data.get("channel"), CHANNELS),
            warn_at=0.8 if warn_at is None else warn_at,
            calendar=data.get("calendar"),
            segment=_choices("segment", data.get("segment"), SEGMENTS),
            min_lifetime_revenue=_revenue(data.get("min_lifetime_revenue")),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (lists, not tuples): the API's shape plus `name`."""
        return {"name": self.name,
                "priority": None if self.priority is None else list(self.priority),
                "channel": None if self.channel is None else list(self.channel),
                "first_response_s": self.first_response_s, "next_response_s": self.next_response_s,
                "resolution_s": self.resolution_s, "warn_at": self.warn_at,
                "calendar": self.calendar,
                "segment": None if self.segment is None else list(self.segment),
                "min_lifetime_revenue": None if self.min_lifetime_revenue is None
                else str(self.min_lifetime_revenue)}

    @property
    def on_value(self) -> bool:
        """Whether the policy matches on the customer's segment or revenue."""
        return self.segment is not None or self.min_lifetime_revenue is not None

    def matches(self, priority: str, channel: str, value: CustomerValue | None = None,
                ) -> bool:
        """A customer without figures (``value`` None) is a prospect with no revenue."""
        v = value or CustomerValue()
        return ((self.priority is None or priority in self.priority)
                and (self.channel is None or channel in self.channel)
                and (self.segment is None or v.segment in self.segment)
                and (self.min_lifetime_revenue is None
                     or v.lifetime_revenue >= self.min_lifetime_revenue))

    def target_s(self, metric: str) -> float | None:
        return {"first_response": self.first_response_s, "next_response": self.next_response_s,
                "resolution": self.resolution_s}[metric]


def first_matching(policies: Iterable[SlaPolicy], priority: str, channel: str,
                   value: CustomerValue | None = None) -> SlaPolicy | None:
    """The first policy, in the given order, that covers a case of this priority and
    channel for a customer of this value."""
    return next((p for p in policies if p.matches(priority, channel, value)), None)


def policy_snapshot(policy: SlaPolicy, calendar: BusinessCalendar | None = None,
                    value: CustomerValue | None = None) -> dict[str, Any]:
    """What a case keeps at open: the policy and, when it names one, its calendar as it was,
    so later edits of either never change the clocks of a case already open (and a replay
    computes the same deadlines); and the customer's value when a policy was chosen on it
    (``VALUE_KEY``)."""
    snap = policy.to_dict()
    if calendar is not None:
        snap["calendar_spec"] = calendar.to_dict()
    if value is not None:
        snap[VALUE_KEY] = value.to_dict()
    return snap


def from_snapshot(snapshot: Mapping[str, Any],
                  calendars: Mapping[str, BusinessCalendar] | None = None,
                  ) -> tuple[SlaPolicy, Calendar]:
    """The policy and calendar of a snapshot; a named calendar not embedded is looked up in
    `calendars` (PolicyError when it is in neither)."""
    data = dict(snapshot)
    spec = data.pop("calendar_spec", None)
    data.pop(VALUE_KEY, None)
    policy = SlaPolicy.from_json(data.pop("name"), data)
    if policy.calendar is None:
        return policy, ALWAYS
    if spec is not None:
        return policy, BusinessCalendar.from_json(policy.calendar, spec)
    if calendars and policy.calendar in calendars:
        return policy, calendars[policy.calendar]
    raise PolicyError(f"policy {policy.name!r} names calendar {policy.calendar!r}, "
                      "which is unknown")


# --- the clocks: a pure function of a case's history ------------------------------------

# The case history kinds the clocks read (Case.history uses them); others are ignored.
OPENED: Final = "opened"
ASSIGNED: Final = "assigned"
FIRST_RESPONSE_GIVEN: Final = "first_response"
RESPONSE_GIVEN: Final = "response"
WAITING: Final = "waiting"
CUSTOMER_REPLIED: Final = "customer_replied"
RESOLVED: Final = "resolved"
REOPENED: Final = "reopened"

METRICS: Final = ("first_response", "next_response", "resolution")
WARNING: Final = "sla.warning"
BREACHED: Final = "sla.breached"
REPEAT_COMPLAINT: Final = "escalation.repeat_complaint"
LOW_SATISFACTION: Final = "escalation.low_satisfaction"
# every kind of alert the system raises (a webhook may subscribe to any of them)
ALERT_KINDS: Final = (WARNING, BREACHED, REPEAT_COMPLAINT, LOW_SATISFACTION)
_ZERO = timedelta(0)


@dataclass(frozen=True)
class Clock:
    """One run of a metric's clock as of `now`.

    Running: `due_at` / `warn_at` are the deadline and warning instants. Paused (the case
    waits on the customer): they are None unless already passed, and `remaining_s` is the
    business time left. Stopped: `due_at` is the deadline as it stood when it stopped.
    """

    metric: str
    cycle: int
    target_s: float
    started_at: datetime
    due_at: datetime | None
    warn_at: datetime | None
    paused: bool
    stopped_at: datetime | None
    breached: bool
    elapsed_s: float
    remaining_s: float

    @property
    def running(self) -> bool:
        return not self.paused and self.stopped_at is None


@dataclass(frozen=True)
class Due:
    """An instant at which an alert falls due. `key` is unique per case and never reused,
    however the clock moves, so "each alert once" is a set of keys."""

    metric: str
    cycle: int
    kind: str  # sla.warning | sla.breached
    at: datetime
    due_at: datetime  # the deadline as it stood at `at`

    @property
    def key(self) -> str:
        return f"{self.metric}#{self.cycle}:{self.kind}"


@dataclass
class _Run:
    metric: str
    cycle: int
    segments: list[list[Any]]  # [start, end | None]: the spans the clock counted
    stopped_at: datetime | None = None
    done: bool = False  # met its goal: never resumes

    @property
    def running(self) -> bool:
        return self.stopped_at is None and self.segments[-1][1] is None

    def pause(self, at: datetime) -> None:
        if self.running:
            self.segments[-1][1] = at

    def resume(self, at: datetime) -> None:
        if not self.done and not self.running:
            self.stopped_at = None
            self.segments.append([at, None])

    def stop(self, at: datetime, done: bool) -> None:
        if self.stopped_at is None and not self.done:
            self.pause(at)
            self.stopped_at, self.done = at, done


def _runs(case_events: Iterable[tuple[str, datetime]], policy: SlaPolicy) -> list[_Run]:
    """Replays the history into clock runs. Times are taken as non-decreasing: an event
    stamped earlier than the one before it counts as happening at that one's time."""
    runs: list[_Run] = []
    current: dict[str, _Run] = {}
    status, last = None, None
    for kind, stamped in case_events:
        at = stamped if last is None or stamped >= last else last
        last = at
        if kind == OPENED and status is None:
            status = "open"
            for metric in ("first_response", "resolution"):
                current[metric] = _Run(metric, 1, [[at, None]])
                runs.append(current[metric])
        elif status is None:
            continue
        elif kind in (FIRST_RESPONSE_GIVEN, RESPONSE_GIVEN):
            for metric in ("first_response", "next_response"):
                if metric in current:
                    current[metric].stop(at, done=True)
        elif kind == WAITING and status == "open":
            status = "waiting"
            for run in current.values():
                run.pause(at)
        elif kind == CUSTOMER_REPLIED and status in ("open", "waiting"):
            if status == "waiting":
                status = "open"
                for run in current.values():
                    if run.stopped_at is None:
                        run.resume(at)
            nxt = current.get("next_response")
            if (policy.next_response_s and current["first_response"].done
                    and (nxt is None or nxt.stopped_at is not None)):
                current["next_response"] = _Run("next_response", nxt.cycle + 1 if nxt else 1,
                                                [[at, None]])
                runs.append(current["next_response"])
        elif kind == RESOLVED and status != "resolved":
            status = "resolved"
            for run in current.values():
                # a pending next response is answered by the resolution itself
                run.stop(at, done=run.metric == "next_response")
        elif kind == REOPENED and status == "resolved":
            status = "open"
            for run in current.values():
                run.resume(at)
    return runs


def _crossing(run: _Run, threshold: timedelta, cal: Calendar, open_last: bool) -> datetime | None:
    """The instant the run's counted business time reaches `threshold`; the last span is
    taken as still counting when `open_last`. None when it was not reached."""
    used = _ZERO
    for i, (start, end) in enumerate(run.segments):
        at = cal.add(start, threshold - used)
        if end is None or (open_last and i == len(run.segments) - 1) or at < end:
            return at
        used += cal.between(start, end)
    return None


def _clock(run: _Run, policy: SlaPolicy, cal: Calendar, now: datetime) -> Clock:
    target = timedelta(seconds=policy.target_s(run.metric) or 0.0)
    warn = target * policy.warn_at
    # a clock stopped while counting keeps its deadline; one stopped while paused has none
    open_last = run.running or (run.stopped_at is not None
                                and run.segments[-1][1] == run.stopped_at)
    due_at = _crossing(run, target, cal, open_last)
    warn_at = _crossing(run, warn, cal, open_last)
    elapsed = sum((cal.between(s, max(s, now) if e is None else e) for s, e in run.segments),
                  _ZERO)
    if run.running:
        breached = due_at is not None and now >= due_at
    else:
        end = run.stopped_at or run.segments[-1][1]
        breached = due_at is not None and due_at < end
    return Clock(metric=run.metric, cycle=run.cycle, target_s=target.total_seconds(),
                 started_at=run.segments[0][0], due_at=due_at, warn_at=warn_at,
                 paused=not run.running and run.stopped_at is None,
                 stopped_at=run.stopped_at, breached=breached,
                 elapsed_s=elapsed.total_seconds(),
                 remaining_s=max(target - elapsed, _ZERO).total_seconds())


def all_clocks(case_events: Iterable[tuple[str, datetime]], policy: SlaPolicy | None,
               calendar: Calendar = ALWAYS, *, now: datetime) -> list[Clock]:
    """Every run of every clock, in the order they started (next_response has one per
    customer message that awaited an answer)."""
    if policy is None:
        return []
    return [_clock(run, policy, calendar, now) for run in _runs(case_events, policy)]


def clocks(case_events: Iterable[tuple[str, datetime]], policy: SlaPolicy | None,
           calendar: Calendar = ALWAYS, *, now: datetime) -> dict[str, Clock]:
    """metric -> its latest run as of `now` (the SLA clocks of `GET /v1/cases/{id}`)."""
    return {c.metric: c for c in all_clocks(case_events, policy, calendar, now=now)}


def due_times(case_events: Iterable[tuple[str, datetime]], policy: SlaPolicy | None,
              calendar: Calendar = ALWAYS) -> list[Due]:
    """Every alert instant of the case, by time: those its history already passed (a clock
    that crossed its warning or deadline before it paused or stopped) and those a running
    clock will reach unless an event stops or pauses it first. Recompute after each case
    event; the same history always gives the same list."""
    if policy is None:
        return []
    dues: list[Due] = []
    for run in _runs(case_events, policy):
        target = timedelta(seconds=policy.target_s(run.metric) or 0.0)
        for kind, threshold in ((WARNING, target * policy.warn_at), (BREACHED, target)):
            at = _crossing(run, threshold, calendar, open_last=run.running)
            if at is None or (run.stopped_at is not None and at >= run.stopped_at):
                continue
            dues.append(Due(run.metric, run.cycle, kind, at,
                            calendar.add(at, target - threshold)))
    return sorted(dues, key=lambda d: (d.at, d.metric, d.cycle, d.kind))
