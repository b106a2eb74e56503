"""CSAT, NPS and CES pinned on worked examples; windows by event time; duplicates once."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from contactstream.projections.satisfaction import (
    DAY_MS,
    SatisfactionState,
    SurveyAnswer,
    apply,
    by_group,
    ces,
    csat,
    customer_summary,
    nps,
    summarize,
)

NOW = 1_790_000_000_000
EMPTY = {"score": None, "responses": 0}


def ans(eid: str, kind: str, score: int, days_ago: float = 1, customer: str = "c-1",
        agent: str | None = "agent-1", channel: str | None = "voice") -> SurveyAnswer:
    return SurveyAnswer(eid, customer, NOW - int(days_ago * DAY_MS), kind, score,
                        agent_id=agent, channel=channel, queue=None, case_id=None)


def test_csat_is_the_share_of_fours_and_fives() -> None:
    assert csat([5, 4, 4, 1]) == {"score": 75.0, "responses": 4}
    assert csat([5, 1, 1]) == {"score": 33.3, "responses": 3}


def test_nps_is_promoters_minus_detractors_in_points() -> None:
    assert nps([10, 9, 8, 7, 0]) == {"score": 20.0, "responses": 5}
    assert nps([10, 9, 7, 3, 2]) == {"score": 0.0, "responses": 5}
    assert nps([0, 3, 6, 6]) == {"score": -100.0, "responses": 4}


def test_ces_is_the_mean() -> None:
    assert ces([2, 3, 4]) == {"score": 3.0, "responses": 3}
    assert ces([1, 2, 2]) == {"score": 1.67, "responses": 3}


def test_no_answers_is_none_and_one_answer_counts() -> None:
    assert csat([]) == nps([]) == ces([]) == EMPTY
    assert csat([4]) == {"score": 100.0, "responses": 1}
    assert nps([7]) == {"score": 0.0, "responses": 1}
    assert ces([6]) == {"score": 6.0, "responses": 1}


def test_an_empty_window_gives_none_everywhere() -> None:
    old = [ans("a", "csat", 5, days_ago=40), ans("b", "nps", 10, days_ago=31)]
    assert summarize(old, now_ms=NOW, window_days=30) == {"csat": EMPTY, "nps": EMPTY,
                                                          "ces": EMPTY}
    assert summarize(old)["csat"] == {"score": 100.0, "responses": 1}


def test_window_is_by_event_time_open_at_the_start_closed_at_now() -> None:
    edge = [ans("start", "csat", 5, days_ago=30), ans("now", "csat", 1, days_ago=0),
            ans("future", "csat", 5, days_ago=-1)]
    assert summarize(edge, now_ms=NOW, window_days=30)["csat"] == {"score": 0.0,
                                                                   "responses": 1}


def test_late_arrivals_cross_the_window_boundary_by_their_event_time() -> None:
    on_time = [ans("a", "nps", 10, days_ago=2), ans("b", "nps", 3, days_ago=6)]
    late_inside = ans("late-in", "nps", 9, days_ago=6.9)   # arrives last, happened in window
    late_outside = ans("late-out", "nps", 0, days_ago=7.1)  # arrives last, happened before
    week = summarize([*on_time, late_inside, late_outside], now_ms=NOW, window_days=7)
    assert week["nps"] == {"score": 33.3, "responses": 3}
    in_order = [late_outside, on_time[1], late_inside, on_time[0]]
    assert summarize(in_order, now_ms=NOW, window_days=7) == week


def test_duplicates_count_once() -> None:
    a = ans("a", "csat", 5)
    assert summarize([a, a, ans("b", "csat", 1), a])["csat"] == {"score": 50.0,
                                                                 "responses": 2}


def test_by_group_sorts_groups_and_puts_unknown_last() -> None:
    answers = [ans("1", "csat", 5, agent="b"), ans("2", "csat", 1, agent="a"),
               ans("3", "nps", 10, agent=None), ans("4", "csat", 4, agent="b"),
               ans("5", "csat", 5, agent="c", days_ago=60)]
    rows = by_group(answers, "agent", now_ms=NOW, window_days=30)
    assert [r["group"] for r in rows] == ["a", "b", None]
    assert rows[1]["csat"] == {"score": 100.0, "responses": 2}
    assert rows[2]["nps"] == {"score": 100.0, "responses": 1}
    assert by_group(answers, "channel")[0]["group"] == "voice"


def test_the_fold_matches_summarize_and_ignores_repeats() -> None:
    answers = [ans("1", "csat", 5), ans("2", "nps", 4), ans("3", "ces", 2),
               ans("4", "csat", 2, customer="c-2")]
    state = SatisfactionState()
    for a in [*answers, answers[0], answers[1]]:
        state = apply(state, a)
    assert customer_summary(state, "c-1") == summarize(a for a in answers if a.customer_id
                                                       == "c-1")
    assert customer_summary(state, "nobody") == {"csat": EMPTY, "nps": EMPTY, "ces": EMPTY}


KIND_SCORES = st.sampled_from([("csat", 5), ("csat", 1), ("csat", 4), ("nps", 0), ("nps", 7),
                               ("nps", 10), ("ces", 1), ("ces", 7), ("ces", 3)])
ANSWERS = st.lists(st.builds(lambda i, ks, d, c: SurveyAnswer(f"e{i}", c, NOW - d * 3_600_000,
                                                              ks[0], ks[1]),
                             st.integers(0, 10_000), KIND_SCORES, st.integers(-24, 24 * 60),
                             st.sampled_from(["c-1", "c-2"])),
                   max_size=40, unique_by=lambda a: a.event_id)


@given(ANSWERS, st.randoms(use_true_random=False), st.integers(0, 3))
def test_any_order_and_duplication_gives_the_same_summary(
        answers: list[SurveyAnswer], rnd: random.Random, repeats: int) -> None:
    shuffled = answers + [rnd.choice(answers) for _ in range(repeats) if answers]
    rnd.shuffle(shuffled)
    for window in (None, 7, 30):
        now = NOW if window else None
        assert summarize(shuffled, now_ms=now, window_days=window) == summarize(
            answers, now_ms=now, window_days=window)
    assert by_group(shuffled, "agent", NOW, 30) == by_group(answers, "agent", NOW, 30)
    a, b = SatisfactionState(), SatisfactionState()
    for x in answers:
        a = apply(a, x)
    for x in shuffled:
        b = apply(b, x)
    for c in ("c-1", "c-2"):
        assert customer_summary(a, c) == customer_summary(b, c) == summarize(
            x for x in answers if x.customer_id == c)
