"""Straight-to-Kafka producers, the dead-letter topic, replay and the embedded restore,
all against the real broker and real PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from contactstream.adapters import bootstrap, kafka
from contactstream.adapters.broker import EmbeddedBroker
from contactstream.adapters.config import Settings
from contactstream.adapters.database import Database
from contactstream.adapters.journal import IngestJournal, restore
from contactstream.adapters.privacy import privacy
from contactstream.adapters.readstore import ReadStoreWriter
from tests.helpers import dump_tables, envelope

pytestmark = pytest.mark.integration


def _dump(url: str) -> dict[str, list[str]]:
    return dump_tables(url, ("timeline", "identifiers", "customers"))


async def _produce_raw(settings: Settings, records: list[tuple[bytes, bytes]]) -> None:
    producer = kafka.producer(settings)
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(settings.interactions_topic, value, key=key)
    finally:
        await producer.stop()


async def _project_all(settings: Settings) -> None:
    services = await bootstrap.worker_services(settings)
    try:
        await services.projector.run(group=False, until_end=True)
    finally:
        await services.close()


async def _dlq(settings: Settings, n: int) -> list:
    consumer = AIOKafkaConsumer(settings.dlq_topic, bootstrap_servers=settings.bootstrap_servers,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    got: list = []
    try:
        for _ in range(100):
            batch = await consumer.getmany(timeout_ms=200)
            got += [r for recs in batch.values() for r in recs]
            if len(got) >= n:
                break
    finally:
        await consumer.stop()
    return got


async def test_undecodable_records_go_to_the_dlq_and_the_worker_keeps_going(
        settings: Settings, db: Database) -> None:
    await kafka.ensure_topics(settings, kafka.all_topics(settings))
    codec = bootstrap.codec(settings, db)
    good = [envelope(i, customer={"id": "c-7"}) for i in range(3)]
    invalid = codec.encode(envelope(9, customer={"id": "c-7"})) [:-3]  # truncated Avro
    await _produce_raw(settings, [
        (b"c-7", codec.encode(good[0])),
        (b"c-7", b"\x00garbage that is not avro"),
        (b"c-7", b'{"json": "not the wire format"}'),
        (b"c-7", codec.encode(good[1])),
        (b"c-7", invalid),
        (b"c-7", codec.encode({**good[2], "channel": "fax"})),  # decodes, fails validation
        (b"c-7", codec.encode(envelope(20, customer={"id": "c-7"}))),
    ])
    await _project_all(settings)
    dead = await _dlq(settings, 4)
    assert len(dead) == 4
    reasons = [dict(r.headers)["contactstream-error"].decode() for r in dead]
    assert all(r.startswith(("decode:", "invalid:")) for r in reasons), reasons
    assert any("channel" in r for r in reasons)
    assert dead[1].value == b'{"json": "not the wire format"}'  # raw bytes kept
    assert db.scalar("SELECT COUNT(*) FROM timeline") == 3


async def test_tombstones_forged_gap_marks_and_trailing_bytes_go_to_the_dlq(
        settings: Settings, db: Database) -> None:
    """Inputs that once stopped the worker or vanished (issue 10, items 2 and 10)."""
    await kafka.ensure_topics(settings, kafka.all_topics(settings))
    codec = bootstrap.codec(settings, db)
    before, after = envelope(1, customer={"id": "c-8"}), envelope(2, customer={"id": "c-8"})
    producer = kafka.producer(settings)
    await producer.start()
    try:
        topic = settings.interactions_topic
        await producer.send_and_wait(topic, codec.encode(before), key=b"c-8")
        await producer.send_and_wait(topic, None, key=b"c-8")  # a tombstone
        await producer.send_and_wait(topic, codec.encode(envelope(3, customer={"id": "c-8"})),
                                     key=b"c-8", headers=[("contactstream-gap", b"1")])
        await producer.send_and_wait(topic, codec.encode(envelope(4)) + b"\x00\x01", key=b"c-8")
        await producer.send_and_wait(topic, codec.encode(after), key=b"c-8")
    finally:
        await producer.stop()
    await _project_all(settings)
    dead = await _dlq(settings, 3)
    reasons = sorted(dict(r.headers)["contactstream-error"].decode() for r in dead)
    assert len(reasons) == 3, reasons
    assert reasons[0].startswith("decode: tombstone"), reasons
    assert reasons[1].startswith("decode: trailing bytes: 2"), reasons
    assert reasons[2].startswith("reserved header: contactstream-gap"), reasons
    assert sorted(r[0] for r in db.all("SELECT event_id FROM timeline")) == sorted(
        [before["event_id"], after["event_id"]])


async def test_replay_from_the_log_gives_the_same_read_store(settings: Settings,
                                                             db: Database) -> None:
    await kafka.ensure_topics(settings, kafka.all_topics(settings))
    codec = bootstrap.codec(settings, db)
    events = [envelope(i, customer={"id": f"c-{i % 5}", "email": f"u{i % 5}@x.hu",
                                    "name": f"Név {i}"}, event_id=f"r-{i}") for i in range(200)]
    records = [(b"k", codec.encode(e)) for e in events]
    await _produce_raw(settings, records + records[:50])  # redelivered duplicates
    await _project_all(settings)
    live = _dump(settings.database_url)
    assert len(live["timeline"]) == 200
    ReadStoreWriter(db).reset_projections()
    assert _dump(settings.database_url)["timeline"] == []
    await _project_all(settings)
    assert _dump(settings.database_url) == live


async def test_restore_puts_every_record_back_at_its_offset(tmp_path: Path, db: Database,
                                                            database_url: str) -> None:
    """The embedded broker forgets everything; the journal and the archive bring it back
    at the same partitions and offsets, so stored positions stay valid."""
    with EmbeddedBroker() as first:
        s = Settings(data_dir=tmp_path, bootstrap_servers=first.bootstrap_servers,
                     embedded_broker=True, partitions=3, topic_prefix="rst",
                     database_url=database_url)
        await kafka.ensure_topics(s, kafka.all_topics(s))
        api = await bootstrap.api_services(s) if (tmp_path / "tokens.json").exists() else None
        assert api is None
        producer = kafka.producer(s)
        await producer.start()
        from contactstream.adapters.ingest import Ingestor
        journal = IngestJournal(db)
        ingestor = Ingestor(s, producer, bootstrap.codec(s, db), journal, privacy(s, db))
        events = [envelope(i, customer={"id": f"c-{i % 7}"}, event_id=f"x-{i}")
                  for i in range(300)]
        assert (await ingestor.publish(events[:200])).accepted == 200
        await _project_all(s)  # archives what it consumed
        assert (await ingestor.publish(events[200:])).accepted == 100  # journal only
        await producer.stop()
        before = _dump(database_url)
    with EmbeddedBroker() as second:
        s2 = s.with_(bootstrap_servers=second.bootstrap_servers)
        await kafka.ensure_topics(s2, kafka.all_topics(s2))
        producer = kafka.producer(s2)
        await producer.start()
        journal = IngestJournal(db)
        writer = ReadStoreWriter(db)
        counts = await restore(producer, [journal.records(), writer.archived()])
        await producer.stop()
        assert counts[s2.interactions_topic] == 300
        offsets = writer.offsets(s2.interactions_topic)
        assert sum(offsets.values()) == 200  # stored positions from the first broker
        await _project_all(s2)
        after = _dump(database_url)
        assert len(after["timeline"]) == 300
        assert set(before["timeline"]) <= set(after["timeline"])
    await asyncio.sleep(0)


async def test_the_archive_keeps_only_what_the_journal_does_not_hold(
        tmp_path: Path, db: Database, database_url: str) -> None:
    """Issue 12, footprint: an event accepted over HTTP is in the ingest journal, so the
    projector does not copy it into the archive again; a record produced straight to the
    broker is archived. The restore brings both back at their offsets."""
    with EmbeddedBroker() as first:
        s = Settings(data_dir=tmp_path, bootstrap_servers=first.bootstrap_servers,
                     embedded_broker=True, partitions=3, topic_prefix="arj",
                     database_url=database_url)
        await kafka.ensure_topics(s, kafka.all_topics(s))
        producer = kafka.producer(s)
        await producer.start()
        from contactstream.adapters.ingest import Ingestor
        codec = bootstrap.codec(s, db)
        ingestor = Ingestor(s, producer, codec, IngestJournal(db), privacy(s, db))
        events = [envelope(i, customer={"id": f"c-{i % 7}"}, event_id=f"j-{i}")
                  for i in range(120)]
        assert (await ingestor.publish(events[:60])).accepted == 60
        direct = set()
        for env in events[60:]:  # a publisher that writes to Kafka itself
            meta = await (await producer.send(s.interactions_topic, codec.encode(env),
                                              key=b"c"))
            direct.add((meta.partition, meta.offset))
        await _project_all(s)
        await producer.stop()
    archived = {(p, o) for p, o in db.all(
        'SELECT partition, "offset" FROM broker_archive WHERE topic=%s',
        (s.interactions_topic,))}
    assert archived == direct
    before = _dump(database_url)
    with EmbeddedBroker() as second:
        s2 = s.with_(bootstrap_servers=second.bootstrap_servers)
        await kafka.ensure_topics(s2, kafka.all_topics(s2))
        producer = kafka.producer(s2)
        await producer.start()
        counts = await restore(producer, [IngestJournal(db).records(),
                                          ReadStoreWriter(db).archived()])
        await producer.stop()
        assert counts[s2.interactions_topic] == 120
        ReadStoreWriter(db).reset_projections()
        await _project_all(s2)
        assert _dump(database_url)["timeline"] == before["timeline"]


async def test_a_windowed_restore_packs_what_the_projector_passed(tmp_path: Path, db: Database,
                                                                  database_url: str) -> None:
    """Issue 10, item 5: records every reader has passed come back as placeholders; the
    rest, and each partition's last record, whole; the projector goes on where it was."""
    with EmbeddedBroker() as first:
        s = Settings(data_dir=tmp_path, bootstrap_servers=first.bootstrap_servers,
                     embedded_broker=True, partitions=3, topic_prefix="win",
                     database_url=database_url)
        await kafka.ensure_topics(s, kafka.all_topics(s))
        producer = kafka.producer(s)
        await producer.start()
        from contactstream.adapters.ingest import Ingestor
        ingestor = Ingestor(s, producer, bootstrap.codec(s, db), IngestJournal(db),
                            privacy(s, db))
        events = [envelope(i, customer={"id": f"c-{i % 7}"}, event_id=f"w-{i}")
                  for i in range(300)]
        assert (await ingestor.publish(events[:200])).accepted == 200
        await _project_all(s)
        assert (await ingestor.publish(events[200:])).accepted == 100  # not yet projected
        await producer.stop()
    with EmbeddedBroker() as second:
        s2 = s.with_(bootstrap_servers=second.bootstrap_servers)
        await kafka.ensure_topics(s2, kafka.all_topics(s2))
        passed = bootstrap.passed_offsets(db, s2)
        assert sum(o for (t, _), o in passed.items() if t == s2.interactions_topic) == 200
        await bootstrap.restore_broker(s2)
        consumer = AIOKafkaConsumer(s2.interactions_topic, group_id=None,
                                    bootstrap_servers=s2.bootstrap_servers,
                                    auto_offset_reset="earliest")
        await consumer.start()
        seen: dict[int, list] = {}
        try:
            for _ in range(100):
                batch = await consumer.getmany(timeout_ms=200)
                for tp, recs in batch.items():
                    seen.setdefault(tp.partition, []).extend(recs)
                if sum(len(v) for v in seen.values()) >= 300 and not batch:
                    break
        finally:
            await consumer.stop()
        for partition, recs in seen.items():
            cut = passed.get((s2.interactions_topic, partition), 0)
            last = recs[-1].offset
            assert [r.offset for r in recs] == list(range(last + 1))
            for r in recs:
                packed = r.value == b"" and dict(r.headers).get("contactstream-gap") == b"1"
                assert packed == (r.offset < min(cut, last)), (partition, r.offset, cut)
        await _project_all(s2)
        assert db.scalar("SELECT COUNT(*) FROM timeline WHERE event_id LIKE 'w-%'") == 300
