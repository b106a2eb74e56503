"""The churn-economics and cohort reports (issue 14) over a generated population that went
through the real broker, the projector and PostgreSQL, checked against figures this test
computes on its own from the same events: customers known first by e-mail alone and later
by their id too (merges), purchases in two currencies and one without a rate, customers
who stay, lapse, arrive late or left long ago. An erasure and a replay leave both reports
as they were."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from contactstream.adapters import bootstrap, erasure
from contactstream.adapters.auth import TokenTable
from contactstream.adapters.config import Settings
from contactstream.adapters.control import ControlStore
from contactstream.adapters.crmstore import CrmReports
from contactstream.adapters.figurestore import parse_rates
from contactstream.adapters.http import create_app
from contactstream.adapters.http_crm import Crm, add_crm_routes
from contactstream.adapters.insights import Insights
from contactstream.adapters.privacy import privacy
from contactstream.adapters.readstore import ReadStore
from tests.integration.crm_helpers import project

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
DAY_MS = 86_400_000
RATES = {"EUR": Decimal(1), "USD": Decimal("0.92")}  # BRL: no rate, left out
TZ = "Europe/Budapest"
TOKENS = {"supervisor": "tok-sup", "agent": "tok-agent", "admin": "tok-admin",
          "publisher": "tok-pub"}
# how the test names the churn model's factor texts, on its own
KINDS = (("no contact", "recency"), ("contacts down", "falling_frequency"),
         ("satisfaction falling", "falling_satisfaction"), ("low ", "low_score"),
         ("past its SLA", "sla_breaches"), ("unresolved", "open_cases"),
         ("complaint", "complaints"))

Fact = tuple[int, str, Decimal | None]  # (occurred ms, c|p, amount in EUR or None)


def population(n: int = 160, seed: int = 14) -> tuple[list[dict[str, Any]],
                                                      dict[str, list[Fact]]]:
    """The events, and per customer id what the test knows of them."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    truth: dict[str, list[Fact]] = defaultdict(list)
    profiles = {"steady": (420, 0, 9), "lapsed": (300, 100, 3), "fading": (200, 45, 4),
                "new": (50, 0, 6), "gone": (420, 200, 12)}
    for i in range(n):
        cid, email = f"k-{i:03d}", f"k{i:03d}@example.org"
        first_day, last_day, gap = profiles[rng.choice(list(profiles))]
        weak = i % 6 == 0  # its early events carry only the e-mail: merged by a later one
        day, mine = float(first_day) - rng.uniform(0, 30), []
        while day > last_day:
            at = NOW - timedelta(days=day)
            roll = rng.random()
            e: dict[str, Any] = {"event_id": f"crm-{i}-{len(mine)}", "source": "gen",
                                 "occurred_at": at.isoformat(), "channel": "web",
                                 "agent_id": None, "queue": None, "case_id": None}
            amount: Decimal | None = None
            if roll < 0.45:
                cur = rng.choice(["EUR", "EUR", "USD", "BRL"])
                text = str(Decimal(rng.randrange(100, 90_000)) / 100)
                e.update(type="purchase.completed",
                         payload={"amount": text, "currency": cur, "order_id": e["event_id"]})
                amount = Decimal(text) * RATES[cur] if cur in RATES else None
                kind = "p"
            elif roll < 0.5:
                e.update(type="complaint.filed", channel="email", payload={
                    "category": "billing", "priority": "normal", "description": "late"})
                kind = "c"
            else:
                e.update(type="call.started", channel="voice",
                         payload={"direction": "inbound"})
                kind = "c"
            mine.append(e)
            truth[cid].append((int(at.timestamp() * 1000), kind, amount))
            day -= rng.uniform(gap / 2, gap * 1.5)
        for j, e in enumerate(mine):
            early = weak and j < len(mine) // 2
            e["customer"] = {"email": email} if early else {"id": cid, "email": email}
        events += mine
    rng.shuffle(events)
    return events, truth


def cents(x: Decimal) -> str:
    return str(x.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def expected_churn(truth: dict[str, list[Fact]], window_days: int,
                   at_risk: dict[str, list[str]]) -> dict[str, Any]:
    w = window_days * DAY_MS
    before = {c for c, fs in truth.items() if any(NOW_MS - 2 * w < t <= NOW_MS - w
                                                  for t, _, _ in fs)}
    after = {c for c, fs in truth.items() if any(NOW_MS - w < t <= NOW_MS for t, _, _ in fs)}
    churned = before - after
    lost = sum((a for c in churned for t, k, a in truth[c]
                if a is not None and NOW_MS - 2 * w < t <= NOW_MS - w), Decimal(0))
    risk = {c: sum((a for t, k, a in truth[c]
                    if a is not None and NOW_MS - 90 * DAY_MS < t <= NOW_MS), Decimal(0))
            for c in at_risk}
    factors: dict[str, list[Any]] = {}
    for c, texts in at_risk.items():
        kinds = {next(k for mark, k in KINDS if mark in t) for t in texts}
        for k in kinds:
            slot = factors.setdefault(k, [0, Decimal(0)])
            slot[0] += 1
            slot[1] += risk[c]
    return {"window_days": window_days, "active_start": len(before),
            "active_end": len(after), "retained": len(before & after),
            "retention_rate": round(len(before & after) / len(before), 4),
            "churned": len(churned), "revenue_lost": cents(lost),
            "revenue_at_risk": cents(sum(risk.values(), Decimal(0))), "currency": "EUR",
            "at_risk_customers": len(at_risk),
            "factors": {k: {"factor": k, "customers": n, "revenue_at_risk": cents(r)}
                        for k, (n, r) in factors.items()}}


def expected_cohorts(truth: dict[str, list[Fact]], period: str) -> dict[str, Any]:
    tz = ZoneInfo(TZ)

    def label(ms: int) -> str:
        at = datetime.fromtimestamp(ms / 1000, tz)
        return f"{at.year}-{at.month:02d}" if period == "month" else \
            f"{at.year}-Q{(at.month - 1) // 3 + 1}"

    def successor(p: str) -> str:
        y, rest = p.split("-")
        if period == "month":
            m = int(rest) + 1
            return f"{int(y) + (m > 12)}-{(m - 1) % 12 + 1:02d}"
        q = int(rest[1:]) + 1
        return f"{int(y) + (q > 4)}-Q{(q - 1) % 4 + 1}"

    bought = {c: [(label(t), a) for t, _, a in fs if a is not None] for c, fs in truth.items()}
    bought = {c: b for c, b in bought.items() if b}
    first = {c: min(p for p, _ in b) for c, b in bought.items()}
    last = max([label(NOW_MS), *(p for b in bought.values() for p, _ in b)])
    rows = []
    for cohort in sorted(set(first.values())):
        members = [c for c in first if first[c] == cohort]
        periods, p = [], cohort
        while p <= last:
            periods.append(p)
            p = successor(p)
        rows.append({
            "cohort": cohort, "customers": len(members),
            "repeat_rate": round(sum(len(bought[c]) > 1 for c in members) / len(members), 4),
            "revenue_per_customer": [cents(sum((a for c in members for q, a in bought[c]
                                                if q == p), Decimal(0)) / len(members))
                                     for p in periods],
            "retained": [sum(any(q == p for q, _ in bought[c]) for c in members)
                         for p in periods]})
    mixed = []
    for p in sorted({q for b in bought.values() for q, _ in b}):
        new = [sum(a for q, a in bought[c] if q == p) for c in bought
               if first[c] == p]
        old = [sum(a for q, a in bought[c] if q == p) for c in bought
               if first[c] < p and any(q == p for q, _ in bought[c])]
        mixed.append({"period": p,
                      "new_avg_spend": cents(sum(new) / len(new)) if new else None,
                      "returning_avg_spend": cents(sum(old) / len(old)) if old else None})
    return {"cohorts": rows, "new_vs_returning": mixed}


class Loaded:
    def __init__(self, settings: Settings, services: bootstrap.WorkerServices,
                 truth: dict[str, list[Fact]]) -> None:
        self.settings, self.services, self.truth = settings, services, truth
        db = services.db
        store = ReadStore(db)
        self.app = create_app(None, store, TokenTable(TOKENS),
                              insights=Insights(store, "EUR", parse_rates("", "EUR")))
        add_crm_routes(self.app, Crm(CrmReports(db, ControlStore(db), "EUR",
                                                parse_rates("", "EUR"), TZ,
                                                clock=NOW.timestamp)))

    async def get(self, path: str, **params: Any) -> Any:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app),
                                     base_url="http://t") as c:
            resp = await c.get(path, params=params,
                               headers={"Authorization": "Bearer tok-sup"})
            assert resp.status_code == 200, resp.text
            return resp.json()

    async def at_risk(self) -> dict[str, list[str]]:
        page = await self.get("/v1/customers", min_churn_risk=0.5, limit=1000)
        return {c["id"]: c["churn_risk"]["factors"] for c in page["items"]}


async def load(settings: Settings) -> Loaded:
    events, truth = population()
    worker, _ = await project(settings, events, NOW)
    return Loaded(settings, worker, truth)


@pytest.mark.parametrize("window", [30, 90])
async def test_the_churn_report_matches_an_independent_count(settings: Settings,
                                                             window: int) -> None:
    env = await load(settings)
    try:
        assert env.services.db.scalar(
            "SELECT COUNT(*) FROM customer_links WHERE base <> survivor") > 0  # merges
        at_risk = await env.at_risk()
        assert at_risk and all(c.startswith("k-") for c in at_risk)
        got = await env.get("/v1/reports/churn", window_days=window)
        want = expected_churn(env.truth, window, at_risk)
        factors = got.pop("factors")
        assert {f["factor"]: f for f in factors} == want.pop("factors")
        assert factors == sorted(factors, key=lambda f: (-Decimal(f["revenue_at_risk"]),
                                                         -f["customers"], f["factor"]))
        assert got.pop("as_of") == NOW.isoformat()
        assert got == want
        assert 0 < got["retained"] < got["active_start"] and Decimal(got["revenue_lost"]) > 0
    finally:
        await env.services.close()


@pytest.mark.parametrize("period", ["month", "quarter"])
async def test_the_cohort_report_matches_an_independent_count(settings: Settings,
                                                              period: str) -> None:
    env = await load(settings)
    try:
        got = await env.get("/v1/reports/cohorts", period=period)
        want = expected_cohorts(env.truth, period)
        assert got["cohorts"] == want["cohorts"]
        assert got["new_vs_returning"] == want["new_vs_returning"]
        assert (got["period"], got["currency"], got["timezone"]) == (period, "EUR", TZ)
        assert len(got["cohorts"]) > 3
    finally:
        await env.services.close()


async def test_an_erasure_and_a_replay_leave_the_reports_as_they_were(
        settings: Settings) -> None:
    env = await load(settings)
    services, db = env.services, env.services.db
    try:
        before = [await env.get("/v1/reports/churn", window_days=90),
                  await env.get("/v1/reports/cohorts", period="month")]
        # a merged customer with purchases in both of its bases, and a plain one
        merged = db.scalar(
            "SELECT l.survivor FROM customer_links l JOIN customer_revenue r ON r.base = l.base"
            " WHERE l.base <> l.survivor ORDER BY 1 LIMIT 1")
        plain = db.scalar("SELECT base FROM customer_revenue WHERE base LIKE 'k-%%' AND base"
                          " NOT IN (SELECT survivor FROM customer_links WHERE base <> survivor)"
                          " ORDER BY 1 LIMIT 1")
        kit = privacy(env.settings, db)
        for cid in (merged, plain):
            bases, keys, destroyed = erasure.destroy_keys(db, kit, cid)
            assert destroyed == len(keys) > 0
            erasure.purge(db, cid, bases, keys, services.writer.figures)
        assert len(set(db.all("SELECT grp FROM erased_groups"))) == 2
        assert db.scalar("SELECT COUNT(*) FROM erased_groups") > 2  # the merged one's keys
        after = [await env.get("/v1/reports/churn", window_days=90),
                 await env.get("/v1/reports/cohorts", period="month")]
        assert after == before

        services.writer.reset_projections()  # a replay from the log
        services.projector.dead_letter = False
        if services.projector.identity is not None:
            services.projector.identity.record = False
        await services.projector.run(group=False, until_end=True)
        assert [await env.get("/v1/reports/churn", window_days=90),
                await env.get("/v1/reports/cohorts", period="month")] == before
    finally:
        await env.services.close()
