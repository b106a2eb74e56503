"""Erasure, as a data-protection officer would check it: after DELETE, nothing readable
of the person in any topic, any SQLite file of the data dir or the logs, while the
satisfaction and service reports stay exactly as they were."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from contactstream.adapters.crypto import FieldCipher, is_token, load_master_key
from contactstream.adapters.keystore import ForgettingKeyStore
from tests.e2e.system import Up
from tests.helpers import all_rows, eventually

pytestmark = pytest.mark.e2e

PERSON = {"id": "c-erase", "name": "Szabó Erzsébet", "email": "Erzsebet.Szabo@example.hu",
          "phone": "+36 20 987 6543", "visitor_id": "v-erzsebet-77"}
TEXTS = ["A számlám kétszer lett terhelve", "Kérem, hívjanak vissza délután",
         "Nagyon elégedetlen vagyok a válaszidővel"]
SECRETS = [PERSON["name"], "Erzsébet", "erzsebet.szabo@example.hu", "Erzsebet.Szabo",
           "+36209876543", "20 987 6543", "v-erzsebet-77", *TEXTS]


def _env(type_: str, payload: dict[str, Any], channel: str, ago_h: float,
         customer: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    at = datetime.now(UTC) - timedelta(hours=ago_h)
    return {"event_id": str(uuid.uuid4()), "type": type_, "occurred_at": at.isoformat(),
            "source": "test", "customer": customer or dict(PERSON), "channel": channel,
            "agent_id": extra.get("agent_id"), "queue": "billing", "case_id": None,
            "payload": payload}


def _events() -> list[dict[str, Any]]:
    mine = [
        _env("complaint.filed", {"category": "billing", "priority": "high",
                                 "description": TEXTS[0]}, "web", 5),
        _env("email.received", {"subject": "Visszahívás", "body": TEXTS[1]}, "email", 4),
        _env("chat.message", {"direction": "inbound", "text": TEXTS[2]}, "chat", 3),
        _env("survey.answered", {"kind": "csat", "score": 1, "comment": TEXTS[2]}, "email", 2,
             agent_id="agent-3"),
        _env("survey.answered", {"kind": "nps", "score": 3}, "email", 2, agent_id="agent-3"),
        _env("call.ended", {"direction": "inbound", "outcome": "abandoned", "duration_s": 0,
                            "wait_s": 240}, "voice", 1),
        _env("purchase.completed", {"amount": "149.90", "currency": "EUR",
                                    "order_id": "o-1"}, "web", 1),
    ]
    others = []
    for i in range(6):
        who = {"id": f"c-other-{i}", "name": f"Other {i}"}
        others.append(_env("survey.answered", {"kind": "csat", "score": 3 + i % 3}, "email",
                           2, customer=who, agent_id="agent-3"))
        others.append(_env("complaint.filed", {"category": "x", "priority": "normal",
                                               "description": "other"}, "web", 3,
                           customer=who))
    return mine + others


def _broker(up: Up) -> str:
    for line in up.logs().splitlines():
        if '"broker.started"' in line:
            return json.loads(line)["bootstrap"]
    raise AssertionError("no broker.started in the log")


async def _all_records(bootstrap: str) -> list[bytes]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    topics = [t for t in await admin.list_topics() if not t.startswith("__")]
    await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    out: list[bytes] = []
    try:
        tps = [TopicPartition(t, p) for t in topics
               for p in (consumer.partitions_for_topic(t) or {0})]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while batch := await consumer.getmany(timeout_ms=1000):
            for recs in batch.values():
                for r in recs:
                    out.append(b"|".join([r.key or b"", r.value or b"",
                                          *(v for _, v in r.headers or ())]))
    finally:
        await consumer.stop()
    return out


def _stored_rows(data: Path, database_url: str) -> list[str]:
    """Every row the system stored: the database's tables and the data dir's SQLite
    files (the forgetting key store)."""
    rows = all_rows(database_url)
    for path in data.glob("*.sqlite"):
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                rows.append(f"{path.name}:{table}:" + repr([
                    v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in row]))
        conn.close()
    return rows


def _tokens(records: list[bytes], key_ids: set[str]) -> list[str]:
    found = []
    for rec in records:
        text = rec.decode("utf-8", "replace")
        for k in key_ids:
            start = text.find(f"enc1:{k}:")
            while start >= 0:
                end = start + len(f"enc1:{k}:")
                while end < len(text) and (text[end].isalnum() or text[end] in "-_="):
                    end += 1
                found.append(text[start:end])
                start = text.find(f"enc1:{k}:", end)
    return found


def test_erasure_leaves_nothing_readable_and_keeps_the_figures(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with Up(data).start() as up:
        with up.client("publisher") as pub:
            assert pub.post("/v1/events", json=_events()).json()["accepted"] == 19
        eventually(lambda: up.get("/v1/customers/c-erase").json().get(
            "interactions_total") == 7 and up.get("/v1/customers/c-other-5").status_code == 200)
        cases = eventually(lambda: (items := up.get("/v1/cases", customer_id="c-erase").json()
                                    .get("items", [])) and items)
        with up.client("agent") as agent:  # an agent's note naming the person
            resolved = agent.post(f"/v1/cases/{cases[0]['id']}/resolve",
                                  json={"resolution": f"Visszautalva: {PERSON['name']}"})
            assert resolved.status_code == 200, resolved.text
            assert resolved.json()["resolution"] == f"Visszautalva: {PERSON['name']}"
        eventually(lambda: any(i["type"] == "case.resolved" for i in up.get(
            "/v1/customers/c-erase/timeline").json()["items"]))
        view = up.get("/v1/customers/c-erase").json()
        assert view["name"] == PERSON["name"]  # readable before, for the agent
        assert view["identifiers"]["email"] == ["erzsebet.szabo@example.hu"]
        # export: what was published, decrypted, for the admin only
        for role in ("publisher", "agent", "supervisor"):
            assert up.get("/v1/customers/c-erase/export", role=role).status_code == 403
        export = up.get("/v1/customers/c-erase/export", role="admin").json()
        texts = json.dumps(export, ensure_ascii=False)
        assert all(t in texts for t in TEXTS)
        assert PERSON["name"] in texts
        assert len(export["timeline"]) >= 7
        # every read above is in the access log, with who and what, and no personal data
        audit = up.get("/v1/audit", role="admin", customer_id="c-erase").json()["items"]
        assert {a["role"] for a in audit} >= {"agent", "admin"}
        assert any(a["action"] == "customer.export" for a in audit)
        sat_before = up.get("/v1/reports/satisfaction", role="supervisor", group_by="agent",
                            window_days=0).json()
        svc_before = up.get("/v1/reports/service", role="supervisor", window_days=30).json()
        del svc_before["from"], svc_before["to"]  # the window's ends move with the clock

        # nothing is stored in plain text even before the erasure (encrypted at ingest)
        records = asyncio.run(_all_records(_broker(up)))
        assert records and not [s for s in SECRETS if any(s.encode() in r for r in records)]
        master = load_master_key(None, data)
        keys = ForgettingKeyStore(data / "keys.sqlite", master)
        cipher = FieldCipher(keys)
        with psycopg.connect(up.database_url) as conn:
            key_ids = {row[0] for row in conn.execute(
                "SELECT DISTINCT key_id FROM timeline WHERE customer_id='c-erase'")}
        tokens = _tokens(records, key_ids)
        assert tokens and PERSON["name"] in {cipher.decrypt(t) for t in tokens if is_token(t)}

        for role in ("publisher", "agent", "supervisor"):
            with up.client(role) as c:
                assert c.delete("/v1/customers/c-erase").status_code == 403
        with up.client("admin") as admin:
            resp = admin.delete("/v1/customers/c-erase")
        assert resp.status_code == 200, resp.text
        assert resp.json()["keys_destroyed"] >= 1

        assert up.get("/v1/customers/c-erase").status_code == 404
        assert up.get("/v1/customers/lookup", email=PERSON["email"]).status_code == 404
        assert up.get("/v1/customers/lookup", phone=PERSON["phone"]).status_code == 404
        records = asyncio.run(_all_records(_broker(up)))
        tokens = _tokens(records, key_ids)
        keys2 = ForgettingKeyStore(data / "keys.sqlite", master)
        assert tokens and {FieldCipher(keys2).decrypt(t) for t in tokens} == {None}
        rows = _stored_rows(data, up.database_url)
        assert rows
        for secret in SECRETS:
            assert not any(secret in r for r in rows), secret
            assert not any(secret.encode() in r for r in records), secret
            assert secret not in up.logs(), secret
        sat_after = up.get("/v1/reports/satisfaction", role="supervisor", group_by="agent",
                           window_days=0).json()
        svc_after = up.get("/v1/reports/service", role="supervisor", window_days=30).json()
        del svc_after["from"], svc_after["to"]
        assert sat_after == sat_before
        assert svc_after == svc_before

        # the same person writing again starts as a new customer
        again = _env("chat.message", {"direction": "inbound", "text": "Újra itt vagyok"},
                     "chat", 0)
        with up.client("publisher") as pub:
            assert pub.post("/v1/events", json=again).json()["accepted"] == 1
        fresh = eventually(lambda: (v := up.get("/v1/customers/c-erase").json()).get(
            "interactions_total") == 1 and v)
        assert fresh["name"] == PERSON["name"]
        # the new chat opens its own case; the cases read model follows the case's event
        # on cases.v1, a moment after the timeline row
        opened = eventually(lambda: up.get("/v1/customers/c-erase").json()["open_cases"])
        assert len(opened) == 1, opened
