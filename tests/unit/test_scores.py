"""The figures that move with the clock (projections/scores.py): the same numbers as the
folds over raw rows, and ``valid_until`` never later than their first change."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from contactstream.adapters.figurestore import shown_windows, stored_windows
from contactstream.projections import churn, satisfaction, scores, value
from contactstream.projections.scores import CustomerFacts

DAY_MS = 86_400_000
NOW = 1_790_000_000_000

instants = st.integers(NOW - 400 * DAY_MS, NOW + 3 * DAY_MS)


@st.composite
def facts(draw: st.DrawFn) -> CustomerFacts:
    activity = draw(st.lists(st.tuples(instants, st.sampled_from("ccxp")), max_size=14))
    surveys = [(f"e{i}", t, k, s) for i, (t, k, s) in enumerate(draw(st.lists(
        st.tuples(instants, st.sampled_from(["csat", "nps", "ces"]), st.integers(0, 10)),
        max_size=6)))]
    breaches = draw(st.lists(instants, max_size=3))  # when each breached case first breached
    return CustomerFacts(activity, surveys, {}, draw(st.integers(0, 3)), breaches)


def _shown(f: CustomerFacts, at: int) -> tuple:
    return churn.churn_risk(f.churn_facts(), at), scores.windows(f, at)


@given(facts(), instants)
def test_windows_are_summarize_over_event_time(f: CustomerFacts, at: int) -> None:
    answers = [satisfaction.SurveyAnswer(e, "c", ms, k, s) for e, ms, k, s in f.surveys]
    assert scores.windows(f, at) == {
        f"{d}d": satisfaction.summarize(answers, now_ms=at, window_days=d) for d in (7, 30, 90)}


@given(facts(), instants)
def test_stored_windows_read_back_as_computed(f: CustomerFacts, at: int) -> None:
    """Stored, the windows keep only the kinds with answers; the view's reader gives back
    every window and kind as computed."""
    computed = scores.windows(f, at)
    stored = stored_windows(computed)
    assert all(b["responses"] > 0 for kinds in stored.values() for b in kinds.values())
    assert shown_windows(stored) == computed


def test_windows_without_answers_are_stored_empty() -> None:
    assert stored_windows(scores.windows(CustomerFacts(), NOW)) == {}


@settings(max_examples=400, deadline=None)
@given(facts(), instants, st.lists(st.floats(0, 1), min_size=1, max_size=8))
def test_nothing_shown_changes_before_valid_until(f: CustomerFacts, at: int,
                                                  where: list[float]) -> None:
    until = scores.next_change(f, at)
    assert until is None or until > at
    end = until - 2 if until is not None else at + 500 * DAY_MS  # 2 ms for float rounding
    shown = _shown(f, at)
    for x in where:
        t = at + int(x * (end - at)) if end > at else at
        assert _shown(f, t) == shown, (at, t, until)


def test_valid_until_follows_the_recency_factor_and_the_windows() -> None:
    weekly = [(NOW - (3 + 7 * i) * DAY_MS, "c") for i in range(10)]
    f = CustomerFacts(weekly, [("s", NOW - DAY_MS, "csat", 5)])
    # the answer leaves the 7-day window six days from now, before anything else moves
    assert scores.next_change(f, NOW) == NOW + 6 * DAY_MS
    # silent for long: the factor's text moves by a tenth of the rhythm (7 days)
    late = NOW + 60 * DAY_MS
    step = scores.next_change(CustomerFacts(weekly), late)
    assert step is not None and late < step <= late + int(0.7 * DAY_MS)
    assert _shown(CustomerFacts(weekly), step - 2) == _shown(CustomerFacts(weekly), late)


def test_valid_until_is_when_a_breach_leaves_its_90_days() -> None:
    weekly = [(NOW - (3 + 7 * i) * DAY_MS, "c") for i in range(10)]
    breached = NOW - 85 * DAY_MS
    f = CustomerFacts(weekly, breached_ms=[breached])
    assert "1 case past its SLA" in _shown(f, NOW)[0].factors
    step = scores.next_change(f, NOW)
    assert step == breached + 90 * DAY_MS  # before the activity's 90 days move on
    assert "1 case past its SLA" not in _shown(f, step)[0].factors


def test_churn_from_aggregates_is_churn_of_the_rows() -> None:
    f = CustomerFacts([(NOW - 40 * DAY_MS, "c"), (NOW - 20 * DAY_MS, "x"),
                       (NOW - 10 * DAY_MS, "p")],
                      [("b", NOW - 5 * DAY_MS, "csat", 1), ("a", NOW - 100 * DAY_MS, "nps", 10)],
                      open_cases=1, breached_ms=[NOW - 95 * DAY_MS, NOW - 3 * DAY_MS])
    raw = churn.ChurnFacts([NOW - 40 * DAY_MS, NOW - 20 * DAY_MS], [NOW - 10 * DAY_MS],
                           [NOW - 20 * DAY_MS],
                           [(NOW - 100 * DAY_MS, "nps", 10), (NOW - 5 * DAY_MS, "csat", 1)], 1,
                           [NOW - 95 * DAY_MS, NOW - 3 * DAY_MS])
    assert scores.scores(f, NOW, None, "EUR", {}).churn == churn.churn_risk(raw, NOW)


@given(st.dictionaries(st.text("abcdef", min_size=1, max_size=3),
                       st.tuples(st.integers(0, 400), st.integers(0, 9), st.integers(0, 90)),
                       max_size=40))
def test_rfm_bounds_reproduce_every_score(base: dict[str, tuple[int, int, int]]) -> None:
    customers = {c: value.CustomerValueFacts(NOW - d * DAY_MS - 1 if n else None, n,
                                             Decimal(m)) for c, (d, n, m) in base.items()}
    scored, bounds = scores.base_rfm(customers, NOW)
    assert scored == value.rfm(customers, NOW)
    again = scores.Bounds.from_json(bounds.json())
    for c, f in customers.items():
        assert scores.rfm_with(again, f, NOW) == scored[c]


def test_before_the_first_bounds_a_buyer_scores_as_if_alone() -> None:
    f = value.CustomerValueFacts(NOW - 3 * DAY_MS, 2, Decimal("40"))
    assert scores.rfm_with(None, f, NOW) == value.rfm({"x": f}, NOW)["x"]
    assert scores.rfm_with(None, value.CustomerValueFacts(None, 0, Decimal(0)), NOW).segment \
        == value.PROSPECT


def test_lifetime_from_totals_is_lifetime_revenue_of_the_purchases() -> None:
    buys = [value.Purchase(f"p{i}", "c", 0, Decimal(a), cur) for i, (a, cur) in enumerate(
        [("10.005", "EUR"), ("3", "USD"), ("1000", "HUF"), ("7", "XXX"), ("0.01", "EUR")])]
    totals: dict[str, tuple[Decimal, int, int]] = {}
    for p in buys:
        held = totals.get(p.currency, (Decimal(0), 0, 0))
        totals[p.currency] = (held[0] + p.amount, held[1] + 1, 0)
    rates = {"USD": Decimal("0.92"), "HUF": Decimal("0.0025")}
    assert scores.lifetime(totals, "EUR", rates) == value.lifetime_revenue(buys, "EUR", rates)
