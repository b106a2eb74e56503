"""Two API replicas and two workers on one broker and one database (issue 9): the same
event ids sent to both replicas at once are accepted once; each replica's alert stream
shows the SLA breaches the workers raise, each once, while the worker holding the timers
is killed; a killed replica leaves the other serving."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import psutil
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer

from contactstream.adapters.broker import free_port
from tests.e2e.system import Up
from tests.e2e.test_sla_alerts import _listen
from tests.helpers import Background, eventually

pytestmark = pytest.mark.e2e


class Replica:
    """`contactstream api --data-dir` beside a running `up`: its broker and database."""

    def __init__(self, up: Up) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tokens = up.tokens
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("CONTACTSTREAM_", "KAFKA_"))}
        self.log_path = up.data_dir.parent / f"api-{self.port}.log"
        self.log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "contactstream.adapters.cli", "api", "--data-dir",
             str(up.data_dir), "--port", str(self.port)],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)

        def ready() -> bool:
            assert self.proc.poll() is None, self.log_path.read_text()[-2000:]
            try:
                return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False
        eventually(ready, timeout=60, every=0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Up, Replica]]:
    data = tmp_path_factory.mktemp("replicas") / "data"
    with Up(data, "--workers", "2").start() as up:
        replica = Replica(up)
        try:
            yield up, replica
        finally:
            replica.stop()


def _event(n: int) -> dict[str, Any]:
    return {"event_id": f"dup-{n}-{uuid.uuid4()}", "type": "web.visit",
            "occurred_at": "2026-11-20T10:00:00Z", "source": "test",
            "customer": {"visitor_id": f"v-{n % 40}"}, "channel": "web",
            "payload": {"url": "https://shop.example/a"}}


def test_the_same_ids_sent_to_two_replicas_at_once_are_accepted_once(
        system: tuple[Up, Replica]) -> None:
    up, replica = system
    headers = {"Authorization": f"Bearer {up.tokens['publisher']}"}
    batches = [[_event(n) for n in range(r * 50, r * 50 + 50)] for r in range(8)]
    results: dict[str, list[dict[str, Any]]] = {up.url: [], replica.url: []}
    start = threading.Barrier(2)

    def send(url: str) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=30) as c:
            for batch in batches:
                if batch is batches[0]:
                    start.wait(10)
                resp = c.post("/v1/events", json=batch)
                assert resp.status_code == 202, resp.text
                results[url].append(resp.json())

    senders = [Background(send, url) for url in results]
    for s in senders:
        s.start()
    for s in senders:
        s.join(60)
        s.check()
    for i, _ in enumerate(batches):  # each batch: 50 accepted between the two, once
        pair = [results[url][i] for url in results]
        assert sum(r["accepted"] for r in pair) == 50, pair
        assert sum(r["duplicates"] for r in pair) == 50, pair
    ids = [e["event_id"] for b in batches for e in b]
    with psycopg.connect(up.database_url) as conn:
        journalled = conn.execute("SELECT count(*) FROM ingest_journal WHERE event_id"
                                  " = ANY(%s)", (ids,)).fetchone()
    assert journalled == (len(ids),)
    with up.client("agent") as agent:  # and both replicas answer the same
        for url in results:
            resp = agent.get(f"{url}/v1/customers/lookup", params={"visitor_id": "v-7"})
            assert resp.status_code == 200, resp.text
        one, two = (agent.get(f"{url}/v1/customers/lookup", params={"visitor_id": "v-7"})
                    .json() for url in results)
        assert one == two


def _singleton_holder(up: Up) -> psutil.Process:
    with psycopg.connect(up.database_url) as conn:
        row = conn.execute("SELECT holder FROM leases WHERE name='singletons'"
                           " AND expires_at > now()").fetchone()
    assert row is not None
    pid = int(row[0].split(":")[1])  # host:pid:nonce
    return psutil.Process(pid)


def test_breaches_reach_both_replicas_streams_once_while_the_timer_holder_is_killed(
        system: tuple[Up, Replica]) -> None:
    up, replica = system
    with up.client("supervisor") as sup:
        resp = sup.put("/v1/sla-policies/fast", json={
            "priority": ["urgent"], "channel": ["web"], "first_response_s": 4,
            "resolution_s": 3600, "warn_at": 0.5})
        assert resp.status_code == 200, resp.text
    streams = []
    for target in (up, replica):
        got: list[dict[str, Any]] = []
        ready, stop = threading.Event(), threading.Event()
        listener = Background(_listen, target, got, ready, stop, daemon=True)
        listener.start()
        assert ready.wait(10), "the alert stream did not answer"
        streams.append((got, listener, stop))
    customers = [f"c-sla-{uuid.uuid4().hex[:8]}" for _ in range(12)]
    complaints = [{
        "event_id": str(uuid.uuid4()), "type": "complaint.filed",
        "occurred_at": datetime.now(UTC).isoformat(), "source": "webform",
        "customer": {"id": cid}, "channel": "web", "queue": "billing",
        "payload": {"category": "billing", "priority": "urgent",
                    "description": "Nobody answers"}} for cid in customers]
    with up.client("publisher") as pub:
        assert pub.post("/v1/events", json=complaints).json()["accepted"] == len(customers)

    def opened() -> bool:
        with up.client("agent") as agent:
            return all(agent.get("/v1/cases", params={"customer_id": c}).json()["items"]
                       for c in customers)
    eventually(opened, timeout=30, every=0.2)
    holder = _singleton_holder(up)
    holder.send_signal(signal.SIGKILL)  # the timers' worker, before any deadline
    time.sleep(0.1)

    def breaches(got: list[dict[str, Any]]) -> list[str]:
        return [a["customer_id"] for a in got
                if a["kind"] == "sla.breached" and a["customer_id"] in customers]
    for got, listener, _ in streams:
        def all_breached(got: list[dict[str, Any]] = got, listener: Background = listener,
                         ) -> bool:
            listener.check()
            return set(breaches(got)) == set(customers)
        eventually(all_breached, timeout=60, every=0.1)
    time.sleep(1.5)  # a second breach of any, from a second timer holder, would be here
    for got, listener, stop in streams:
        stop.set()
        listener.check()
        assert sorted(breaches(got)) == sorted(customers)  # each once
    assert _singleton_holder(up).pid != holder.pid
    # and on the alerts topic each of these alerts once, though the relay moved to
    # another worker mid-way (its seq header names the alert log's row)
    with psycopg.connect(up.database_url) as conn:
        seqs = sorted(r[0] for r in conn.execute(
            "SELECT seq FROM alerts WHERE customer_id = ANY(%s)", (customers,)))
    assert len(seqs) >= 2 * len(customers)  # a warning and a breach each

    def published() -> list[int]:
        return sorted(s for s in asyncio.run(_alert_seqs(up)) if s in set(seqs))
    eventually(lambda: len(published()) >= len(seqs), timeout=30, every=0.5)
    assert published() == seqs


async def _alert_seqs(up: Up) -> list[int]:
    """The contactstream-seq header of every record on the alerts topic."""
    kafka = json.loads((up.data_dir / "up.json").read_text())["kafka"]
    consumer = AIOKafkaConsumer("contactstream.alerts.v1", bootstrap_servers=kafka,
                                group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    seqs: list[int] = []
    try:
        quiet = 0
        while quiet < 3:
            batch = await consumer.getmany(timeout_ms=300)
            quiet = 0 if batch else quiet + 1
            for records in batch.values():
                seqs += [int(dict(r.headers)["contactstream-seq"]) for r in records]
    finally:
        await consumer.stop()
    return seqs


def test_a_killed_replica_leaves_the_others_serving(system: tuple[Up, Replica]) -> None:
    up, replica = system
    doomed = Replica(up)  # a third one, for this test alone
    doomed.proc.send_signal(signal.SIGKILL)
    doomed.stop()
    for url in (up.url, replica.url):
        with httpx.Client(base_url=url, timeout=30, headers={
                "Authorization": f"Bearer {up.tokens['publisher']}"}) as pub:
            assert pub.post("/v1/events", json=_event(10_000 + len(url))).json()[
                "accepted"] == 1
        assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200
