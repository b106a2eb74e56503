"""The churn model: steady customers score low, drifting ones high, with their reasons."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from contactstream.projections.churn import DAY_MS, ChurnFacts, churn_risk

NOW = 1_790_000_000_000


def weekly(last_days_ago: int, weeks: int = 52) -> list[int]:
    """A contact every 7 days, the newest ``last_days_ago`` days before now."""
    return [NOW - (last_days_ago + 7 * i) * DAY_MS for i in reversed(range(weeks))]


def test_a_steady_customer_scores_low_with_no_factors() -> None:
    risk = churn_risk(ChurnFacts(contact_ms=weekly(3), surveys=[(NOW - DAY_MS, "csat", 5)]),
                      NOW)
    assert risk.score < 0.1 and risk.factors == []


def test_silent_for_four_times_the_rhythm_with_a_complaint_scores_high() -> None:
    facts = ChurnFacts(contact_ms=weekly(28), complaint_ms=[NOW - 5 * DAY_MS])
    risk = churn_risk(facts, NOW)
    assert risk.score > 0.6
    assert risk.factors[0] == "no contact for 4.0x the usual interval (7 days)"
    assert "1 complaint in the last 30 days" in risk.factors
    # each signal alone raises the risk less than both together
    assert churn_risk(ChurnFacts(contact_ms=weekly(28)), NOW).score < risk.score
    assert churn_risk(ChurnFacts(contact_ms=weekly(3), complaint_ms=[NOW - 5 * DAY_MS]),
                      NOW).score < risk.score


def test_recency_is_measured_against_the_customers_own_rhythm() -> None:
    monthly = [NOW - (28 + 30 * i) * DAY_MS for i in range(12)]
    assert churn_risk(ChurnFacts(contact_ms=monthly), NOW).factors == []
    assert churn_risk(ChurnFacts(contact_ms=weekly(28)), NOW).factors


def test_falling_frequency_is_a_factor() -> None:
    before = [NOW - (95 + 5 * i) * DAY_MS for i in range(16)]
    risk = churn_risk(ChurnFacts(purchase_ms=sorted([*before, NOW - 2 * DAY_MS])), NOW)
    assert risk.factors == ["contacts down 94% (1 in the last 90 days, 16 in the 90 before)"]


def test_falling_and_low_satisfaction_are_factors() -> None:
    surveys = [(NOW - 200 * DAY_MS, "csat", 5), (NOW - 150 * DAY_MS, "nps", 10),
               (NOW - 10 * DAY_MS, "csat", 1), (NOW - 9 * DAY_MS, "ces", 1)]
    risk = churn_risk(ChurnFacts(contact_ms=weekly(3), surveys=surveys), NOW)
    assert risk.factors == ["satisfaction falling (100% to 0% of scale)",
                            "low CSAT score (1) in the last 90 days"]
    assert risk.score == 0.73  # -3 + 3.0 x 1.0 drop + 1.0 low score


def test_cases_raise_the_risk() -> None:
    risk = churn_risk(ChurnFacts(contact_ms=weekly(3), open_cases=1,
                                 breached_ms=[NOW - 5 * DAY_MS]), NOW)
    assert risk.factors == ["1 case past its SLA", "1 unresolved case"]


def test_a_breached_case_counts_for_90_days() -> None:
    def factors(*days_ago: float) -> list[str]:
        facts = ChurnFacts(contact_ms=weekly(3),
                           breached_ms=[NOW - int(d * DAY_MS) for d in days_ago])
        return churn_risk(facts, NOW).factors

    assert factors(10, 89.9) == ["2 cases past its SLA"]
    assert factors(90) == factors(100) == factors(-1) == []  # too old; not yet breached
    assert factors(100, 400, 30) == ["1 case past its SLA"]


def test_no_history_is_the_base_rate_and_the_future_is_ignored() -> None:
    assert churn_risk(ChurnFacts(), NOW).score == 0.05
    future = ChurnFacts(contact_ms=weekly(28), complaint_ms=[NOW + DAY_MS],
                        surveys=[(NOW + DAY_MS, "nps", 0)])
    assert churn_risk(future, NOW) == churn_risk(ChurnFacts(contact_ms=weekly(28)), NOW)


@given(st.lists(st.integers(-400, 0), max_size=30), st.lists(st.integers(-60, 0), max_size=5),
       st.integers(0, 5), st.integers(0, 5))
def test_the_score_is_a_probability(days: list[int], complaints: list[int], open_: int,
                                    breached: int) -> None:
    facts = ChurnFacts(sorted(NOW + d * DAY_MS for d in days), (),
                       [NOW + d * DAY_MS for d in complaints], (), open_,
                       [NOW - d * DAY_MS for d in range(breached)])
    risk = churn_risk(facts, NOW)
    assert 0.0 <= risk.score <= 1.0
    base = churn_risk(ChurnFacts(), NOW).score
    if risk.factors:  # a factor only adds (a small one may round to the base's 0.05)
        assert risk.score >= base
    else:
        assert risk.score == base
