"""Satisfaction, value and churn read models: raw facts from the timeline table folded by
the pure functions in projections/ (satisfaction, value, churn).

Surveys and purchases are timeline rows, so these figures inherit its guarantees: keyed
by event id (duplicates count once), rebuilt by replay, never lost on a restart. Figures
across the whole customer base (RFM quintiles, churn for every customer) are cached until
the timeline changes or ``ttl_s`` passes.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ..projections import churn, consent, satisfaction, value
from .readstore import ReadStore

DAY_MS = 86_400_000

# units of the base currency per unit; fixed rates for totals (CONTACTSTREAM_FX_RATES)
DEFAULT_RATES = {"EUR": "1", "USD": "0.92", "GBP": "1.16", "HUF": "0.0025", "CHF": "1.05",
                 "CNY": "0.13", "IRR": "0.000022", "PLN": "0.23", "CZK": "0.04"}


def parse_rates(text: str, base: str) -> dict[str, Decimal]:
    """``"HUF=0.0025,USD=0.92"`` -> rates; the defaults apply when base is EUR."""
    rates = {k: Decimal(v) for k, v in DEFAULT_RATES.items()} if base == "EUR" else {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        cur, _, rate = part.partition("=")
        rates[cur.strip().upper()] = Decimal(rate.strip())
    rates[base] = Decimal(1)
    return rates


@dataclass(frozen=True)
class BaseView:
    """Per-customer value and churn across the whole base, at one instant."""

    now_ms: int
    revenue: dict[str, Decimal]
    lifetime: dict[str, dict[str, Any]]
    rfm: dict[str, value.RFM]
    churn: dict[str, churn.ChurnRisk]


class Insights:
    def __init__(self, store: ReadStore, base_currency: str = "EUR",
                 rates: Mapping[str, Decimal] | None = None,
                 clock: Callable[[], float] = time.time, ttl_s: float = 30.0,
                 breached_cases: Callable[[], set[str]] = set) -> None:
        self.store = store
        self.base = base_currency
        self.rates = dict(rates or parse_rates("", base_currency))
        self.clock = clock
        self.ttl_s = ttl_s
        self.min_age_s = min(5.0, ttl_s)
        self.breached_cases = breached_cases
        self._lock = threading.Lock()
        self._cache: tuple[tuple[int, int], float, BaseView] | None = None

    def forget(self) -> None:
        """Drop the cached base-wide figures (after an erasure)."""
        with self._lock:
            self._cache = None

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- raw facts ---------------------------------------------------------------------
    def surveys(self, customer_id: str | None = None) -> list[satisfaction.SurveyAnswer]:
        sql = ("SELECT event_id, customer_id, occurred_ms, payload, agent_id, channel, queue,"
               " case_id FROM timeline WHERE type='survey.answered'")
        rows = self._rows(sql, customer_id)
        case_owner = self._case_owners({r[7] for r in rows if r[7] and not (r[4] and r[6])})
        out = []
        links = self._links()
        for eid, cid, ms, payload, agent, channel, queue, case in rows:
            p = payload
            owner_agent, owner_queue = case_owner.get(case, (None, None))
            out.append(satisfaction.SurveyAnswer(
                eid, links.get(cid, cid), ms, p["kind"], int(p["score"]),
                agent or owner_agent, channel, queue or owner_queue, case))
        return out

    def _case_owners(self, case_ids: set[str]) -> dict[str, tuple[str | None, str | None]]:
        """A survey about a case without its own agent or queue takes the case's: the
        latest agent and queue seen on that case's interactions."""
        owners: dict[str, tuple[str | None, str | None]] = {}
        ids = sorted(case_ids)
        for case, agent, queue in self.store.db.all(
                "SELECT case_id, agent_id, queue FROM timeline WHERE case_id = ANY(%s)"
                " AND type<>'survey.answered' ORDER BY occurred_ms, event_id", (ids,)):
            prev = owners.get(case, (None, None))
            owners[case] = (agent or prev[0], queue or prev[1])
        return owners

    def _links(self) -> dict[str, str]:
        """base customer -> the customer it is merged into (streams/identity.py)."""
        return dict(self.store.db.all("SELECT base, survivor FROM customer_links"))  # type: ignore[arg-type]

    def _rows(self, sql: str, customer_id: str | None) -> list[Any]:
        if customer_id is None:
            return self.store.db.all(sql + " ORDER BY event_id")
        bases = self.store.members(customer_id)
        return self.store.db.all(sql + " AND customer_id = ANY(%s) ORDER BY event_id", (bases,))

    def purchases(self, customer_id: str | None = None) -> list[value.Purchase]:
        sql = ("SELECT event_id, customer_id, occurred_ms, payload FROM timeline"
               " WHERE type='purchase.completed'")
        rows = self._rows(sql, customer_id)
        links = self._links()
        out = []
        for eid, cid, ms, payload in rows:
            p = payload
            out.append(value.Purchase(eid, links.get(cid, cid), ms, Decimal(p["amount"]),
                                      p["currency"]))
        return out

    def consent_of(self, customer_id: str) -> list[dict[str, Any]]:
        """The customer's current consent per channel and purpose, with when and from where
        (projections/consent.py)."""
        rows = self.store.db.all(
            "SELECT event_id, occurred_ms, occurred_at, source, payload FROM timeline"
            " WHERE type='consent.changed' AND customer_id = ANY(%s)",
            (self.store.members(customer_id),))
        return consent.current_consent(
            {"event_id": eid, "occurred_ms": ms, "occurred_at": at, "source": src,
             "payload": payload} for eid, ms, at, src, payload in rows)

    # -- the whole base ------------------------------------------------------------------
    def base_view(self) -> BaseView:
        version = self.store.db.one(
            "SELECT COUNT(*), COALESCE(MAX(received_at), 0) FROM timeline")
        assert version is not None  # an aggregate always gives one row
        with self._lock:
            now = self.clock()
            if self._cache:
                age = now - self._cache[1]
                # unchanged data: good until the TTL; changing data: recomputed at most
                # every few seconds, not on every request under live traffic
                if (self._cache[0] == tuple(version) and age < self.ttl_s) or \
                        age < self.min_age_s:
                    return self._cache[2]
            view = self._compute(int(now * 1000))
            self._cache = (tuple(version), now, view)  # type: ignore[assignment]
            return view

    def _compute(self, now_ms: int) -> BaseView:
        by_customer: dict[str, list[value.Purchase]] = defaultdict(list)
        for p in self.purchases():
            by_customer[p.customer_id].append(p)
        lifetime = {c: value.lifetime_revenue(ps, self.base, self.rates)
                    for c, ps in by_customer.items()}
        revenue = {c: Decimal(v["lifetime_revenue"]) for c, v in lifetime.items()}
        links = self._links()
        customers = sorted({links.get(c, c) for (c,) in self.store.db.all(
            "SELECT DISTINCT customer_id FROM timeline WHERE type NOT LIKE 'case.%'")})
        facts = {c: value.CustomerValueFacts(
            max((p.occurred_ms for p in by_customer[c]), default=None),
            len({p.event_id for p in by_customer[c]}), revenue.get(c, Decimal(0)))
            for c in customers}
        rfm = value.rfm(facts, now_ms)
        return BaseView(now_ms, revenue, lifetime, rfm, self._churn_all(now_ms))

    def _churn_all(self, now_ms: int) -> dict[str, churn.ChurnRisk]:
        contacts: dict[str, list[int]] = defaultdict(list)
        purchases: dict[str, list[int]] = defaultdict(list)
        complaints: dict[str, list[int]] = defaultdict(list)
        links = self._links()
        for base, ms, typ in self.store.db.all(
                "SELECT customer_id, occurred_ms, type FROM timeline"
                " WHERE type NOT LIKE 'case.%'"):
            cid = links.get(base, base)
            if typ == "purchase.completed":
                purchases[cid].append(ms)
            else:
                contacts[cid].append(ms)
                if typ == "complaint.filed":
                    complaints[cid].append(ms)
        surveys: dict[str, list[tuple[int, str, int]]] = defaultdict(list)
        for a in self.surveys():
            surveys[a.customer_id].append((a.occurred_ms, a.kind, a.score))
        open_cases: dict[str, int] = defaultdict(int)
        breached: dict[str, int] = defaultdict(int)
        breached_ids = self.breached_cases()
        for case_id, base, status in self.store.db.all(
                "SELECT case_id, customer_id, status FROM cases"):
            cid = links.get(base, base)
            if status != "resolved":
                open_cases[cid] += 1
            if case_id in breached_ids and now_ms - 90 * DAY_MS <= now_ms:
                breached[cid] += 1
        out = {}
        for cid in set(contacts) | set(purchases):
            facts = churn.ChurnFacts(sorted(contacts[cid]), sorted(purchases[cid]),
                                     sorted(complaints[cid]), surveys[cid],
                                     open_cases[cid], breached[cid])
            out[cid] = churn.churn_risk(facts, now_ms)
        return out

    # -- what the API shows -----------------------------------------------------------------
    def customer_blocks(self, cid: str) -> dict[str, Any]:
        view = self.base_view()
        answers = self.surveys(cid)
        sat = satisfaction.summarize(answers)
        windows = {f"{d}d": satisfaction.summarize(answers, now_ms=view.now_ms, window_days=d)
                   for d in (7, 30, 90)}
        life = view.lifetime.get(cid) or value.lifetime_revenue([], self.base, self.rates)
        r = view.rfm.get(cid)
        risk = view.churn.get(cid) or churn.ChurnRisk(0.0, [])
        return {
            "satisfaction": sat,
            "satisfaction_windows": windows,
            "value": {"lifetime_revenue": life["lifetime_revenue"], "currency": self.base,
                      "by_currency": life["by_currency"],
                      "unconverted": life.get("unconverted", []),
                      "segment": r.segment if r else value.PROSPECT,
                      "rfm": _rfm_json(r)},
            "churn_risk": {"score": risk.score, "factors": risk.factors},
            "consent": self.consent_of(cid),
        }

    def satisfaction_report(self, group_by: str, window_days: int | None) -> dict[str, Any]:
        items = satisfaction.by_group(self.surveys(), group_by,  # type: ignore[arg-type]
                                      now_ms=self.now_ms(), window_days=window_days)
        return {"group_by": group_by, "window_days": window_days, "items": items}

    def segments_report(self) -> dict[str, Any]:
        view = self.base_view()
        return {"currency": self.base,
                "items": value.segments_report(view.rfm, view.revenue)}

    def pareto_report(self, share: float = 0.2) -> dict[str, Any]:
        view = self.base_view()
        revenue = {c: view.revenue.get(c, Decimal(0)) for c in view.rfm}
        return {"currency": self.base, "share": share, **value.pareto(revenue, share)}

    def customers(self, segment: str | None, min_churn_risk: float | None,
                  ) -> list[dict[str, Any]]:
        """Customers matching the filters, riskiest first (ties by id)."""
        view = self.base_view()
        out = []
        for cid, r in view.rfm.items():
            risk = view.churn.get(cid) or churn.ChurnRisk(0.0, [])
            if segment and r.segment != segment:
                continue
            if min_churn_risk is not None and risk.score < min_churn_risk:
                continue
            out.append({"id": cid, "segment": r.segment,
                        "lifetime_revenue": value.money(view.revenue.get(cid, Decimal(0))),
                        "currency": self.base,
                        "churn_risk": {"score": risk.score, "factors": risk.factors}})
        out.sort(key=lambda x: (-x["churn_risk"]["score"], x["id"]))
        return out


def _rfm_json(r: value.RFM | None) -> dict[str, Any] | None:
    if r is None or r.r is None:
        return None
    return {"r": r.r, "f": r.f, "m": r.m, "recency_days": r.recency_days,
            "frequency": r.frequency, "monetary": value.money(r.monetary)}
