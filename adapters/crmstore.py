"""The CRM reports' reads (issue 14): churn economics, purchase cohorts and workload, from
the projections the worker keeps (the timeline's interactions, purchases and case events,
customer_scores, the cases read model). The arithmetic is in
projections/economics.py and projections/workload.py; this module holds only their SQL.

Every figure is per customer: a base linked into a survivor counts as the survivor, and
the pseudonyms one erasure left count as the one customer they were (``erased_groups``),
so merges and erasures leave the reports as they were.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from ..domain.interactions import amount_value
from ..projections import economics, workload
from .control import ControlStore
from .database import Database
from .figurestore import INTERACTIONS
from .logging import get_logger

log = get_logger(__name__)

DAY_MS = 86_400_000


class CrmReports:
    def __init__(self, db: Database, control: ControlStore, base_currency: str,
                 rates: Mapping[str, Decimal], timezone: str = "UTC",
                 clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.control = control
        self.base = base_currency
        self.rates = dict(rates)
        self.tz = ZoneInfo(timezone)
        self.clock = clock

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- customers -------------------------------------------------------------------------
    @staticmethod
    def _groups(conn: psycopg.Connection[Any]) -> Callable[[str], str]:
        """base (or pseudonym) -> the customer it counts as."""
        to = dict(conn.execute("SELECT base, survivor FROM customer_links").fetchall())
        to.update(conn.execute("SELECT pseudonym, grp FROM erased_groups").fetchall())
        return lambda b: to.get(b, b)

    def _spend(self, conn: psycopg.Connection[Any], who: Callable[[str], str],
               since_ms: int | None = None) -> Iterator[economics.Spend]:
        """Every purchase (after ``since_ms``) in the base currency; an amount the figures
        skip, or a currency without a rate, is left out (as in the lifetime revenue)."""
        rows = conn.execute(
            "SELECT customer_id, occurred_ms, payload->>'currency', payload->>'amount'"
            " FROM timeline WHERE type = 'purchase.completed' AND occurred_ms > %s",
            (-(2 ** 62) if since_ms is None else since_ms,))
        for cid, ms, currency, text in rows:
            amount, rate = amount_value(text), self.rates.get(currency or "")
            if amount is not None and rate is not None:
                yield economics.Spend(who(cid), ms, amount * rate)

    # -- reports ---------------------------------------------------------------------------
    def churn(self, window_days: int) -> dict[str, Any]:
        now = self.now_ms()
        w = window_days * DAY_MS
        since = min(now - 2 * w, now - economics.RISK_DAYS * DAY_MS)
        with self.db.autocommit() as conn:
            who = self._groups(conn)
            # one row per base and half of the two windows it was active in
            activity = [(who(b), ms) for b, early, late in conn.execute(
                "SELECT customer_id, MAX(occurred_ms) FILTER (WHERE occurred_ms <= %(end)s),"
                " MAX(occurred_ms) FILTER (WHERE occurred_ms > %(end)s)"
                f" FROM timeline WHERE occurred_ms > %(start)s AND {INTERACTIONS}"
                " AND occurred_ms <= %(now)s GROUP BY customer_id",
                {"start": now - 2 * w, "end": now - w, "now": now})
                for ms in (early, late) if ms is not None]
            at_risk: dict[str, list[str]] = {}
            for cid, factors in conn.execute(
                    "SELECT customer_id, churn_factors FROM customer_scores"
                    " WHERE churn_score >= %s", (economics.AT_RISK,)):
                at_risk.setdefault(who(cid), []).extend(factors)
            spend = list(self._spend(conn, who, since))
        report = economics.churn_report(activity, spend, at_risk, now, window_days, self.base)
        return {**report, **self._span(now)}

    def cohorts(self, period: str) -> dict[str, Any]:
        now = self.now_ms()
        with self.db.autocommit() as conn:
            who = self._groups(conn)
            spend = list(self._spend(conn, who))
        report = economics.cohort_report(spend, period, now, self.tz, self.base)
        return {**report, "timezone": self.tz.key, **self._span(now)}

    def workload(self) -> dict[str, Any]:
        now = self.now_ms()
        local = datetime.fromtimestamp(now / 1000, self.tz)
        day_start = int(local.replace(hour=0, minute=0, second=0, microsecond=0)
                        .timestamp() * 1000)
        with self.db.autocommit() as conn:
            cases = [workload.OpenCase(*r) for r in conn.execute(
                "SELECT case_id, status, queue, agent_id, opened_ms FROM cases"
                " WHERE status <> 'resolved'")]
            today = conn.execute(
                "SELECT type, agent_id FROM timeline WHERE type IN ('case.assigned',"
                " 'case.resolved') AND occurred_ms >= %s AND occurred_ms <= %s",
                (day_start, now)).fetchall()
        report = workload.workload(cases, self.control.breached_case_ids(), today, now)
        return {**report, "timezone": self.tz.key,
                "day_start": datetime.fromtimestamp(day_start / 1000, self.tz).isoformat(),
                **self._span(now)}

    @staticmethod
    def _span(now_ms: int) -> dict[str, Any]:
        return {"as_of": datetime.fromtimestamp(now_ms / 1000, UTC).isoformat()}
