"""Data that expires (issue 14, item 4), on a driven clock: a retention policy erases, by
the same crypto-shredding as DELETE /v1/customers/{id}, every customer whose latest
interaction (over all its merged bases) is older than the policy allows, and goes on doing
so as the clock moves; each erasure is in the access audit as done by the policy, and the
reports stay as they were."""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from contactstream.adapters.audit import AuditLog
from contactstream.adapters.auth import TokenTable
from contactstream.adapters.config import Settings
from contactstream.adapters.control import ControlStore
from contactstream.adapters.crmstore import CrmReports
from contactstream.adapters.figurestore import parse_rates
from contactstream.adapters.http import create_app
from contactstream.adapters.http_crm import Crm, add_crm_routes
from contactstream.adapters.readstore import ReadStore
from contactstream.adapters.retention import Retention
from tests.integration.crm_helpers import project

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
TOKENS = {"admin": "tok-admin", "supervisor": "tok-sup", "agent": "tok-agent"}
ADMIN = {"Authorization": "Bearer tok-admin"}
DAYS = 90


class Clock:
    def __init__(self) -> None:
        self.at = NOW

    def time(self) -> float:
        return self.at.timestamp()


def population(n: int = 40, seed: int = 9) -> tuple[list[dict[str, Any]], dict[str, datetime]]:
    """Customer i was last seen about 5·i days ago; every seventh was first known by its
    e-mail alone, with older events (a merge: its latest interaction is over both)."""
    rng = random.Random(seed)
    events, last = [], {}
    for i in range(n):
        cid, email = f"r-{i:02d}", f"r{i}@example.org"
        latest = NOW - timedelta(days=5 * i + rng.uniform(0.1, 4.8))
        last[cid] = latest
        for j, back in enumerate((0, 30, 75)):
            at = latest - timedelta(days=back)
            early = i % 7 == 0 and j == 2
            events.append({
                "event_id": f"rt-{i}-{j}", "occurred_at": at.isoformat(), "source": "gen",
                "customer": {"email": email} if early else {"id": cid, "email": email},
                "channel": "web", "agent_id": None, "queue": None, "case_id": None,
                **({"type": "purchase.completed",
                    "payload": {"amount": f"{rng.randrange(5, 500)}.00", "currency": "EUR",
                                "order_id": f"o-{i}-{j}"}} if j != 1 else
                   {"type": "call.started", "payload": {"direction": "inbound"}})})
    return events, last


async def test_the_retention_policy_erases_the_inactive_as_the_clock_moves(
        settings: Settings) -> None:
    events, last = population()
    worker, kit = await project(settings, events, NOW)
    db = worker.db
    clock = Clock()
    control = ControlStore(db)
    job = Retention(db, control, kit, clock=clock.time)  # the worker's
    audit = AuditLog(db)
    try:
        assert db.scalar("SELECT COUNT(*) FROM customer_links WHERE base <> survivor") > 0
        store = ReadStore(db, kit)
        app = create_app(None, store, TokenTable(TOKENS))
        reports = CrmReports(db, control, "EUR", parse_rates("", "EUR"), clock=clock.time)
        add_crm_routes(app, Crm(reports, store, audit, Retention(db, control, kit,
                                                                 clock=clock.time)))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://t") as client:
            async def report() -> list[Any]:
                return [(await client.get(path, headers=ADMIN, params=params)).json()
                        for path, params in (("/v1/reports/churn", {"window_days": 60}),
                                             ("/v1/reports/cohorts", {"period": "month"}))]

            off = (await client.get("/v1/retention-policy", headers=ADMIN)).json()
            assert off["inactive_days"] is None and off["next_run_at"] is None
            assert job.run_due() == {}  # no policy: nothing expires
            for bad in ({"inactive_days": 0}, {"inactive_days": "90"}, {"days": 90}, {}):
                resp = await client.put("/v1/retention-policy", headers=ADMIN, json=bad)
                assert resp.status_code == 422, bad
            denied = await client.put("/v1/retention-policy", json={"inactive_days": DAYS},
                                      headers={"Authorization": "Bearer tok-sup"})
            assert denied.status_code == 403
            before = await report()

            resp = await client.put("/v1/retention-policy", headers=ADMIN,
                                    json={"inactive_days": DAYS})
            assert resp.status_code == 200, resp.text
            shown = resp.json()
            assert shown["inactive_days"] == DAYS and shown["next_run_at"] == NOW.isoformat()
            oldest = min(last.values())
            assert shown["next_erasure_at"] == max(oldest + timedelta(days=DAYS),
                                                   NOW).isoformat()

            erased: set[str] = set()
            for step in (timedelta(0), timedelta(minutes=30), timedelta(days=40)):
                clock.at = NOW + step
                due = {c for c, t in last.items() if t <= clock.at - timedelta(days=DAYS)}
                done = job.run_due(int(clock.at.timestamp() * 1000))
                if step == timedelta(minutes=30):
                    assert done == {}  # not due: the last run was half an hour ago
                    continue
                assert done == {"erased": len(due - erased)} and due - erased
                await worker.projector.run(group=False, until_end=True)  # the purges
                assert db.scalar("SELECT COUNT(*) FROM erasure_requests"
                                 " WHERE done_at IS NULL") == 0
                erased |= due
                for c in last:
                    assert (store.resolve(c) is None) == (c in erased), c
                status = (await client.get("/v1/retention-policy", headers=ADMIN)).json()
                assert status["last_run_at"] == clock.at.isoformat()
                assert status["last_erased"] == done["erased"]
                assert status["erased_total"] == len(erased)
                assert status["next_run_at"] == (clock.at + timedelta(hours=1)).isoformat()
                clock.at = NOW
                assert await report() == before  # as with a manual erasure

            admin_id = hashlib.sha256(b"tok-admin").hexdigest()[:12]
            rows = db.all("SELECT role, token_id, action, customer_id, status FROM access_log"
                          " WHERE role = 'policy' ORDER BY customer_id")
            assert rows == [("policy", admin_id, "customer.erase", c, 202)
                            for c in sorted(erased)]
            assert 0 < len(erased) < len(last)
    finally:
        audit.close()
        await worker.close()
