"""Churn factors by kind, and the cohort periods (the reports' arithmetic is checked against
an independent count in tests/integration/test_crm_reports.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from contactstream.projections import churn
from contactstream.projections.economics import period_name, period_of

DAY = churn.DAY_MS


def test_every_factor_the_model_writes_has_a_kind() -> None:
    now = 400 * DAY
    facts = churn.ChurnFacts(
        contact_ms=[now - 300 * DAY + i * 3 * DAY for i in range(60)],
        complaint_ms=[now - DAY], open_cases=2, breached_ms=[now - 5 * DAY],
        surveys=[(now - 200 * DAY, "csat", 5), (now - 10 * DAY, "csat", 1)])
    texts = churn.churn_risk(facts, now).factors
    kinds = {churn.factor_kind(t) for t in texts}
    assert kinds == {"recency", "falling_frequency", "complaints", "open_cases",
                     "sla_breaches", "falling_satisfaction", "low_score"}, texts
    assert churn.factor_kind("something new") == "other"


def test_periods_follow_the_report_time_zone() -> None:
    # 2026-03-31 23:30 UTC is already April (and the second quarter) in Budapest
    ms = int(datetime(2026, 3, 31, 23, 30, tzinfo=UTC).timestamp() * 1000)
    assert period_name(period_of(ms, "month", UTC), "month") == "2026-03"
    assert period_name(period_of(ms, "month", ZoneInfo("Europe/Budapest")), "month") == "2026-04"
    assert period_name(period_of(ms, "quarter", UTC), "quarter") == "2026-Q1"
    assert period_name(period_of(ms, "quarter", ZoneInfo("Europe/Budapest")),
                       "quarter") == "2026-Q2"
    dec = int(datetime(2025, 12, 15, tzinfo=UTC).timestamp() * 1000)
    assert period_name(period_of(dec, "month", UTC) + 1, "month") == "2026-01"
    assert period_name(period_of(dec, "quarter", UTC) + 1, "quarter") == "2026-Q1"
