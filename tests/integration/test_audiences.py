"""Campaign audiences (issue 14, item 5) over the real broker and database: a population
with mixed, changed (out of order) and withdrawn consents, some given under an e-mail alone
before the customer was known by id (a merge), some customers without a phone; the export
holds exactly the customers whose latest answer for the purpose on the channel granted it,
with the contact identifier decrypted, says how many were left out, and is audited with
its size. An erased customer is never in it."""

from __future__ import annotations

import csv
import io
import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from contactstream.adapters import erasure
from contactstream.adapters.audit import AuditLog
from contactstream.adapters.auth import TokenTable
from contactstream.adapters.config import Settings
from contactstream.adapters.control import ControlStore
from contactstream.adapters.crmstore import CrmReports
from contactstream.adapters.figurestore import parse_rates
from contactstream.adapters.http import create_app
from contactstream.adapters.http_crm import Crm, add_crm_routes
from contactstream.adapters.readstore import ReadStore
from tests.integration.crm_helpers import project

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
TOKENS = {"admin": "tok-admin", "supervisor": "tok-sup", "agent": "tok-agent"}
CHANNELS = ("email", "sms", "voice")
PURPOSES = ("marketing", "newsletter")


def population(n: int = 60, seed: int = 3) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    people: dict[str, Any] = {}
    for i in range(n):
        cid = f"a-{i:02d}"
        email = f"person{i}@example.org"
        phone = f"+3630{1000000 + i:07d}" if i % 5 else None
        # some as people type them: the export gives the form matching uses
        shown = f" Person{i}@Example.ORG " if i % 9 == 0 else email
        typed = f"06 30 {1000000 + i:07d}" if phone and i % 3 == 0 else phone
        who = {"id": cid, "email": shown, **({"phone": typed} if phone else {})}
        people[cid] = {"email": email, "phone": phone, "answers": {}}
        events.append({"event_id": f"au-{i}-p", "type": "purchase.completed",
                       "occurred_at": (NOW - timedelta(days=rng.uniform(1, 300))).isoformat(),
                       "source": "shop", "customer": who, "channel": "web", "agent_id": None,
                       "queue": None, "case_id": None,
                       "payload": {"amount": f"{rng.randrange(10, 900)}.00", "currency": "EUR",
                                   "order_id": f"o{i}"}})
        for j in range(rng.choice([0, 1, 1, 2, 3, 5])):  # answers, some changing their mind
            channel, purpose = rng.choice(CHANNELS), rng.choice(PURPOSES)
            at = NOW - timedelta(days=rng.uniform(1, 100))
            granted = rng.random() < 0.6
            eid = f"au-{i}-c{j}"
            early = i % 4 == 0 and j == 0  # given under the e-mail alone: merged later
            events.append({"event_id": eid, "type": "consent.changed",
                           "occurred_at": at.isoformat(), "source": "preferences",
                           "customer": {"email": shown} if early else who, "channel": "web",
                           "agent_id": None, "queue": None, "case_id": None,
                           "payload": {"channel": channel, "purpose": purpose,
                                       "granted": granted}})
            latest = people[cid]["answers"].get((channel, purpose))
            if latest is None or (at, eid) > latest[:2]:
                people[cid]["answers"][(channel, purpose)] = (at, eid, granted)
    rng.shuffle(events)  # out of order: the latest answer counts, not the last to arrive
    return events, people


async def test_an_audience_holds_only_who_consented_and_is_audited(settings: Settings) -> None:
    events, people = population()
    worker, kit = await project(settings, events, NOW)
    db = worker.db
    audit = AuditLog(db)
    try:
        assert db.scalar("SELECT COUNT(*) FROM customer_links WHERE base <> survivor") > 0
        store = ReadStore(db, kit)
        app = create_app(None, store, TokenTable(TOKENS))
        add_crm_routes(app, Crm(CrmReports(db, ControlStore(db), "EUR",
                                           parse_rates("", "EUR")), store, audit))
        segment = dict(db.all("SELECT customer_id, segment FROM customer_scores"))

        def expected(channel: str, purpose: str, seg: str | None = None,
                     ) -> tuple[list[dict[str, Any]], int, int]:
            chosen = [c for c in people if seg is None or segment[c] == seg]
            granted = [c for c in chosen
                       if people[c]["answers"].get((channel, purpose), (0, 0, False))[2]]
            kind = "email" if channel == "email" else "phone"
            reachable = [c for c in granted if people[c][kind]]
            rows = [{"customer_id": c, "contact": people[c][kind], "segment": segment[c],
                     "consent_at": people[c]["answers"][(channel, purpose)][0].isoformat()}
                    for c in sorted(reachable)]
            return rows, len(chosen) - len(granted), len(granted) - len(reachable)

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://t") as client:
            async def get(role: str = "admin", **params: Any) -> httpx.Response:
                return await client.get("/v1/audiences", params=params,
                                        headers={"Authorization": f"Bearer {TOKENS[role]}"})

            sizes = []
            for channel in CHANNELS:
                for purpose in PURPOSES:
                    want, excluded, unreachable = expected(channel, purpose)
                    resp = await get(channel=channel, purpose=purpose, format="jsonl")
                    assert resp.status_code == 200, resp.text
                    got = [json.loads(line) for line in resp.text.splitlines()]
                    assert [{k: r[k] for k in want[0]} for r in got] == want if want else \
                        got == []
                    assert resp.headers["X-Contactstream-Excluded"] == str(excluded)
                    assert resp.headers["X-Contactstream-Unreachable"] == str(unreachable)
                    sizes.append(len(got))
            assert min(sizes) < max(sizes) and sum(sizes) > 10

            # a segment filter, paged as JSON, and the same audience as CSV
            seg = max(sorted(set(segment.values())),
                      key=lambda s: len(expected("email", "marketing", s)[0]))
            want, excluded, _ = expected("email", "marketing", seg)
            pages, cursor, asked = [], None, 0
            while True:
                asked += 1
                params: dict[str, Any] = {"channel": "email", "segment": seg, "limit": 1}
                if cursor:
                    params["cursor"] = cursor
                body = (await get(**params)).json()
                assert body["excluded"] == excluded
                pages += body["items"]
                cursor = body["next"]
                if cursor is None:
                    break
            assert [{k: r[k] for k in ("customer_id", "contact")} for r in pages] == \
                [{k: r[k] for k in ("customer_id", "contact")} for r in want]
            table = list(csv.DictReader(io.StringIO(
                (await get(channel="email", segment=seg, format="csv")).text)))
            assert [r["contact"] for r in table] == [r["contact"] for r in want]
            assert len(want) >= 2  # so the paging above went past a page

            for role in ("supervisor", "agent"):
                assert (await get(role, channel="email")).status_code == 403
            bad = await get(channel="fax")
            assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"
            assert (await get(channel="email", segment="vips")).status_code == 422

            audit.flush()
            exports = [r for r in audit.query(limit=1000) if r["action"] == "audience.export"]
            assert len(exports) == len(sizes) + asked + 1  # + the CSV; refusals export nothing
            assert sorted(r["items"] for r in exports[-len(sizes):]) == sorted(sizes)
            assert all(r["role"] == "admin" and r["customer_id"] is None for r in exports)

            # erased: gone from every audience, whatever its consents said
            member = next(c for c in sorted(people)
                          if people[c]["answers"].get(("email", "marketing"), (0, 0, 0))[2])
            bases, keys, _ = erasure.destroy_keys(db, kit, member)
            erasure.purge(db, member, bases, keys, worker.writer.figures)
            after = (await get(channel="email", format="jsonl")).text
            assert people[member]["email"] not in after
            assert member not in after
    finally:
        audit.close()
        await worker.close()
