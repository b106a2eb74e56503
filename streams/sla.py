"""SLA timers and escalation rules: alerts from events, each exactly once.

Timers are event-driven: after each case event the case's due instants (warning at
``warn_at`` of the target, breach at the deadline; domain/sla.py) are recomputed and one
task per case sleeps until the next. Nothing sweeps on a schedule. The clock is
injectable so tests drive time. An alert's id is derived from what caused it (case id and
due key, or the complaint / survey event), and the alert log ignores a second insert of
the same id, so restarts and replays never emit one twice.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog

from ..domain import sla
from ..domain.interactions import parse_occurred_at
from .ports import CaseNotFound, CaseStore, Escalation, NewAlert

log = structlog.get_logger(__name__)

REPEAT_WINDOW = timedelta(days=30)
_WINDOW_MS = int(REPEAT_WINDOW.total_seconds() * 1000)
REPEAT_COUNT = 3


class Clock(Protocol):
    def now(self) -> datetime: ...

    async def sleep_until(self, at: datetime) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, at: datetime) -> None:
        while (delay := (at - self.now()).total_seconds()) > 0:
            await asyncio.sleep(delay)


class ManualClock:
    """A clock that only moves when told (tests): ``advance`` wakes the sleepers due."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> datetime:
        return self._now

    async def sleep_until(self, at: datetime) -> None:
        if at <= self._now:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (at, next(self._seq), fut))
        await fut

    async def advance(self, seconds: float) -> None:
        """Move time on and let every task that was due run."""
        self._now += timedelta(seconds=seconds)
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)
        for _ in range(20):  # let woken tasks (and what they wake) run
            await asyncio.sleep(0)


@dataclass(frozen=True)
class CaseTimers:
    """What a case's timers need, computed where the case is at hand (no reload)."""

    id: str
    customer_id: str
    priority: str
    queue: str | None
    version: int
    dues: tuple[sla.Due, ...]
    opened_ms: int = 0


def timers_of(case: Any, calendars: Any) -> CaseTimers:
    return CaseTimers(str(case.id), case.customer_id, case.priority, case.queue, case.version,
                      tuple(case.due_times(calendars)),
                      int(case.opened_at.timestamp() * 1000))


def _ms(env: dict[str, Any]) -> int:
    return int(parse_occurred_at(env["occurred_at"]).timestamp() * 1000)


def _level(kind: str) -> str:
    return "critical" if kind == sla.BREACHED else "warning"


class SlaScheduler:
    """One timer task per case with a running clock."""

    def __init__(self, cases: CaseStore, control: Escalation, clock: Clock,
                 on_alert: Callable[[], None] = lambda: None) -> None:
        self.cases = cases
        self.control = control
        self.clock = clock
        self.on_alert = on_alert
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.emitted = 0
        self._asleep: set[asyncio.Task[None]] = set()
        # case -> version its timers were last set from (to skip redundant reloads)
        self._versions: dict[str, int] = {}
        # one thread for every database call of the timers: they run in order
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sla")
        # set by start(): the worker's timers run; a replay never starts them
        self.started = False
        # timers whose alerts fell due, waiting for the one writer of them (_fire)
        self._due: list[tuple[CaseTimers, list[sla.Due], asyncio.Future[int | None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    def reschedule(self, case_id: str, timers: CaseTimers | None = None) -> None:
        """After a change of the case: its timers anew. ``timers`` spares a reload when
        the caller has the case at hand; a case with no due instants needs no task."""
        old = self._tasks.pop(case_id, None)
        if old is not None:
            old.cancel()
        if timers is not None:
            self._versions[case_id] = timers.version
            if not timers.dues:
                return
        else:
            self._versions.pop(case_id, None)
        task = asyncio.get_running_loop().create_task(self._run(case_id, timers))
        self._tasks[case_id] = task
        task.add_done_callback(lambda t: self._done(case_id, t))

    def changed(self, case_id: str, version: int) -> None:
        """A case event seen on its way to Kafka (e.g. an agent's command in the API):
        reschedule unless the timers already reflect that version."""
        if self._versions.get(case_id, -1) >= version:
            return
        self.reschedule(case_id)

    def changed_all(self, refs: Iterable[tuple[str, int]]) -> None:
        """``changed`` for each (case id, version) a relay published."""
        for case_id, version in refs:
            self.changed(case_id, version)

    def _done(self, case_id: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(case_id) is task:
            del self._tasks[case_id]
        if not task.cancelled() and task.exception() is not None:
            log.error("sla.timer_failed", case_id=case_id, error=repr(task.exception()))

    @property
    def armed(self) -> int:
        """Cases with a timer task (the metric contactstream_sla_timers_armed)."""
        return len(self._tasks)

    @property
    def busy(self) -> int:
        """Timer tasks computing now, not asleep until their next instant."""
        return sum(1 for t in self._tasks.values() if t not in self._asleep and not t.done())

    async def settled(self, timeout: float = 10.0) -> None:
        """Wait until every timer is asleep until its next instant (tests, benchmarks)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.busy and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.002)

    async def _db_call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    async def _load(self, case_id: str) -> CaseTimers | None:
        # from the store itself: the worker's case cache belongs to its writer thread
        try:
            case = await self._db_call(self.cases.stored, case_id)
        except CaseNotFound:
            return None
        return timers_of(case, await self._db_call(self.control.calendars))

    async def _run(self, case_id: str, timers: CaseTimers | None = None) -> None:
        # The case as it is now; any later change of it reschedules (this task is then
        # cancelled), so the due instants computed here stay right until they fire.
        case = timers or await self._load(case_id)
        if case is None or not case.dues:
            return
        dues = case.dues
        emitted = await self._db_call(self.control.alert_ids, f"{case_id}:")
        pending = sorted((d for d in dues if f"{case_id}:{d.key}" not in emitted),
                         key=lambda d: d.at)
        while True:
            now = self.clock.now()
            due = [d for d in pending if d.at <= now]  # pending is in time order
            if due:
                if await self._fire(case, due) != case.version:
                    # an agent changed the case since this timer was set and its
                    # reschedule has not arrived yet (API commands reach the worker
                    # through the outbox): the case as stored now decides
                    fresh = await self._load(case_id)
                    if fresh is None:
                        return
                    case = fresh
                    keys = {d.key for d in pending}
                    pending = sorted((d for d in case.dues if d.key in keys),
                                     key=lambda d: d.at)
                    continue
                pending = pending[len(due):]
            later = [d.at for d in pending]
            if not later:
                return
            me = asyncio.current_task()
            assert me is not None
            self._asleep.add(me)  # type: ignore[arg-type]
            try:
                await self.clock.sleep_until(min(later))
            finally:
                self._asleep.discard(me)  # type: ignore[arg-type]

    async def _fire(self, case: CaseTimers, dues: list[sla.Due]) -> int | None:
        """Emit the case's alerts that fell due, unless the case is no longer at the
        version its timers were computed from; the case's stored version either way.

        What falls due together (a burst of breaches at one deadline) is emitted together:
        one query for the versions and one transaction for the alerts, however many cases.
        One at a time, on the timers' one database thread, the last of 1,000 waited for
        the 999 before it (~0.3 ms each)."""
        fut: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._due.append((case, dues, fut))
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        return await fut

    async def _flush(self) -> None:
        try:
            while self._due:
                # what came due while the last lot was written goes in the next one; a
                # timer cancelled meanwhile (its case changed again) no longer asks
                batch = [item for item in self._due if not item[2].done()]
                self._due = []
                if not batch:
                    continue
                try:
                    versions = await self._db_call(
                        self._emit, [(case, dues) for case, dues, _ in batch])
                except Exception:  # noqa: BLE001 - each timer's own fate, below
                    # one at a time: a failure costs only its own timer (logged), as
                    # before the lots; a passing failure of the lot costs none
                    log.warning("sla.lot_failed", timers=len(batch), action="one by one")
                    for case, dues, fut in batch:
                        try:
                            [version] = await self._db_call(self._emit, [(case, dues)])
                        except Exception as exc:  # noqa: BLE001 - handed to its timer
                            if not fut.done():
                                fut.set_exception(exc)
                        else:
                            if not fut.done():
                                fut.set_result(version)
                    continue
                for (*_, fut), version in zip(batch, versions, strict=True):
                    if not fut.done():
                        fut.set_result(version)
        finally:
            self._flusher = None

    def _emit(self, batch: list[tuple[CaseTimers, list[sla.Due]]]) -> list[int | None]:
        versions = self.cases.versions_of([case.id for case, _ in batch])
        erasures = self.control.erasures()
        alerts: list[NewAlert] = []
        for case, dues in batch:
            if versions.get(case.id) != case.version:
                continue  # the timer reloads the case and asks again
            customer = case.customer_id
            for when, pseudonym in erasures.get(customer, ()):
                if case.opened_ms <= when:  # the person was erased: the alert stays anonymous
                    customer = pseudonym
            at = self.clock.now().isoformat()
            alerts += [NewAlert(
                id=f"{case.id}:{due.key}", kind=due.kind, at=at, level=_level(due.kind),
                case_id=case.id, customer_id=customer, metric=due.metric,
                due_at=due.due_at.isoformat(),
                detail={"priority": case.priority, "queue": case.queue or "",
                        "cycle": str(due.cycle)}) for due in dues]
        seqs = self.control.add_alerts(alerts) if alerts else []
        for alert, seq in zip(alerts, seqs, strict=True):
            if seq is not None:
                self.emitted += 1
                log.debug("sla.alert", kind=alert.kind, case_id=alert.case_id,
                          metric=alert.metric, seq=seq)
        if any(seq is not None for seq in seqs):
            self.on_alert()
        return [versions.get(case.id) for case, _ in batch]

    async def start(self) -> int:
        """After a (re)start: a timer for every case, so what fell due while nobody was
        running is emitted at once and the rest on time."""
        self.started = True  # first: a case saved after the listing below is rescheduled
        ids = await asyncio.to_thread(self._all_case_ids)
        for case_id in ids:
            self.reschedule(case_id)
        return len(ids)

    def _all_case_ids(self) -> list[str]:
        return list(self.cases.case_ids())

    async def stop(self) -> None:
        self.started = False
        tasks = list(self._tasks.values())
        if self._flusher is not None:
            tasks.append(self._flusher)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class Escalations:
    """Alerts that come straight from interactions: a third complaint within 30 days, and
    a low satisfaction answer (CSAT 1-2, NPS 0-6)."""

    def __init__(self, control: Escalation, clock: Clock,
                 on_alert: Callable[[], None] = lambda: None) -> None:
        self.control = control
        self.clock = clock
        self.on_alert = on_alert
        self.raised = False
        # inside batch(): the batch's customers' complaint history, kept up to date as each
        # complaint is handled; the complaint ids recorded (under any customer: the log
        # keeps an id once); the complaints to record at the end
        self._history: dict[str, list[tuple[int, str, str | None]]] | None = None
        self._seen: set[str] = set()
        self._recorded: list[tuple[str, str, int, str | None]] = []
        # inside batch(): the alerts raised, added in one statement at the end (three
        # statements an alert, one by one, were most of a batch's round trips)
        self._alerts: list[NewAlert] | None = None

    @contextmanager
    def batch(self, resolved: Sequence[tuple[str, dict[str, Any]]]) -> Iterator[None]:
        """Around handling ``resolved`` in the caller's batch transaction: the complaint
        history of the batch's complainants is read in one query, and the batch's
        complaints are recorded in one statement at the end, and so are the batch's alerts
        (in the order raised; each once, as one by one). Handling each complaint sees what
        handling it alone would (the history before it plus the batch's complaints before
        it), so the alerts and their details are the same."""
        complaints = [(c, env) for c, env in resolved if env["type"] == "complaint.filed"]
        self._alerts = []
        try:
            with self._complaints(complaints) if complaints else nullcontext():
                yield
            self._add_all(self._alerts)
        finally:
            self._alerts = None

    @contextmanager
    def _complaints(self, complaints: Sequence[tuple[str, dict[str, Any]]],
                    ) -> Iterator[None]:
        spans: dict[str, tuple[int, int]] = {}
        for customer_id, env in complaints:
            ms = _ms(env)
            lo, hi = spans.get(customer_id, (ms, ms))
            spans[customer_id] = (min(lo, ms), max(hi, ms))
        self._history = self.control.complaints_around(
            {c: (lo - _WINDOW_MS, hi + _WINDOW_MS) for c, (lo, hi) in spans.items()})
        # an id recorded before, maybe under another customer (a merge, an erasure's
        # pseudonym): as alone, recording it again changes nothing
        self._seen = self.control.complaints_known([env["event_id"] for _, env in complaints])
        self._recorded = []
        try:
            yield
            self.control.record_complaints(self._recorded)
        finally:
            self._history, self._seen, self._recorded = None, set(), []

    def flush(self) -> None:
        """Tell the alert relay, after the transaction holding new alerts committed."""
        if self.raised:
            self.raised = False
            self.on_alert()

    def handle(self, customer_id: str, env: dict[str, Any]) -> None:
        if env["type"] == "complaint.filed":
            self._complaint(customer_id, env)
        elif env["type"] == "survey.answered":
            p = env["payload"]
            kind, score = p.get("kind"), p.get("score")
            if (kind == "csat" and score <= 2) or (kind == "nps" and score <= 6):
                self._add(NewAlert(
                    id=f"{sla.LOW_SATISFACTION}:{env['event_id']}",
                    kind=sla.LOW_SATISFACTION, at=self.clock.now().isoformat(),
                    level="warning", case_id=env.get("case_id"), customer_id=customer_id,
                    detail={"survey": kind, "score": str(score), "agent_id":
                            env.get("agent_id") or "", "queue": env.get("queue") or ""}))

    def _complaint(self, customer_id: str, env: dict[str, Any]) -> None:
        at_ms = _ms(env)
        # the complaints whose trailing window this one may complete (late ones included)
        if self._history is not None:
            history = self._history[customer_id]
            if env["event_id"] not in self._seen:  # each complaint once
                self._seen.add(env["event_id"])
                bisect.insort(history, (at_ms, env["event_id"], env.get("case_id")))
                self._recorded.append((env["event_id"], customer_id, at_ms,
                                       env.get("case_id")))
            around = [c for c in history if at_ms - _WINDOW_MS < c[0] <= at_ms + _WINDOW_MS]
        else:
            self.control.record_complaint(env["event_id"], customer_id, at_ms,
                                          env.get("case_id"))
            around = self.control.complaints_between(customer_id, at_ms - _WINDOW_MS,
                                                     at_ms + _WINDOW_MS)
        # A complaint escalates when at least two others came in the 30 days before it (the
        # third, and any further one, of a streak). That is a property of the set of
        # complaints, not of their order of arrival: a late complaint can only add
        # escalations (its own, or of a later one it now makes the third), never change one.
        times = [ms for ms, _, _ in around]
        start = bisect.bisect_left([(ms, eid) for ms, eid, _ in around],
                                   (at_ms, env["event_id"]))
        for j in range(start, len(around)):
            if j - start + 1 > REPEAT_COUNT:
                break  # later ones had two others in their window before this one came
            # each alert names the case of the complaint it is about (that complaint's,
            # not the one that came in now and made it the third)
            ms, eid, case_id = around[j]
            trailing = around[bisect.bisect_right(times, ms - _WINDOW_MS):j + 1]
            if len(trailing) >= REPEAT_COUNT:
                self._add(NewAlert(
                    id=f"{sla.REPEAT_COMPLAINT}:{customer_id}:{eid}",
                    kind=sla.REPEAT_COMPLAINT, at=self.clock.now().isoformat(),
                    level="critical", case_id=case_id, customer_id=customer_id,
                    detail={"complaints_in_30_days": str(len(trailing)),
                            "first_complaint_event": trailing[0][1]}))

    def _add(self, alert: NewAlert) -> None:
        if self._alerts is not None:
            self._alerts.append(alert)  # inside batch(): added at its end
        else:
            self._add_all([alert])

    def _add_all(self, alerts: Sequence[NewAlert]) -> None:
        for alert, seq in zip(alerts, self.control.add_alerts(alerts), strict=True):
            if seq is not None:
                log.debug("escalation.alert", kind=alert.kind, seq=seq)
                self.raised = True  # the caller notifies once its transaction committed
