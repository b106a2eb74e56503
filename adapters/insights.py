"""Satisfaction, value, churn and consent as the API shows them, read from the figures the
worker keeps (migration 4; adapters/readstore.py ``FigureWriter``). A customer's blocks are
a few key reads over its member bases; lists and reports aggregate stored rows (one per
customer, or day buckets); nothing here reads timeline rows.

What moves with the clock (satisfaction windows, churn risk, RFM) is the stored value the
worker computed for an instant and refreshes periodically, so the view, the customer
lists, the segment and Pareto reports and the export agree. The satisfaction report
takes its window at the request's instant: day buckets plus the answers of the two days
the window is cut on give it to the millisecond.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import ROUND_CEILING, Decimal
from typing import Any, overload

import psycopg

from ..projections import consent, figures, scores, value
from .database import Database
from .figurestore import DEFAULT_RATES, parse_rates, shown_windows
from .logging import get_logger
from .readstore import ReadStore, Subject

__all__ = ["DEFAULT_RATES", "CustomerList", "Insights", "parse_rates"]

log = get_logger(__name__)

DAY_MS = 86_400_000
# a stored revenue the reports take (value.countable); NaN fails it too
_COUNTABLE = "abs(revenue) < %s"
_GROUP_COLUMN = {"agent": "eff_agent", "channel": "channel", "queue": "eff_queue"}


class Insights:
    def __init__(self, store: ReadStore, base_currency: str = "EUR",
                 rates: Mapping[str, Decimal] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.base = base_currency
        self.rates = dict(rates or parse_rates("", base_currency))
        self.clock = clock

    def forget(self) -> None:
        """Nothing is cached here any more (kept for callers after an erasure)."""

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- one customer ------------------------------------------------------------------------
    def customer_view(self, asked: str) -> dict[str, Any] | None:
        """The customer 360 view of any id the customer was known by; None if unknown. Two
        round trips on one connection: the survivor and its members in one statement, then
        every block's reads in one pipeline."""
        with self.store.reading() as conn:
            who = self.store.subject(asked, conn)
            if who is None:
                return None
            with conn.pipeline():
                parts = (self.store.customer_reads(conn, who),
                         self.store.open_cases_reads(conn, who), self.blocks_reads(conn, who))
        own, open_cases, blocks = parts
        return {**own(), "open_cases": open_cases(), **blocks()}

    def blocks_reads(self, conn: psycopg.Connection[Any], who: Subject,
                     ) -> Callable[[], dict[str, Any]]:
        """Sends the reads of satisfaction, value, churn and consent on ``conn`` (in the
        caller's pipeline); the function returned builds the blocks from their results."""
        scored = conn.execute(
            "SELECT windows, churn_score, churn_factors, segment, recency_days, r, f,"
            " m, purchases, revenue FROM customer_scores WHERE customer_id=%s", (who.id,))
        sat = conn.execute("SELECT kind, SUM(responses), SUM(good), SUM(bad), SUM(total)"
                           " FROM customer_satisfaction WHERE base = ANY(%s)"
                           " GROUP BY kind", (who.members,))
        money = conn.execute("SELECT currency, SUM(amount) FROM customer_revenue"
                             " WHERE base = ANY(%s) GROUP BY currency", (who.members,))
        said = conn.execute(
            "SELECT channel, purpose, granted, occurred_ms, event_id, occurred_at,"
            " source FROM customer_consent WHERE base = ANY(%s)", (who.members,))
        return lambda: self._blocks(scored.fetchone(), sat.fetchall(), money.fetchall(),
                                    said.fetchall())

    def _blocks(self, row: Sequence[Any] | None, sat: list[tuple[Any, ...]],
                money: list[tuple[Any, ...]], answers: list[tuple[Any, ...]],
                ) -> dict[str, Any]:
        tallies = {k: figures.Tally(int(n), int(g), int(b), int(t)) for k, n, g, b, t in sat}
        revenue = {cur: (amount, 0, 0) for cur, amount in money}
        life = scores.lifetime(revenue, self.base, self.rates)
        if life["skipped"]:  # totals stored before amounts had a limit (value.countable)
            log.warning("insights.revenue_skipped", currencies=life["skipped"])
        rfm = value.RFM(row[3], row[4], int(row[8]), row[9], row[5], row[6], row[7]) \
            if row else None
        return {
            "satisfaction": figures.summary(tallies),
            "satisfaction_windows": shown_windows(row[0] if row else {}),
            "value": {"lifetime_revenue": life["lifetime_revenue"], "currency": self.base,
                      "by_currency": life["by_currency"],
                      "unconverted": life.get("unconverted", []),
                      "segment": rfm.segment if rfm else value.PROSPECT,
                      "rfm": _rfm_json(rfm)},
            "churn_risk": {"score": row[1], "factors": row[2]} if row
            else {"score": 0.0, "factors": []},
            "consent": consent.current_consent(
                {"event_id": eid, "occurred_ms": ms, "occurred_at": at, "source": src,
                 "payload": {"channel": ch, "purpose": p, "granted": g}}
                for ch, p, g, ms, eid, at, src in answers),
        }

    # -- the whole base ----------------------------------------------------------------------
    def satisfaction_report(self, group_by: str, window_days: int | None) -> dict[str, Any]:
        """Answers with ``now - window < occurred <= now`` (all time: ``<= now``) per agent,
        channel or queue: whole days from the buckets, the two cut days by score."""
        now = self.now_ms()
        today = now // DAY_MS
        lo = now - window_days * DAY_MS if window_days else None
        first = lo // DAY_MS if lo is not None else None
        groups: dict[str, dict[str, figures.Tally]] = {}
        with self.store.reading() as c:
            sql = ("SELECT grp, kind, SUM(responses), SUM(good), SUM(bad), SUM(total) FROM"
                   " survey_days WHERE dim=%s AND day < %s")
            args: list[Any] = [group_by, today]
            if first is not None:
                sql += " AND day > %s"
                args.append(first)
            for g, kind, n, good, bad, total in c.execute(sql + " GROUP BY grp, kind", args):
                groups.setdefault(g, {})[kind] = figures.Tally(int(n), int(good), int(bad),
                                                               int(total))
            # counted by score in the database: a busy day holds tens of thousands
            by_score = (f"SELECT {_GROUP_COLUMN[group_by]}, kind, score, COUNT(*) FROM"
                        " customer_surveys WHERE occurred_ms >= %s AND occurred_ms < %s"
                        " GROUP BY 1, 2, 3")
            cut = [(today * DAY_MS, now + 1)]  # [from, to) of the answers read by score
            if lo is not None and first is not None:
                cut.append((lo + 1, (first + 1) * DAY_MS))
            for start, end in cut:
                for g, kind, score, n in c.execute(by_score,  # type: ignore[call-overload]
                                                   (start, end)):
                    groups.setdefault(g or figures.NO_GROUP, {}).setdefault(
                        kind, figures.Tally()).add(figures.tally(kind, score, n))
        return {"group_by": group_by, "window_days": window_days,
                "items": figures.report_rows(groups)}

    def segments_report(self) -> dict[str, Any]:
        found: dict[str, tuple[int, Decimal]] = {}
        skipped = 0
        for seg, n, rev, bad in self.store.db.all(
                f"SELECT segment, COUNT(*), COALESCE(SUM(revenue) FILTER (WHERE {_COUNTABLE}),"
                f" 0), COUNT(*) FILTER (WHERE NOT {_COUNTABLE}) FROM customer_scores"
                " GROUP BY segment", [value.TOTAL_LIMIT, value.TOTAL_LIMIT]):
            found[seg] = (int(n), Decimal(rev))
            skipped += int(bad)
        if skipped:
            log.warning("insights.revenue_skipped", report="segments", rows=skipped)
        return {"currency": self.base, "items": [
            {"segment": s, "customers": found.get(s, (0, Decimal(0)))[0],
             "revenue": value.money(found.get(s, (0, Decimal(0)))[1])}
            for s in value.SEGMENTS]}

    def pareto_report(self, share: float = 0.2) -> dict[str, Any]:
        """As ``value.pareto`` over every customer's stored revenue: the top ones are read
        off the revenue index, the count and total in the same snapshot."""
        with self.store.db.tx() as c:
            c.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            n, total, bad = c.execute(
                f"SELECT COUNT(*) FILTER (WHERE {_COUNTABLE}), COALESCE(SUM(revenue) FILTER"
                f" (WHERE {_COUNTABLE}), 0), COUNT(*) FILTER (WHERE NOT {_COUNTABLE})"
                " FROM customer_scores", [value.TOTAL_LIMIT] * 3).fetchone() or (0, 0, 0)
            k = int((Decimal(str(share)) * n).to_integral_value(rounding=ROUND_CEILING))
            ranked = c.execute(f"SELECT customer_id, revenue FROM customer_scores WHERE"
                               f" {_COUNTABLE} ORDER BY revenue DESC, customer_id LIMIT %s",
                               (value.TOTAL_LIMIT, k)).fetchall()
        if bad:
            log.warning("insights.revenue_skipped", report="pareto", rows=int(bad))
        total = Decimal(total)
        top = sum((Decimal(r) for _, r in ranked), Decimal(0))
        return {"currency": self.base, "share": share, "customers": int(n),
                "top_customers": [cid for cid, _ in ranked],
                "top_share_of_revenue": round(float(top / total), 4) if total else 0.0,
                "top_revenue": value.money(top), "total_revenue": value.money(total)}

    def customers(self, segment: str | None, min_churn_risk: float | None,
                  ) -> CustomerList:
        """Customers matching the filters, riskiest first (ties by id), read by page."""
        where: list[str] = []
        args: list[Any] = []
        if segment:
            where.append("segment = %s")
            args.append(segment)
        if min_churn_risk is not None:
            where.append("churn_score >= %s")
            args.append(float(min_churn_risk))
        return CustomerList(self.store.db, " AND ".join(where) or "TRUE", args, self.base)


class CustomerList(Sequence[dict[str, Any]]):
    """A filtered customer list as a sequence: its length is a count, a slice one page
    (LIMIT/OFFSET on the risk index), so paging never loads the whole base."""

    def __init__(self, db: Database, where: str, args: list[Any], currency: str) -> None:
        self.db, self.where, self.args, self.currency = db, where, args, currency
        self._len: int | None = None

    def __len__(self) -> int:
        if self._len is None:
            self._len = int(self.db.scalar(
                f"SELECT COUNT(*) FROM customer_scores WHERE {self.where}", self.args))
        return self._len

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, i: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(i, int):
            page = self[i:i + 1] if i >= 0 else self[len(self) + i:len(self) + i + 1]
            if not page:
                raise IndexError(i)
            return page[0]
        start, stop, step = i.indices(len(self))
        if step != 1:
            return list(self[start:stop])[::step]
        if stop <= start:
            return []
        # the page's keys from the index alone (a deep page skips index entries, not rows),
        # then those rows
        rows = self.db.all(
            "SELECT s.customer_id, s.segment, s.revenue, s.churn_score, s.churn_factors FROM"
            " customer_scores s JOIN (SELECT customer_id FROM customer_scores"
            f" WHERE {self.where} ORDER BY churn_score DESC, customer_id LIMIT %s OFFSET %s)"
            " page USING (customer_id) ORDER BY s.churn_score DESC, s.customer_id",
            [*self.args, stop - start, start])
        return [{"id": cid, "segment": seg, "lifetime_revenue": value.money_or_none(Decimal(rev)),
                 "currency": self.currency, "churn_risk": {"score": score, "factors": why}}
                for cid, seg, rev, score, why in rows]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self[0:len(self)])


def _rfm_json(r: value.RFM | None) -> dict[str, Any] | None:
    if r is None or r.r is None:
        return None
    return {"r": r.r, "f": r.f, "m": r.m, "recency_days": r.recency_days,
            "frequency": r.frequency, "monetary": value.money_or_none(r.monetary)}
