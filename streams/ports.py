"""What the stream stages need from the outside, as small interfaces: the adapters
implement them (adapters/control.py, adapters/caseservice.py, adapters/readstore.py,
adapters/avro.py) and the composition root (adapters/bootstrap.py) hands them in. SQL,
Kafka clients, codecs and the event store stay in adapters/; streams/ imports none of it
(tests/unit/test_layers.py keeps it so). In-memory fakes of the stores are in
streams/fakes.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..domain.calendars import BusinessCalendar

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer

    from ..projections.timeline import TimelineState

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
    # an interaction's event id, when it decoded: the archive looks for the record in the
    # ingest journal by it (adapters/archive.py)
    event_id: str | None = None


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


class DecodeError(Exception):
    """A record that cannot be decoded; ``reason`` says why in a few words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Decoder(Protocol):
    """A record's value (Confluent wire format) to a dict; raises DecodeError."""

    def decode(self, data: bytes | None) -> dict[str, Any]: ...


class StreamSettings(Protocol):
    """The settings the stream stages read (adapters/config.py ``Settings`` has them)."""

    @property
    def interactions_topic(self) -> str: ...
    @property
    def cases_topic(self) -> str: ...
    @property
    def dlq_topic(self) -> str: ...
    @property
    def projector_group(self) -> str: ...
    @property
    def default_region(self) -> str: ...
    @property
    def embedded_broker(self) -> bool:
        """Then every record is archived, to restore the broker from."""
        ...


# a Kafka consumer, with a group id or without one (adapters/kafka.py builds it)
ConsumerFactory = Callable[[str | None], "AIOKafkaConsumer"]


class Redo(RuntimeError):  # noqa: N818 - what the projector does about it
    """A batch's transaction was refused because this worker's view is stale: it lost a
    partition it wrote for (fencing), or an unmerge or an erasure on another worker took
    identity rows away. Nothing was written: reload, seek to the stored offsets, go on."""


def partition_lease(partition: int) -> str:
    """The lease of partition N of the interactions and the cases topic (issue 9)."""
    return f"partition:{partition}"


class LeaseHolder(Protocol):
    """This worker's leases (adapters/ownership.py ``Leases``), renewed elsewhere."""

    @property
    def worker_id(self) -> str: ...

    def held_partitions(self) -> dict[int, int]:
        """Partition -> the generation this worker holds it at."""
        ...

    def holds_singletons(self) -> bool: ...

    def surplus(self) -> set[int]:
        """Held partitions past this worker's share: to give back after the commit."""
        ...

    def give_back(self, partitions: Iterable[int]) -> None: ...


@dataclass
class BatchChanges:
    """The unit of work of one batch: everything it changes, committed in one transaction
    with the consumed offsets, or not at all."""

    timeline: TimelineState | None = None
    archive: Sequence[ArchivedRecord] = ()
    offsets: Mapping[tuple[str, int], int] = field(default_factory=dict)
    cases: Sequence[dict[str, Any]] = ()  # the newest state of each case the batch moved
    identity: Any = None  # merges and unmerges (projections/identity.py IdentityBatch)
    # the leases the batch was read under (lease name -> generation), and whose: the
    # transaction commits only while they are still held (adapters/ownership.py)
    fence: Mapping[str, int] = field(default_factory=dict)
    holder: str = ""


class ProjectionStore(Protocol):
    """The read model as the projector writes it (adapters/readstore.py)."""

    def offsets(self, topic: str) -> dict[int, int]:
        """The next offset to read of each partition of ``topic`` that was committed."""
        ...

    def known_identifiers(self, idents: Iterable[tuple[str, str]],
                          ) -> dict[tuple[str, str], tuple[str, bool]]:
        """(kind, value) -> (customer id, strong) of those already stored."""
        ...

    def identity_rows(self) -> tuple[list[Any], list[Any], list[Any]]:
        """The identity graph's persistent parts: edges, separations, bases."""
        ...

    def catch_up_identity(self) -> None:
        """Fold into this worker's graph what other workers committed (before an unmerge
        is checked against it); raises Redo when it must be reloaded instead."""
        ...

    def commit(self, changes: BatchChanges) -> None:
        """Write a batch's changes and offsets in one transaction; offsets never go back."""
        ...

    def scores_due(self, idle: bool = False) -> bool:
        """Whether a round of ``score_queued`` is due (``idle``: nothing more to read)."""
        ...

    def score_queued(self) -> int:
        """Score the customers committed batches queued and no round scored yet (the
        scores are off the batch path); returns how many ids were scored."""
        ...


class FigureJob(Protocol):
    """The figures that move with the clock (adapters/figurestore.py): recomputed by the
    periodic job, one worker at a time."""

    def refresh_figures(self, now: int | None = None) -> dict[str, int]: ...


class RetentionJob(Protocol):
    """Data that expires (adapters/retention.py): a run erases the customers inactive for
    longer than the policy allows, when one is due; one worker at a time."""

    def run_due(self, now: int | None = None) -> dict[str, int]: ...


class KeyRing(Protocol):
    """Which data keys an erasure destroyed (adapters/keystore.py)."""

    def is_destroyed(self, key_id: str) -> bool: ...


class IdentityRequests(Protocol):
    """Unmerges and erasures an admin asked for through the API, waiting for the worker
    (adapters/control.py ``AdminRequests``)."""

    def pending_unmerges(self) -> list[dict[str, Any]]: ...

    def finish_unmerge(self, seq: int, error: str) -> None: ...

    def pending_erasures(self) -> list[dict[str, Any]]: ...

    def finish_erasure(self, seq: int, result: dict[str, Any]) -> None: ...

    def erasures(self) -> dict[str, list[tuple[int, str]]]: ...


class Positions(Protocol):
    """How far a relay or a webhook delivery has come (and, on the embedded broker, the
    records it published, kept in the same transaction)."""

    def position(self, name: str) -> int: ...

    def advance(self, name: str, position: int,
                records: Sequence[ArchivedRecord] = ()) -> None: ...


class AlertLog(Protocol):
    """The alert log: each alert once, by its id, numbered in the order it was added."""

    def add_alert(self, alert: NewAlert) -> int | None: ...

    def add_alerts(self, alerts: Sequence[NewAlert]) -> list[int | None]: ...

    def alert_ids(self, prefix: str) -> set[str]: ...

    def alerts(self, *, after: int = 0, before: int | None = None, kinds: Iterable[str] = (),
               limit: int = 100, newest_first: bool = False) -> list[dict[str, Any]]: ...


class Escalation(AlertLog, Protocol):
    """What the escalation rules read and write: complaint history, erasures, alerts."""

    def record_complaint(self, event_id: str, customer_id: str, occurred_ms: int,
                         case_id: str | None = None) -> None: ...

    def complaints_between(self, customer_id: str, start_ms: int, end_ms: int,
                           ) -> list[tuple[int, str, str | None]]: ...

    def record_complaints(self, rows: Sequence[tuple[str, str, int, str | None]]) -> None: ...

    def complaints_known(self, event_ids: Sequence[str]) -> set[str]: ...

    def complaints_around(self, spans: Mapping[str, tuple[int, int]],
                          ) -> dict[str, list[tuple[int, str, str | None]]]: ...

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

    def batch(self, interactions: Sequence[tuple[str, dict[str, Any]]] = (),
              ) -> AbstractContextManager[None]: ...

    def peek(self, case_id: str) -> Any: ...

    def stored(self, case_id: str) -> Any: ...

    def versions_of(self, case_ids: Sequence[str]) -> dict[str, int]: ...

    def case_ids(self) -> Iterator[str]: ...

    def calendars(self) -> dict[str, BusinessCalendar]: ...


class CaseNotFound(Exception):
    """No case with that id."""
