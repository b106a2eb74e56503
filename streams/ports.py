"""What the stream stages need from the outside, as small interfaces: the adapters
implement them (adapters/control.py, adapters/caseservice.py, adapters/readstore.py) and
the composition root (adapters/bootstrap.py) hands them in. SQL, Kafka clients and the
event store stay in adapters/; streams/ imports none of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from ..domain.calendars import BusinessCalendar

# header of an empty record that holds an offset the embedded broker's restore could not
# fill (adapters/journal.py); every consumer skips it
GAP_HEADER = "contactstream-gap"


@dataclass(frozen=True, slots=True)
class ArchivedRecord:
    """A Kafka record as consumed or published, kept so the embedded broker can be
    restored at the same partitions and offsets."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    timestamp_ms: int


@dataclass(frozen=True)
class NewAlert:
    """An alert to append to the alert log; its id derives from its cause."""

    id: str
    kind: str
    at: str
    level: str
    case_id: str | None = None
    customer_id: str | None = None
    metric: str | None = None
    due_at: str | None = None
    detail: dict[str, str] | None = None


class Positions(Protocol):
    """How far a relay or a webhook delivery has come (and, on the embedded broker, the
    records it published, kept in the same transaction)."""

    def position(self, name: str) -> int: ...

    def advance(self, name: str, position: int,
                records: Sequence[ArchivedRecord] = ()) -> None: ...


class AlertLog(Protocol):
    """The alert log: each alert once, by its id, numbered in the order it was added."""

    def add_alert(self, alert: NewAlert) -> int | None: ...

    def alert_ids(self, prefix: str) -> set[str]: ...

    def alerts(self, *, after: int = 0, before: int | None = None, kinds: Iterable[str] = (),
               limit: int = 100, newest_first: bool = False) -> list[dict[str, Any]]: ...


class Escalation(AlertLog, Protocol):
    """What the escalation rules read and write: complaint history, erasures, alerts."""

    def record_complaint(self, event_id: str, customer_id: str, occurred_ms: int,
                         case_id: str | None = None) -> None: ...

    def complaints_between(self, customer_id: str, start_ms: int, end_ms: int,
                           ) -> list[tuple[int, str, str | None]]: ...

    def erasures(self) -> dict[str, list[tuple[int, str]]]: ...

    def calendars(self) -> dict[str, BusinessCalendar]: ...


class Deliveries(Positions, AlertLog, Protocol):
    """What webhook deliveries read and write."""

    def webhooks(self) -> dict[str, dict[str, Any]]: ...

    def record_webhook_failure(self, name: str, seq: int, error: str, at: str) -> None: ...


class CaseStore(Protocol):
    """The case aggregates (adapters/caseservice.py) as the case stage and the SLA timers
    see them."""

    def handle_interaction(self, customer_id: str, env: dict[str, Any]) -> str | None: ...

    def batch(self) -> AbstractContextManager[None]: ...

    def peek(self, case_id: str) -> Any: ...

    def stored(self, case_id: str) -> Any: ...

    def version_of(self, case_id: str) -> int | None: ...

    def case_ids(self) -> Iterator[str]: ...

    def calendars(self) -> dict[str, BusinessCalendar]: ...


class CaseNotFound(Exception):
    """No case with that id."""
