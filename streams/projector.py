"""The projector: interactions topic -> decode -> identity -> timeline -> cases -> one
commit of the batch's changes with its offsets.

This is the high-volume path, so it reads with an aiokafka ``getmany`` loop inside the
faust worker (streams/app.py) instead of a faust agent: faust's per-message machinery
costs ~250 µs a record here, the batch loop ~15 µs (docs/ARCHITECTURE.md, "Throughput").
At-least-once: offsets are stored in the read store in the same transaction as the
projection rows, and every row is keyed by event id, so a redelivered record changes
nothing. The stages are functions of the batch and the ports (streams/decode.py,
streams/case_events.py, streams/casework.py); this module only wires them to the loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from ..projections import timeline
from .case_events import case_events
from .deadletter import DeadLetters
from .decode import SortedBatch, sort_batch
from .identity import IdentityKeeper
from .ports import (
    BatchChanges,
    ConsumerFactory,
    Decoder,
    KeyRing,
    LeaseHolder,
    ProjectionStore,
    Redo,
    StreamSettings,
    partition_lease,
)
from .requests import RequestWork
from .telemetry import BATCH_SECONDS, note_batch, timed

log = structlog.get_logger(__name__)

# what interactions do to cases and alerts (streams/casework.py): (customer, envelope)s
CaseStage = Callable[[list[tuple[str, dict[str, Any]]]], None]


@dataclass
class Progress:
    records: int = 0
    events: int = 0
    dead_letters: int = 0


class Projector:
    def __init__(self, settings: StreamSettings, decoder: Decoder, store: ProjectionStore,
                 new_consumer: ConsumerFactory, *, dead_letters: DeadLetters | None = None,
                 max_records: int = 5000, on_assigned: Callable[[], None] | None = None,
                 case_decoder: Decoder | None = None, case_stage: CaseStage | None = None,
                 identity: IdentityKeeper | None = None, keys: KeyRing | None = None,
                 requests: RequestWork | None = None,
                 erasures: Callable[[], Mapping[str, Sequence[tuple[int, str]]]] | None = None,
                 refresh_figures: Callable[[], Any] | None = None,
                 leases: LeaseHolder | None = None) -> None:
        self.settings = settings
        self.decoder = decoder
        self.store = store
        self.new_consumer = new_consumer
        self.topic = settings.interactions_topic
        # case events (contactstream.cases.v1) join the timeline and the cases read model
        self.case_decoder = case_decoder
        self.topics = [self.topic] + ([settings.cases_topic] if case_decoder else [])
        self.case_stage = case_stage
        self.archive = settings.embedded_broker
        self.max_records = max_records
        self.progress = Progress()
        self.on_assigned = on_assigned
        self.keys = keys  # to recognise erased customers' events
        # the identity graph (streams/identity.py); None: first-writer resolution only
        self.identity = identity
        self.requests = requests
        self.erasures = erasures
        # the figures' periodic job, run once more at the end of a replay: no stored
        # figure is left past its valid_until, and RFM is scored against the whole base
        self.refresh_figures = refresh_figures
        self.dead_letters = dead_letters
        self.dead_letter = dead_letters is not None  # a replay turns it off
        # many workers (issue 9): the partitions this worker holds leases on, assigned by
        # hand (adapters/ownership.py); each batch commits only while they are still held.
        # None: every partition, by hand (a test's, a bench's or a replay's one reader)
        self.leases = leases
        self._held: dict[int, int] = {}
        self._draining = False
        self._pending: asyncio.Future[Any] | None = None
        self._pending_offsets: Mapping[tuple[str, int], int] = {}
        self.consumer: AIOKafkaConsumer | None = None
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="readstore")
        # the identity and case stages of batch N+1 run here while batch N commits on
        # the writer thread: its database waits overlap the next batch's Python work
        self._compute = ThreadPoolExecutor(max_workers=1, thread_name_prefix="compute")
        # rounds of scores (off the batch path, adapters/readstore.py): beside the commits,
        # one at a time, so a commit never waits for one on the writer thread
        self._scorer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scores")
        self._scoring: asyncio.Future[Any] | None = None
        self._lags: dict[Any, int] = {}  # per partition, for the lag metric

    async def _db_call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """On the one writer thread: calls run in order, after the commit in flight."""
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    async def _compute_call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """On the compute thread, beside the commit in flight (not after it)."""
        return await asyncio.get_running_loop().run_in_executor(self._compute, fn, *args)

    async def seek_stored(self, assigned: Any) -> None:
        assert self.consumer is not None
        stored = {t: await self._db_call(self.store.offsets, t) for t in self.topics}
        for tp in assigned:
            if tp.partition in stored.get(tp.topic, {}):
                self.consumer.seek(tp, stored[tp.topic][tp.partition])
            else:
                await self.consumer.seek_to_beginning(tp)
        log.info("projector.assigned",
                 partitions=sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))
        if self.on_assigned:
            self.on_assigned()

    async def run(self, *, group: bool = True, until_end: bool = False,
                  on_batch: Callable[[Progress], None] | None = None) -> Progress:
        """Consume and project. The partitions are assigned by hand, never by a group
        join: with ``group`` the projector's group id only receives the offsets (lag
        monitoring); ``until_end`` stops at the end offsets seen at the start."""
        if self.identity is not None:
            await self._db_call(self.identity.load, self.store)
        self.consumer = self.new_consumer(self.settings.projector_group if group else None)
        await self.consumer.start()
        if self.leases is not None:
            await self._follow_leases()
        else:
            tps = self._all_partitions()
            self.consumer.assign(tps)
            await self.seek_stored(tps)
        refresh_at_end = until_end
        try:
            end: dict[TopicPartition, int] = {}
            if until_end:
                end = await self._end_offsets()
            while True:
                try:
                    if self._draining and not until_end:
                        until_end, end = True, await self._end_offsets()
                    if not await self._step(until_end, end, on_batch):
                        break
                except Redo as exc:
                    await self._redo(exc)
            await self.settle()
            self._scoring = asyncio.get_running_loop().run_in_executor(
                self._scorer, self.store.score_queued)  # the last round
            await self.settle()
            if refresh_at_end and self.refresh_figures is not None:
                await self._db_call(self.refresh_figures)
        finally:
            if self._pending is not None:  # cancelled mid-commit: let it land, then stop
                await asyncio.gather(self._pending, return_exceptions=True)
                self._pending = None
            if self._scoring is not None:  # and the round of scores, the same
                await asyncio.gather(asyncio.shield(self._scoring), return_exceptions=True)
                self._scoring = None
            await self.consumer.stop()
        return self.progress

    async def _step(self, until_end: bool, end: dict[TopicPartition, int],
                    on_batch: Callable[[Progress], None] | None) -> bool:
        """One fetch and its batch; False once ``until_end`` found the end."""
        assert self.consumer is not None
        if self.leases is not None:
            await self._follow_leases()
            if not self._held:  # nothing of ours to read (yet): the leases decide
                # the singletons' holder may hold no partition
                await self._requests(force=True)
                await asyncio.sleep(0.1)
                return not until_end
        # short enough that a lease gained while idle is read within a few hundred ms
        batch = await self.consumer.getmany(timeout_ms=200, max_records=self.max_records)
        await self._requests(force=not batch)  # with a batch, at most every LOOK_EVERY_S
        if batch:
            await self.process(batch)
            if on_batch:
                on_batch(self.progress)
            return True
        self._score(idle=True)  # the scores a load left queued
        if until_end and await self._reached(end):
            # an empty fetch past the listed end offsets: the embedded broker's
            # ListOffsets answers the last *batch's* base offset + 1, so the listed
            # end is only a lower bound and an idle fetch marks the real end
            return False
        return True

    async def _requests(self, force: bool = False) -> None:
        """The admins' erasures and unmerges, between batches, on the one worker holding
        the singletons (every worker when there are no leases: a test's, a bench's)."""
        if self.requests is not None and (self.leases is None
                                          or self.leases.holds_singletons()):
            await self.requests.run(self._db_call, self.settle, self._compute_call,
                                    force=force)

    async def _follow_leases(self) -> None:
        """Read what this worker holds leases on: give back what is past its share once
        the commit in flight landed, and seek what it gained to the stored offsets."""
        assert self.leases is not None and self.consumer is not None
        held = self.leases.held_partitions()
        surplus = self.leases.surplus() & set(held)
        if surplus:
            await self.flush()
            self.leases.give_back(surplus)
            held = {p: g for p, g in held.items() if p not in surplus}
        if held == self._held:
            return
        await self.flush()
        self._held = held
        tps = [TopicPartition(t, p) for t in self.topics for p in sorted(held)]
        self.consumer.assign(tps)
        if tps:
            await self.seek_stored(tps)  # all of them: assign() forgets positions

    async def _redo(self, exc: Redo) -> None:
        """A refused commit (a lost partition, another worker's unmerge or erasure):
        nothing of it was written; reload the graph, seek back to what is stored."""
        self._pending = None
        log.warning("projector.redo", reason=str(exc)[:160])
        if self.identity is not None:
            await self._db_call(self.identity.load, self.store)
        self._held = {}
        if self.leases is not None:
            await self._follow_leases()
        elif self.consumer is not None:
            await self.seek_stored(list(self.consumer.assignment()))

    def drain(self) -> None:
        """Read on to the end of the log as it is now (every record acknowledged before
        this call), commit, and return from ``run``: a clean stop leaves nothing behind."""
        self._draining = True

    def _all_partitions(self) -> list[TopicPartition]:
        assert self.consumer is not None
        return [TopicPartition(t, p) for t in self.topics
                for p in sorted(self.consumer.partitions_for_topic(t) or ())]

    async def _end_offsets(self) -> dict[TopicPartition, int]:
        assert self.consumer is not None
        return dict(await self.consumer.end_offsets(list(self.consumer.assignment())))

    async def _reached(self, end: dict[TopicPartition, int]) -> bool:
        assert self.consumer is not None
        for tp, last in end.items():
            if last > 0 and await self.consumer.position(tp) < last:
                return False
        return True

    async def process(self, batch: Mapping[Any, Sequence[Any]]) -> None:
        """One fetched batch: its changes are computed here and committed on the writer
        thread while the next batch is fetched and decoded (one commit in flight)."""
        started = time.perf_counter()
        read = sort_batch(batch, self.topic, self.decoder, archive=self.archive)
        if read.dead and self.dead_letter and self.dead_letters is not None:
            published = await self.dead_letters.send(read.dead)
            read.archive.extend(published if self.archive else ())
        self.progress.dead_letters += len(read.dead)
        changes = BatchChanges(archive=read.archive, offsets=read.offsets)
        if self.leases is not None:
            changes.holder = self.leases.worker_id
            changes.fence = {partition_lease(p): self._held.get(p, -1)
                             for p in {p for _, p in read.offsets}}
        if read.envelopes:
            await self._project(read, changes)
        if read.case_records and self.case_decoder is not None:
            state = changes.timeline or timeline.TimelineState(
                region=self.settings.default_region)
            erased = self.erasures() if self.erasures is not None else {}
            changes.cases = case_events(read.case_records, self.case_decoder, state, erased)
            changes.timeline = state
        # Commits stay in order (one writer thread), and the identifiers the next batch
        # reads are those of committed batches plus this one, which is awaited before the
        # next lookup.
        BATCH_SECONDS.labels("process").observe(time.perf_counter() - started)
        await self.flush()
        self._score()  # the batches committed so far queued their customers
        self._pending = asyncio.ensure_future(
            self._db_call(timed("commit", self.store.commit), changes))
        self._pending_offsets = read.offsets
        self.progress.records += sum(len(r) for r in batch.values())
        self.progress.events += len(read.envelopes)
        note_batch(batch, len(read.envelopes), len(read.dead), self._highwater, self._lags)

    def _highwater(self, tp: Any) -> int | None:
        return self.consumer.highwater(tp) if self.consumer is not None else None

    async def _project(self, read: SortedBatch, changes: BatchChanges) -> None:
        """Identity, timeline and the case stage over the batch's valid interactions."""
        envelopes = read.envelopes
        region = self.settings.default_region
        known = {}
        if self.identity is None:  # first-writer resolution needs the stored owners
            needed = timeline.needed_identifiers(envelopes, region)
            # on the writer thread after the commit in flight, so it sees its rows
            known = await self._db_call(self.store.known_identifiers, needed)
        destroyed = self._destroyed(envelopes)
        state = timeline.TimelineState(region=region, known=known, destroyed=destroyed)
        if self.identity is not None:
            # beside the commit in flight: the graph is this worker's own, and a fold of
            # other workers' rows that commit takes meanwhile rewrites this batch at its
            # own commit (IdentityBatch.folds_seen)
            identity = await self._compute_call(self.identity.resolve_batch, envelopes,
                                                destroyed)
            state.assigned = identity.bases
            if identity.merges:
                await self._compute_call(self.identity.record_history, identity)
            changes.identity = identity
        for env in envelopes:
            state = timeline.apply(state, env)
        changes.timeline = state
        if self.case_stage is not None:
            # idempotent (every command carries its event id), so it runs before the
            # commit: a crash in between replays it harmlessly
            resolved = [(e.customer_id, env) for e, env in zip(state.entries, envelopes,
                                                               strict=True)]
            # beside the commit in flight too: cases, their routes and alerts are tables
            # the read-store commit does not write
            await self._compute_call(self.case_stage, resolved)

    async def flush(self) -> None:
        """Wait for the commit in flight, then report its offsets to the group."""
        pending, self._pending = self._pending, None
        if pending is not None:
            await pending
            await self._commit_group(self._pending_offsets)

    async def settle(self) -> None:
        """``flush``, and wait for the round of scores running (before an erasure: no round
        read before it writes an erased customer's scores back)."""
        await self.flush()
        if self._scoring is not None:
            # shielded, and forgotten only once done: a cancel meanwhile leaves it to
            # ``run``'s end to wait for (its thread goes on; the pool must outlive it)
            await asyncio.shield(self._scoring)
            self._scoring = None

    def _score(self, idle: bool = False) -> None:
        """Start a round of scores on the scores thread if one is due and none runs; a
        round that failed raises here, as a failed commit would."""
        if self._scoring is not None:
            if not self._scoring.done():
                return
            scoring, self._scoring = self._scoring, None
            scoring.result()
        if self.store.scores_due(idle):
            self._scoring = asyncio.get_running_loop().run_in_executor(
                self._scorer, self.store.score_queued)

    def _destroyed(self, envelopes: list[dict[str, Any]]) -> frozenset[str]:
        """The batch's data keys that an erasure destroyed (a replay after erasure)."""
        if self.keys is None:
            return frozenset()
        key_ids = {e["key_id"] for e in envelopes if e.get("key_id")}
        return frozenset(k for k in key_ids if self.keys.is_destroyed(k))

    async def _commit_group(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Also tell the group where we are, for lag monitoring; the read store's offsets
        are the ones that count."""
        if self.consumer is None or self.consumer._group_id is None:  # noqa: SLF001
            return  # no group: nothing to tell
        try:
            await self.consumer.commit({TopicPartition(t, p): o for (t, p), o in offsets.items()})
        except (CommitFailedError, KafkaError) as exc:
            log.info("projector.group_commit_skipped", error=type(exc).__name__)
