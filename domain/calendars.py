"""Business calendars for SLA clocks: weekly wall-clock hours in a time zone, minus holidays."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, Final, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$|^24:00$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DAY = timedelta(days=1)


class CalendarError(ValueError):
    """A calendar definition that cannot be used, or a naive datetime given to one."""


class Calendar(Protocol):
    """What an SLA clock needs from a calendar: business time forwards and between."""

    def add(self, start: datetime, span: timedelta) -> datetime: ...

    def between(self, a: datetime, b: datetime) -> timedelta: ...


def _aware(dt: datetime, what: str) -> datetime:
    if not isinstance(dt, datetime) or dt.tzinfo is None or dt.utcoffset() is None:
        raise CalendarError(f"{what} must be a timezone-aware datetime, got {dt!r}")
    return dt


def _in_zone_of(utc: datetime, like: datetime) -> datetime:
    tz: tzinfo | None = like.tzinfo
    return utc.astimezone(tz)


class Elapsed:
    """24x7: business time is plain elapsed time (the calendar when a policy names none)."""

    name: str | None = None

    def add(self, start: datetime, span: timedelta) -> datetime:
        # arithmetic in UTC: `+` on a zoneinfo datetime is wall-clock arithmetic
        return _in_zone_of(_aware(start, "start").astimezone(UTC) + span, start)

    def between(self, a: datetime, b: datetime) -> timedelta:
        return _aware(b, "b").astimezone(UTC) - _aware(a, "a").astimezone(UTC)

    def add_business_seconds(self, start: datetime, seconds: float) -> datetime:
        return self.add(start, timedelta(seconds=seconds))

    def business_seconds_between(self, a: datetime, b: datetime) -> float:
        return self.between(a, b).total_seconds()


ALWAYS: Final = Elapsed()


def _parse_hhmm(day: str, s: Any) -> time | None:
    """A wall-clock time; None stands for 24:00 (the end of the day)."""
    if not isinstance(s, str) or not _HHMM.match(s):
        raise CalendarError(f"hours.{day}: {s!r} is not a time as \"HH:MM\" (00:00–24:00)")
    return None if s == "24:00" else time(int(s[:2]), int(s[3:]))


def _parse_day(day: str, spans: Any) -> list[tuple[time, time | None]]:
    if not isinstance(spans, list):
        raise CalendarError(f"hours.{day} must be a list of [\"HH:MM\", \"HH:MM\"] pairs")
    parsed: list[tuple[time, time | None]] = []
    for span in spans:
        if not isinstance(span, list | tuple) or len(span) != 2:
            raise CalendarError(f"hours.{day}: {span!r} is not a [\"HH:MM\", \"HH:MM\"] pair")
        start, end = _parse_hhmm(day, span[0]), _parse_hhmm(day, span[1])
        if start is None or (end is not None and end <= start):
            raise CalendarError(f"hours.{day}: {span[0]}–{span[1]} does not end after it starts")
        parsed.append((start, end))
    parsed.sort(key=lambda p: p[0])
    for (_, end), (nxt, _) in zip(parsed, parsed[1:], strict=False):
        if end is None or end > nxt:
            raise CalendarError(f"hours.{day}: business hours overlap")
    return parsed


def _parse_holiday(s: Any) -> date:
    try:
        if isinstance(s, str) and _DATE.match(s):
            return date.fromisoformat(s)
    except ValueError:
        pass
    raise CalendarError(f"holidays: {s!r} is not a date as \"YYYY-MM-DD\"")


class BusinessCalendar:
    """Weekly business hours (wall-clock, local to `timezone`) with holidays skipped.

    Every computation walks local days and turns each day's hours into UTC instants with
    zoneinfo, so a day of 23 or 25 hours counts what the wall clock shows.
    """

    def __init__(self, timezone: str, hours: Mapping[str, Any],
                 holidays: list[str] | tuple[str, ...] = (), name: str | None = None) -> None:
        if not isinstance(timezone, str) or not timezone:
            raise CalendarError("timezone must be an IANA time zone name such as Europe/Budapest")
        try:
            self.tz = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise CalendarError(f"timezone: unknown time zone {timezone!r}") from e
        if not isinstance(hours, Mapping):
            raise CalendarError("hours must be an object of weekday -> list of [start, end]")
        unknown = sorted(set(hours) - set(WEEKDAYS))
        if unknown:
            raise CalendarError(f"hours: unknown weekday {unknown[0]!r} "
                                f"(use {', '.join(WEEKDAYS)})")
        self._week = [_parse_day(d, hours.get(d, [])) for d in WEEKDAYS]
        if not any(self._week):
            raise CalendarError("hours: a calendar needs business hours on at least one day")
        if not isinstance(holidays, list | tuple):
            raise CalendarError("holidays must be a list of \"YYYY-MM-DD\" dates")
        self.holidays = frozenset(_parse_holiday(h) for h in holidays)
        self.timezone = timezone
        self.name = name
        self._hours = {d: [list(s) for s in hours.get(d, [])] for d in WEEKDAYS if hours.get(d)}

    @classmethod
    def from_json(cls, name: str, data: Any) -> BusinessCalendar:
        """The calendar of `PUT /v1/calendars/{name}`; CalendarError says what is wrong."""
        if not isinstance(data, Mapping):
            raise CalendarError("a calendar must be a JSON object")
        unknown = sorted(set(data) - {"timezone", "hours", "holidays"})
        if unknown:
            raise CalendarError(f"unknown field {unknown[0]!r}")
        for required in ("timezone", "hours"):
            if required not in data:
                raise CalendarError(f"{required} is required")
        return cls(data["timezone"], data["hours"], data.get("holidays") or [], name=name)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form that from_json reads back."""
        return {"timezone": self.timezone, "hours": self._hours,
                "holidays": sorted(d.isoformat() for d in self.holidays)}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BusinessCalendar) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.timezone)

    def __repr__(self) -> str:
        return f"BusinessCalendar({self.timezone!r}, {self._hours!r}, name={self.name!r})"

    def _open_spans(self, day: date) -> Iterator[tuple[datetime, datetime]]:
        """The day's business hours as UTC instants (none on a holiday)."""
        if day in self.holidays:
            return
        for start, end in self._week[day.weekday()]:
            # fold=0: a wall-clock time that occurs twice means its first occurrence, one
            # skipped by a spring-forward gap maps past the gap; the span keeps real length
            s = datetime.combine(day, start, tzinfo=self.tz)
            e = (datetime.combine(day + _DAY, time(0), tzinfo=self.tz) if end is None
                 else datetime.combine(day, end, tzinfo=self.tz))
            s_utc, e_utc = s.astimezone(UTC), e.astimezone(UTC)
            if e_utc > s_utc:
                yield s_utc, e_utc

    def add(self, start: datetime, span: timedelta) -> datetime:
        """The earliest instant at which `span` of business time has passed since `start`."""
        at = _aware(start, "start").astimezone(UTC)
        if span <= timedelta(0):
            return start
        left = span
        day = at.astimezone(self.tz).date()
        while True:
            for s, e in self._open_spans(day):
                if e <= at:
                    continue
                begin = max(s, at)
                if left <= e - begin:
                    return _in_zone_of(begin + left, start)
                left -= e - begin
            day += _DAY

    def between(self, a: datetime, b: datetime) -> timedelta:
        """Business time in [a, b); negative when b is before a."""
        a_utc, b_utc = _aware(a, "a").astimezone(UTC), _aware(b, "b").astimezone(UTC)
        if b_utc < a_utc:
            return -self.between(b, a)
        total = timedelta(0)
        day, last = a_utc.astimezone(self.tz).date(), b_utc.astimezone(self.tz).date()
        while day <= last:
            for s, e in self._open_spans(day):
                overlap = min(e, b_utc) - max(s, a_utc)
                if overlap > timedelta(0):
                    total += overlap
            day += _DAY
        return total

    def add_business_seconds(self, start: datetime, seconds: float) -> datetime:
        """`start` plus `seconds` of business time (the earliest such instant)."""
        return self.add(start, timedelta(seconds=seconds))

    def business_seconds_between(self, a: datetime, b: datetime) -> float:
        """Seconds of business time between `a` and `b`."""
        return self.between(a, b).total_seconds()
