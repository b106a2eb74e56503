"""The projector: interactions topic -> decode -> timeline projection -> read store.

This is the high-volume path, so it reads with an aiokafka ``getmany`` loop inside the
faust worker (streams/app.py) instead of a faust agent: faust's per-message machinery
costs ~250 µs a record here, the batch loop ~15 µs (docs/ARCHITECTURE.md, "Throughput").
At-least-once: offsets are stored in the read store in the same transaction as the
projection rows, and every row is keyed by event id, so a redelivered record changes
nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from ..adapters import kafka
from ..adapters.avro import DecodeError, EnvelopeCodec
from ..adapters.config import Settings
from ..adapters.readstore import ReadStoreWriter
from ..adapters.records import RecordCodec
from ..domain.interactions import validate_envelope
from ..projections import timeline
from .identity import IdentityKeeper
from .ports import GAP_HEADER, ArchivedRecord

log = structlog.get_logger(__name__)


@dataclass
class Progress:
    records: int = 0
    events: int = 0
    dead_letters: int = 0


class _SeekToStored(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, projector: Projector) -> None:
        self.projector = projector

    async def on_partitions_revoked(self, revoked: Any) -> None:
        # a commit may be in flight; the offsets read on the next assignment queue behind
        # it on the writer thread, and rows are keyed by event id, so a partition that
        # moves to another worker is at worst re-read, never skipped
        pass

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.projector.seek_stored(assigned)


class Projector:
    def __init__(self, settings: Settings, codec: EnvelopeCodec, producer: AIOKafkaProducer,
                 writer: ReadStoreWriter, *, max_records: int = 5000,
                 on_assigned: Callable[[], None] | None = None,
                 case_codec: RecordCodec | None = None,
                 case_stage: Callable[[list[tuple[str, dict[str, Any]]]], None] | None = None,
                 ) -> None:
        self.settings = settings
        self.codec = codec
        self.producer = producer
        self.writer = writer
        self.topic = settings.interactions_topic
        # case events (contactstream.cases.v1) join the timeline and the cases read model
        self.case_codec = case_codec
        self.cases_topic = settings.cases_topic
        self.topics = [self.topic] + ([self.cases_topic] if case_codec else [])
        # what interactions do to cases and alerts (streams/casework.py), before commit
        self.case_stage = case_stage
        self.archive = settings.embedded_broker
        self.max_records = max_records
        self.progress = Progress()
        self.on_assigned = on_assigned
        self.keys: Any = None  # the key store, to recognise erased customers' events
        # the identity graph (streams/identity.py); None: first-writer resolution only
        self.identity: IdentityKeeper | None = None
        self.control: Any = None  # where unmerge and erasure requests wait (adapters/control.py)
        # carries out an erasure's purge: (customer, bases, key ids) -> Erasure
        self.purge: Callable[[str, list[str], list[str]], Any] | None = None
        # the figures' periodic job (adapters/readstore.py), run once more at the end of a
        # replay: no stored figure is left past its valid_until, and RFM is scored against
        # the whole base
        self.refresh_figures: Callable[[], Any] | None = None
        self.dead_letter = True
        self._pending: asyncio.Future[Any] | None = None
        self._pending_offsets: dict[tuple[str, int], int] = {}
        self.consumer: AIOKafkaConsumer | None = None
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="readstore")

    async def _db_call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    async def seek_stored(self, assigned: Any) -> None:
        assert self.consumer is not None
        stored = {t: await self._db_call(self.writer.offsets, t) for t in self.topics}
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
        """Consume and project. ``group=False`` reads all partitions without a group (replay,
        bench); ``until_end`` stops at the end offsets seen at the start."""
        if self.identity is not None:
            await self._db_call(self.identity.load, self.writer)
        if group:
            self.consumer = kafka.consumer(self.settings, group_id=self.settings.projector_group)
            await self.consumer.start()
            self.consumer.subscribe(self.topics, listener=_SeekToStored(self))
        else:
            self.consumer = kafka.consumer(self.settings, group_id=None)
            await self.consumer.start()
            tps = self._all_partitions()
            self.consumer.assign(tps)
            await self.seek_stored(tps)
        try:
            end: dict[TopicPartition, int] = {}
            if until_end:
                end = await self._end_offsets()
            while True:
                batch = await self.consumer.getmany(timeout_ms=300, max_records=self.max_records)
                await self._unmerges()
                if batch:
                    await self.process(batch)
                    if on_batch:
                        on_batch(self.progress)
                elif until_end and await self._reached(end):
                    # an empty fetch past the listed end offsets: the embedded broker's
                    # ListOffsets answers the last *batch's* base offset + 1, so the listed
                    # end is only a lower bound and an idle fetch marks the real end
                    break
            await self.flush()
            if until_end and self.refresh_figures is not None:
                await self._db_call(self.refresh_figures)
        finally:
            if self._pending is not None:  # cancelled mid-commit: let it land, then stop
                await asyncio.gather(self._pending, return_exceptions=True)
                self._pending = None
            await self.consumer.stop()
        return self.progress

    def _all_partitions(self) -> list[TopicPartition]:
        assert self.consumer is not None
        return [TopicPartition(t, p) for t in self.topics
                for p in sorted(self.consumer.partitions_for_topic(t) or ())]

    async def _end_offsets(self) -> dict[TopicPartition, int]:
        assert self.consumer is not None
        return dict(await self.consumer.end_offsets(self._all_partitions()))

    async def _reached(self, end: dict[TopicPartition, int]) -> bool:
        assert self.consumer is not None
        for tp, last in end.items():
            if last > 0 and await self.consumer.position(tp) < last:
                return False
        return True

    async def process(self, batch: dict[TopicPartition, list[Any]]) -> None:
        identity = None
        envelopes: list[dict[str, Any]] = []
        archive: list[ArchivedRecord] = []
        dead: list[tuple[Any, str]] = []
        offsets: dict[tuple[str, int], int] = {}
        decode = self.codec.decode
        case_records = []
        for tp, records in batch.items():
            if tp.topic != self.topic:
                for rec in records:
                    offsets[(tp.topic, tp.partition)] = rec.offset + 1
                    if any(h[0] == GAP_HEADER for h in rec.headers or ()):
                        continue
                    if self.archive:
                        archive.append(ArchivedRecord(tp.topic, tp.partition, rec.offset,
                                                      rec.key, rec.value,
                                                      list(rec.headers or ()), rec.timestamp))
                    case_records.append(rec)
                continue
            for rec in records:
                offsets[(tp.topic, tp.partition)] = rec.offset + 1
                headers = list(rec.headers or ())
                if any(h[0] == GAP_HEADER for h in headers):
                    continue
                if self.archive:
                    archive.append(ArchivedRecord(tp.topic, tp.partition, rec.offset, rec.key,
                                                  rec.value, headers, rec.timestamp))
                try:
                    env = decode(rec.value)
                except DecodeError as exc:
                    dead.append((rec, f"decode: {exc}"))
                    continue
                errors = validate_envelope(env)
                if errors:
                    dead.append((rec, "invalid: " + "; ".join(errors)))
                    continue
                envelopes.append(env)
        if dead and self.dead_letter:
            archive.extend(await self._dead_letter(dead))
        elif dead:  # a replay: these went to the DLQ when first read
            self.progress.dead_letters += len(dead)
        state = None
        if envelopes:
            region = self.settings.default_region
            known = {}
            if self.identity is None:  # first-writer resolution needs the stored owners
                needed = timeline.needed_identifiers(envelopes, region)
                # on the writer thread after the commit in flight, so it sees its rows
                known = await self._db_call(self.writer.known_identifiers, needed)
            destroyed = self._destroyed(envelopes)
            state = timeline.TimelineState(region=region, known=known, destroyed=destroyed)
            if self.identity is not None:
                identity = await self._db_call(self.identity.resolve_batch, envelopes,
                                               destroyed)
                state.assigned = identity.bases
                if identity.merges:
                    await self._db_call(self.identity.record_history, identity)
            for env in envelopes:
                state = timeline.apply(state, env)
            if self.case_stage is not None:
                # idempotent (every command carries its event id), so it runs before the
                # commit: a crash in between replays it harmlessly
                resolved = [(e.customer_id, env) for e, env in zip(state.entries, envelopes,
                                                                   strict=True)]
                await self._db_call(self.case_stage, resolved)
        case_rows: list[dict[str, Any]] = []
        if case_records:
            state = state or timeline.TimelineState(region=self.settings.default_region)
            case_rows = self._case_events(case_records, state)
        # One commit in flight while the next batch is fetched and decoded: SQLite works in
        # its thread (releasing the GIL) as this loop decodes. Commits stay in order (one
        # writer thread), and the identifiers the next batch reads are those of committed
        # batches plus this one, which is awaited before the next lookup.
        await self.flush()
        self._pending = asyncio.ensure_future(
            self._db_call(self.writer.commit, state, archive, offsets, case_rows, identity))
        self._pending_offsets = offsets
        self.progress.records += sum(len(r) for r in batch.values())
        self.progress.events += len(envelopes)

    async def flush(self) -> None:
        """Wait for the commit in flight, then report its offsets to the group."""
        pending, self._pending = self._pending, None
        if pending is not None:
            await pending
            await self._commit_group(self._pending_offsets)

    async def _unmerges(self) -> None:
        """Unmerges an admin asked for through the API (they wait in the control store)."""
        if self.identity is None or self.control is None:
            return
        for cmd in await self._db_call(self.control.pending_erasures):
            await self.flush()  # nothing of an earlier batch may land after this
            await self._erase(cmd)
        for cmd in await self._db_call(self.control.pending_unmerges):
            await self.flush()
            try:
                done = await self._db_call(self.identity.unmerge, cmd["survivor"],
                                           cmd["member"], f"unmerge:{cmd['seq']}")
            except (KeyError, ValueError) as exc:
                if self.identity.separated(cmd["survivor"], cmd["member"]):
                    done = None  # carried out before a crash: only the history is missing
                else:
                    log.info("identity.unmerge_refused", seq=cmd["seq"], error=str(exc)[:80])
                    await self._db_call(self.control.finish_unmerge, cmd["seq"],
                                        str(exc)[:200])
                    continue
            if done is not None:
                await self._db_call(self.writer.commit, None, [], {}, [], done)
            await self._db_call(self.identity.record_unmerge, cmd["member"], cmd["by"],
                                f"{cmd['reason']} (request {cmd['seq']})")
            await self._db_call(self.control.finish_unmerge, cmd["seq"], "")
            log.info("identity.unmerged", seq=cmd["seq"])

    async def _erase(self, cmd: dict[str, Any]) -> None:
        """The read-store side of an erasure the API asked for (adapters/erasure.py)."""
        assert self.identity is not None and self.control is not None
        assert self.purge is not None  # wired with the control store (adapters/bootstrap)
        payload = cmd["payload"] or {}
        try:
            done = await self._db_call(self.purge, cmd["customer_id"],
                                       payload.get("bases") or [cmd["customer_id"]],
                                       payload.get("key_ids") or [])
            await self._db_call(self.identity.load, self.writer)
        except Exception as exc:  # noqa: BLE001 - reported to the API, retried on restart
            log.error("erasure.failed", seq=cmd["seq"], error=type(exc).__name__)
            raise
        await self._db_call(self.control.finish_erasure, cmd["seq"], {
            "keys_destroyed": done.keys_destroyed, "timeline_rows": done.timeline_rows,
            "pseudonyms": done.pseudonyms})

    def _destroyed(self, envelopes: list[dict[str, Any]]) -> frozenset[str]:
        """The batch's data keys that an erasure destroyed (a replay after erasure)."""
        if self.keys is None:
            return frozenset()
        key_ids = {e["key_id"] for e in envelopes if e.get("key_id")}
        return frozenset(k for k in key_ids if self.keys.is_destroyed(k))

    def _case_events(self, records: list[Any], state: timeline.TimelineState,
                     ) -> list[dict[str, Any]]:
        """Case events: a timeline entry each, and the newest state of each case."""
        assert self.case_codec is not None
        rows: dict[str, dict[str, Any]] = {}
        erased = self.control.erasures() if self.control is not None else {}
        for rec in records:
            try:
                ev = self.case_codec.decode(rec.value)
            except DecodeError as exc:
                log.warning("projector.bad_case_event", partition=rec.partition,
                            offset=rec.offset, reason=str(exc)[:60])
                continue
            at_ms = timeline.occurred_ms(ev["occurred_at"])
            opened_ms = int(ev["data"].get("opened_ms") or at_ms)
            for when, pseudonym in erased.get(ev["customer_id"], ()):
                if opened_ms <= when:  # a case of the person erased then, not a newcomer's
                    ev["customer_id"] = pseudonym
                    ev["data"].pop("resolution", None)
            state.entries.append(timeline.TimelineEntry(
                customer_id=ev["customer_id"], event_id=ev["event_id"], type=ev["type"],
                channel=ev["channel"], occurred_at=ev["occurred_at"], occurred_ms=at_ms,
                received_at=rec.timestamp, source="contactstream", agent_id=ev["agent_id"],
                queue=ev["queue"], case_id=ev["case_id"],
                payload={"status": ev["status"], "priority": ev["priority"],
                         "policy": ev["policy"], **ev["data"]}))
            prev = rows.get(ev["case_id"])
            if prev is None or ev["version"] > prev["version"]:
                rows[ev["case_id"]] = {**ev, "occurred_ms": at_ms}
        return list(rows.values())

    async def _dead_letter(self, dead: list[tuple[Any, str]]) -> list[ArchivedRecord]:
        """Send undecodable or invalid records to the DLQ with the reason in headers; the
        batch goes on. Returns them for the local archive."""
        topic = self.settings.dlq_topic
        sent = []
        for rec, reason in dead:
            headers = [("contactstream-error", reason[:1000].encode()),
                       ("contactstream-source-topic", rec.topic.encode()),
                       ("contactstream-source-partition", str(rec.partition).encode()),
                       ("contactstream-source-offset", str(rec.offset).encode())]
            fut = await self.producer.send(topic, rec.value, key=rec.key, headers=headers)
            sent.append((rec, headers, fut))
        out = []
        for rec, headers, fut in sent:
            meta = await fut
            out.append(ArchivedRecord(topic, meta.partition, meta.offset, rec.key, rec.value,
                                      headers, int(time.time() * 1000)))
            log.warning("projector.dead_letter", topic=rec.topic, partition=rec.partition,
                        offset=rec.offset, reason=dict(headers)["contactstream-error"][:60])
        self.progress.dead_letters += len(dead)
        return out if self.archive else []

    async def _commit_group(self, offsets: dict[tuple[str, int], int]) -> None:
        """Also tell the group where we are, for lag monitoring; the read store's offsets
        are the ones that count."""
        assert self.consumer is not None
        if self.consumer._group_id is None:  # noqa: SLF001 - no group: nothing to tell
            return
        try:
            await self.consumer.commit({TopicPartition(t, p): o for (t, p), o in offsets.items()})
        except (CommitFailedError, KafkaError) as exc:
            log.info("projector.group_commit_skipped", error=type(exc).__name__)
