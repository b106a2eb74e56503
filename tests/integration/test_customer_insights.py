"""A generated population (10,000 customers, 100,000 events) through the real broker;
every report checked against figures this test computes on its own from the same data."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from contactstream.adapters import bootstrap, kafka
from contactstream.adapters.api.app import create_app
from contactstream.adapters.auth import write_tokens
from contactstream.adapters.config import Settings
from contactstream.adapters.database import Database, EmbeddedPostgres, create_database
from contactstream.adapters.ingest import Ingestor
from contactstream.adapters.insights import Insights, parse_rates
from contactstream.adapters.journal import IngestJournal
from contactstream.adapters.privacy import privacy
from tests.conftest import TEMPLATE

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
RATES = {"EUR": Decimal(1), "HUF": Decimal("0.0025"), "USD": Decimal("0.92")}
AGENTS = [f"agent-{i}" for i in range(1, 9)]
QUEUES = ["billing", "support", "sales"]
CHANNELS = ["voice", "email", "chat", "web"]


def population(customers: int = 10_000, events: int = 100_000) -> list[dict[str, Any]]:
    rng = random.Random(5)
    out = []
    for i in range(events):
        cid = f"p-{rng.randrange(customers):05d}" if i >= customers else f"p-{i:05d}"
        at = NOW - timedelta(seconds=rng.randrange(180 * 86400))
        base = {"event_id": f"pop-{i}", "occurred_at": at.isoformat(), "source": "gen",
                "customer": {"id": cid}, "channel": rng.choice(CHANNELS),
                "agent_id": rng.choice(AGENTS + [None]), "queue": rng.choice(QUEUES),
                "case_id": None}
        roll = rng.random()
        if roll < 0.25:
            kind = rng.choice(["csat", "nps", "ces"])
            hi = {"csat": 5, "nps": 10, "ces": 7}[kind]
            lo = 0 if kind == "nps" else 1
            base.update(type="survey.answered",
                        payload={"kind": kind, "score": rng.randint(lo, hi)})
        elif roll < 0.45:
            cur = rng.choice(list(RATES))
            amount = Decimal(rng.randrange(100, 500_000 if cur == "HUF" else 2_000_00)) / 100
            base.update(type="purchase.completed",
                        payload={"amount": str(amount), "currency": cur, "order_id": f"o{i}"})
        elif roll < 0.5:
            base.update(type="complaint.filed", payload={
                "category": "billing", "priority": "normal", "description": "late"})
        else:
            base.update(type="call.started", payload={"direction": "inbound"})
        out.append(base)
    return out


def expected_satisfaction(events: list[dict], group: str, window_days: int | None) -> dict:
    since = NOW - timedelta(days=window_days) if window_days else None
    scores: dict[Any, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for e in events:
        if e["type"] != "survey.answered":
            continue
        at = datetime.fromisoformat(e["occurred_at"])
        if since is not None and not (since < at <= NOW):
            continue
        key = e["agent_id" if group == "agent" else group]
        scores[key][e["payload"]["kind"]].append(e["payload"]["score"])
    out = {}
    for key, by_kind in scores.items():
        cs, ns, es = by_kind["csat"], by_kind["nps"], by_kind["ces"]
        out[key] = {
            "csat": round(100 * sum(s >= 4 for s in cs) / len(cs), 1) if cs else None,
            "nps": round(100 * (sum(s >= 9 for s in ns) - sum(s <= 6 for s in ns)) / len(ns), 1)
            if ns else None,
            "ces": round(sum(es) / len(es), 2) if es else None,
            "responses": (len(cs), len(ns), len(es)),
        }
    return out


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory, broker: Any,
              pg_server: EmbeddedPostgres) -> Any:
    import asyncio

    tmp = tmp_path_factory.mktemp("pop")
    url = create_database(pg_server.admin_url, "population", template=TEMPLATE)
    settings = Settings(data_dir=tmp, bootstrap_servers=broker.bootstrap_servers,
                        embedded_broker=True, topic_prefix="pop", partitions=3,
                        database_url=url)
    events = population()

    async def load() -> None:
        await kafka.ensure_topics(settings, kafka.all_topics(settings))
        services = await bootstrap.worker_services(settings)
        journal = IngestJournal(services.db)
        ingestor = Ingestor(settings, services.producer,
                            bootstrap.codec(settings, services.db), journal,
                            privacy(settings, services.db))
        try:
            for i in range(0, len(events), 1000):
                assert (await ingestor.publish(events[i:i + 1000])).accepted == 1000
            # and a redelivered slice: duplicates must count once
            await ingestor.publish(events[:500])
            await services.projector.run(group=False, until_end=True)
        finally:
            await services.close()

    asyncio.run(load())
    write_tokens(settings.tokens_file)
    api_store = bootstrap.ReadStore(Database(url))
    insights = Insights(api_store, "EUR", parse_rates("", "EUR"), clock=NOW.timestamp)
    app = create_app(None, api_store, bootstrap.TokenTable(
        bootstrap.load_tokens(settings.tokens_file)), insights=insights)
    token = bootstrap.load_tokens(settings.tokens_file)["supervisor"]
    return events, app, token


async def _get(app: Any, token: str, path: str, **params: Any) -> Any:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://t") as c:
        resp = await c.get(path, params=params, headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 200, resp.text
        return resp.json()


@pytest.mark.parametrize("group", ["agent", "channel", "queue"])
@pytest.mark.parametrize("window", [7, 30, 90, 0])
async def test_satisfaction_report_matches_an_independent_count(populated: Any, group: str,
                                                                window: int) -> None:
    events, app, token = populated
    report = await _get(app, token, "/v1/reports/satisfaction", group_by=group,
                        window_days=window)
    expected = expected_satisfaction(events, group, window or None)
    got = {row["group"]: row for row in report["items"]}
    assert set(got) == set(expected)
    for key, exp in expected.items():
        row = got[key]
        assert (row["csat"]["score"], row["nps"]["score"], row["ces"]["score"]) == (
            exp["csat"], exp["nps"], exp["ces"]), key
        assert (row["csat"]["responses"], row["nps"]["responses"],
                row["ces"]["responses"]) == exp["responses"]


def _revenue(events: list[dict]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = defaultdict(Decimal)
    for e in events:
        if e["type"] == "purchase.completed":
            p = e["payload"]
            out[e["customer"]["id"]] += Decimal(p["amount"]) * RATES[p["currency"]]
    return out


async def test_value_segments_and_pareto_match(populated: Any) -> None:
    events, app, token = populated
    revenue = _revenue(events)
    total = sum(revenue.values(), Decimal(0))
    customers = {e["customer"]["id"] for e in events}
    assert len(customers) == 10_000
    segments = await _get(app, token, "/v1/reports/segments")
    assert sum(s["customers"] for s in segments["items"]) == 10_000
    seg_revenue = sum(Decimal(s["revenue"]) for s in segments["items"])
    assert abs(seg_revenue - total) <= Decimal("0.01") * len(segments["items"]) * 10
    buyers = len(revenue)
    prospects = next(s for s in segments["items"] if s["segment"] == "prospect")
    assert prospects["customers"] == 10_000 - buyers

    pareto = await _get(app, token, "/v1/reports/pareto")
    ranked = sorted(((r, c) for c, r in revenue.items()), key=lambda x: (-x[0], x[1]))
    top_n = math.ceil(0.2 * 10_000)
    top = sum((r for r, _ in ranked[:top_n]), Decimal(0))
    assert pareto["customers"] == 10_000 and len(pareto["top_customers"]) == top_n
    assert abs(Decimal(pareto["total_revenue"]) - total) < Decimal("1.00")
    assert abs(pareto["top_share_of_revenue"] - float(top / total)) < 0.001
    assert set(pareto["top_customers"]) == {c for _, c in ranked[:top_n]}


async def test_customer_view_value_and_filters(populated: Any) -> None:
    events, app, token = populated
    revenue = _revenue(events)
    richest = max(revenue, key=lambda c: revenue[c])
    view = await _get(app, token, f"/v1/customers/{richest}")
    assert abs(Decimal(view["value"]["lifetime_revenue"]) - revenue[richest]) <= Decimal("0.01")
    assert view["value"]["rfm"]["m"] == 5
    mine = [e for e in events if e["customer"]["id"] == richest]
    assert view["interactions_total"] == len(mine)
    # every event has source "gen": grouping by it gives the customer's all-time figures
    [exp] = expected_satisfaction(mine, "source", None).values() or [None]
    sat = view["satisfaction"]
    if exp is not None:
        assert (sat["csat"]["score"], sat["nps"]["score"], sat["ces"]["score"]) == (
            exp["csat"], exp["nps"], exp["ces"])
    risky = await _get(app, token, "/v1/customers", min_churn_risk=0.5, limit=1000)
    scores = [c["churn_risk"]["score"] for c in risky["items"]]
    assert all(s >= 0.5 for s in scores) and scores == sorted(scores, reverse=True)
    everyone = await _get(app, token, "/v1/customers", limit=1000)
    assert everyone["total"] == 10_000
    assert risky["total"] == sum(1 for c in (await _all(app, token)) if
                                 c["churn_risk"]["score"] >= 0.5)
    champions = await _get(app, token, "/v1/customers", segment="champions", limit=1000)
    assert champions["total"] > 0
    assert all(c["segment"] == "champions" for c in champions["items"])


async def _all(app: Any, token: str) -> list[dict]:
    out, cursor = [], None
    while True:
        page = await _get(app, token, "/v1/customers", limit=1000,
                          **({"cursor": cursor} if cursor else {}))
        out += page["items"]
        cursor = page["next"]
        if not cursor:
            return out
