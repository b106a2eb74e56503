"""Ingest: validate each envelope, drop duplicates, encrypt and Avro-encode, produce,
journal.

An item is acknowledged (counted in ``accepted``) only after Kafka acknowledged it with
acks=all *and* the journal committed it with fsync; see adapters/journal.py. Whatever can
refuse an item (validation, encoding, the record size) is decided for the whole batch
before the first produce, so a refused item is never on Kafka.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer

from ..domain.interactions import screen_envelope
from ..projections.identifiers import possible_phone
from .avro import EnvelopeCodec
from .config import Settings
from .journal import Accepted, Claim, IngestJournal
from .kafka import MAX_RECORD_BYTES, record_size
from .logging import get_logger
from .ownership import BrokerMoved
from .privacy import Privacy

log = get_logger(__name__)


# how often a request tries again the ids another API replica is publishing, and for how
# long before it answers 503 (the other request is stuck: its client retries)
CLAIM_RETRY_S = 0.02
CLAIM_WAIT_S = 10.0
# requests holding a claim (an open transaction on a pooled connection) at once: under
# the API's pool of 16, so reads always find connections
CLAIMS_IN_FLIGHT = 8

class BrokerUnavailable(Exception):
    """Kafka did not acknowledge some items; they were not accepted and may be retried."""


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    # items taken without a bad identifier of theirs (domain.interactions.screen_envelope)
    warnings: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"accepted": self.accepted, "duplicates": self.duplicates,
                               "rejected": sorted(self.rejected, key=lambda r: r["index"])}
        if self.warnings:  # only when there is one: the v1 answer is unchanged otherwise
            out["warnings"] = self.warnings
        return out


class BrokerFence:
    """Journal commits against restarts of the embedded broker (adapters/runner.py).

    A restarted broker is empty until its log is restored from the journal at the old
    offsets; a produce the client library retries into it meanwhile gets an offset that
    the restore will give to another record. So ingest journals (and answers 202) only
    what was produced within one broker *epoch*, and the supervisor, before each start of
    a broker, opens a new epoch and waits for the journal commits of the old one: every
    commit of an old epoch lands before the restore reads the journal, and none after."""

    def __init__(self) -> None:
        self.epoch = 0
        self.open = True  # False from advance() until the new broker's log is back
        self._committing = 0
        self._changed = asyncio.Condition()

    def current(self) -> int | None:
        """The epoch a produce may start in now, or None while a broker is restored."""
        return self.epoch if self.open else None

    async def commit_within(self, epoch: int, commit: Callable[[], Awaitable[Any]]) -> bool:
        """Run ``commit`` if ``epoch`` is still the current one; False if it is not."""
        async with self._changed:
            if self.epoch != epoch:
                return False
            self._committing += 1
        try:
            await commit()
        finally:
            async with self._changed:
                self._committing -= 1
                self._changed.notify_all()
        return True

    async def advance(self) -> None:
        """A broker is about to start: later commits of the old epoch are refused, no
        produce may start until ``reopen``, and this returns once the commits under way
        have landed."""
        async with self._changed:
            self.epoch += 1
            self.open = False
            await self._changed.wait_for(lambda: self._committing == 0)

    def reopen(self) -> None:
        """The new broker holds its log again: produces may start in the new epoch."""
        self.open = True


class Ingestor:
    def __init__(self, settings: Settings, producer: AIOKafkaProducer, codec: EnvelopeCodec,
                 journal: IngestJournal, privacy: Privacy) -> None:
        self.settings = settings
        # personal fields are encrypted before anything leaves this process
        self.privacy = privacy
        self.producer = producer
        self.codec = codec
        self.journal = journal
        self.topic = settings.interactions_topic
        self.max_record_bytes = MAX_RECORD_BYTES
        self.phone_ok = functools.partial(possible_phone, region=settings.default_region)
        # the journal's connection is used from one thread only, one call at a time
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        # event id -> future of "was it accepted", for the same id in concurrent requests
        self._inflight: dict[str, asyncio.Future[bool]] = {}
        self._claims = asyncio.Semaphore(CLAIMS_IN_FLIGHT)
        self.totals = {"accepted": 0, "duplicates": 0, "rejected": 0}
        # the embedded broker's restarts (None: a cluster that keeps its log)
        self.fence: BrokerFence | None = BrokerFence() if settings.embedded_broker else None

    async def _db_call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    async def publish(self, items: list[Any]) -> IngestResult:
        result = IngestResult()
        fresh: dict[str, tuple[int, dict[str, Any]]] = {}
        for index, item in enumerate(items):
            errors, warnings, env = screen_envelope(item, self.phone_ok)
            if not errors and ("key_id" in item or "identity_hashes" in item):
                errors = ["key_id, identity_hashes: set by contactstream, not by publishers"]
            if errors or env is None:
                result.rejected.append({"index": index, "error": "; ".join(errors)})
                continue
            if warnings:
                result.warnings.append({"index": index, "warning": "; ".join(warnings)})
            if env["event_id"] in fresh:
                result.duplicates += 1
            else:
                fresh[env["event_id"]] = (index, env)
        loop = asyncio.get_running_loop()
        mine: dict[str, asyncio.Future[bool]] = {}
        pending = list(fresh)
        while pending:
            # claim ids nobody is publishing right now (no await between check and claim)
            waits = []
            for eid in pending:
                if eid in self._inflight:
                    waits.append((eid, self._inflight[eid]))
                else:
                    mine[eid] = self._inflight[eid] = loop.create_future()
            pending = []
            for eid, fut in waits:
                if await asyncio.shield(fut):
                    del fresh[eid]
                    result.duplicates += 1
                else:
                    pending.append(eid)  # the other request failed: try to claim it again
        claim = None
        try:
            if fresh:
                # held across API replicas until the journal commit (adapters/journal.py)
                claim = await self._claim(list(fresh))
                known = await self._db_call(claim.known, list(fresh))
                for eid in known:
                    del fresh[eid]
                result.duplicates += len(known)
            result.accepted = await self._produce_and_journal(fresh, result, claim)
        except BaseException:
            for fut in mine.values():
                if not fut.done():
                    fut.set_result(False)
            raise
        finally:
            if claim is not None:
                try:
                    await self._db_call(claim.release)  # a no-op once committed
                finally:
                    self._claims.release()
            for eid, fut in mine.items():
                if not fut.done():
                    fut.set_result(eid in fresh)
                self._inflight.pop(eid, None)
        self.totals["accepted"] += result.accepted
        self.totals["duplicates"] += result.duplicates
        self.totals["rejected"] += len(result.rejected)
        log.debug("ingest.batch", items=len(items), accepted=result.accepted,
                  duplicates=result.duplicates, rejected=len(result.rejected))
        return result

    async def _claim(self, ids: list[str]) -> Claim:
        """The ids, all of them, once no other request (of any API replica) holds any;
        at most CLAIMS_IN_FLIGHT at once, so claims never take the whole pool."""
        deadline = time.monotonic() + CLAIM_WAIT_S
        while True:
            await self._claims.acquire()  # given back by ``publish`` when the claim ends
            try:
                claim = await self._db_call(self.journal.claim, ids)
            except BaseException:
                self._claims.release()
                raise
            if not claim.busy:
                return claim
            self._claims.release()
            if time.monotonic() > deadline:
                raise BrokerUnavailable(
                    "these events are being published by another request right now; retry"
                    " them (those it accepts count as duplicates)")
            await asyncio.sleep(CLAIM_RETRY_S)

    def _records(self, fresh: dict[str, tuple[int, dict[str, Any]]], received_at: int,
                 result: IngestResult) -> list[tuple[str, bytes, bytes]]:
        """(event id, key, value) of each item as it will be produced; an item that cannot
        be encoded or would be too big a record is rejected (and taken out of ``fresh``)."""
        sealed_batch = self.privacy.encrypt_batch([env for _, env in fresh.values()])
        records = []
        for eid, (sealed, key) in zip(list(fresh), sealed_batch, strict=True):
            index = fresh[eid][0]
            try:
                value = self.codec.encode({**sealed, "received_at": received_at})
            except (ValueError, TypeError, OverflowError) as exc:
                # validation lets through nothing Avro refuses; if it ever does, the item
                # is refused alone, not the batch
                log.warning("ingest.encode_failed", event_id=eid, error=type(exc).__name__)
                error = f"envelope: cannot be encoded ({type(exc).__name__})"
            else:
                size = record_size(key, value)
                if size <= self.max_record_bytes:
                    records.append((eid, key, value))
                    continue
                error = (f"envelope: {size} bytes on Kafka once encrypted, over the"
                         f" {self.max_record_bytes} a record may have (shorten the free text)")
            del fresh[eid]
            result.rejected.append({"index": index, "error": error})
        return records

    async def _produce_and_journal(self, fresh: dict[str, tuple[int, dict[str, Any]]],
                                   result: IngestResult, claim: Claim | None = None) -> int:
        if not fresh:
            return 0
        received_at = int(time.time() * 1000)
        records = self._records(fresh, received_at, result)
        epoch = self.fence.current() if self.fence is not None else 0
        if epoch is None:  # a request admitted just before the broker died
            raise BrokerUnavailable("the broker is being restarted; none of the events was"
                                    " accepted, retry them")
        sends, rows, failed = [], [], 0
        for eid, key, value in records:
            try:
                fut = await self.producer.send(self.topic, value, key=key)
            except Exception as exc:  # noqa: BLE001 - not queued: reported as 503 below
                failed += 1
                log.warning("ingest.produce_failed", event_id=eid, error=type(exc).__name__)
                continue
            sends.append((eid, key, value, fut))
        for eid, key, value, fut in sends:
            try:
                meta = await fut
            except Exception as exc:  # noqa: BLE001 - reported as 503 below
                failed += 1
                log.warning("ingest.produce_failed", event_id=eid, error=type(exc).__name__)
                continue
            rows.append(Accepted(eid, self.topic, meta.partition, meta.offset, key, value,
                                 received_at))
        record = self.journal.record if claim is None else claim.commit
        try:
            committed = True
            if self.fence is None:
                await self._db_call(record, rows)
            else:
                committed = await self.fence.commit_within(
                    epoch, functools.partial(self._db_call, record, rows))
        except BrokerMoved as exc:  # the `up` this replica joined restarted its broker
            log.warning("ingest.broker_restarted", events=len(rows))
            raise BrokerUnavailable(str(exc)) from None
        if not committed:
            log.warning("ingest.broker_restarted", events=len(rows))
            raise BrokerUnavailable(f"the broker restarted while {len(records)} events were"
                                    " produced; none was accepted, retry them")
        if failed:
            raise BrokerUnavailable(f"{failed} of {len(records)} events were not acknowledged by "
                                    "Kafka; retry them (accepted ones count as duplicates)")
        return len(rows)
