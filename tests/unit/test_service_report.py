"""The service report, worked by hand: attainment, backlog, mean times and abandonment."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from contactstream.projections.service import (
    DAY_MS,
    CallEnded,
    CaseRow,
    service_report,
    today_start,
)

NOW = 1_800_000_000_000
H = 3_600_000


def case(cid: str, status: str = "open", priority: str = "normal", opened_h_ago: float = 1,
         policy: str | None = "std", first_after_s: float | None = None,
         resolved_after_s: float | None = None) -> CaseRow:
    opened = NOW - int(opened_h_ago * H)
    return CaseRow(case_id=cid, status=status, priority=priority, opened_ms=opened,
                   policy=policy,
                   first_response_ms=None if first_after_s is None
                   else opened + int(first_after_s * 1000),
                   resolved_ms=None if resolved_after_s is None
                   else opened + int(resolved_after_s * 1000))


def test_an_empty_window_gives_nulls_and_a_zero_backlog() -> None:
    report = service_report([], set(), [], now_ms=NOW, window_days=1)
    assert report["sla_attainment_pct"] is None
    assert report["mean_first_response_s"] is None
    assert report["mean_resolution_s"] is None
    assert report["abandonment_rate"] is None
    assert report["backlog"] == {"low": 0, "normal": 0, "high": 0, "urgent": 0}
    assert report["counts"]["cases_opened"] == 0


def test_attainment_counts_only_cases_with_a_policy_opened_in_the_window() -> None:
    cases = [case("a"), case("b"), case("c"), case("d"),
             case("e", policy=None),            # no SLA: not in the attainment at all
             case("f", opened_h_ago=30)]        # opened before the window
    report = service_report(cases, {"b", "e", "f"}, [], now_ms=NOW, window_days=1)
    # a, b, c, d have a policy; b breached -> 3 of 4
    assert report["sla_attainment_pct"] == 75.0
    assert report["counts"]["cases_with_sla"] == 4
    assert report["counts"]["cases_breached"] == 1
    assert report["counts"]["cases_opened"] == 5


def test_backlog_is_open_and_waiting_cases_of_all_time_by_priority() -> None:
    cases = [case("a", priority="high"), case("b", status="waiting", priority="high"),
             case("c", priority="urgent", opened_h_ago=24 * 90),
             case("d", status="resolved", priority="low", resolved_after_s=10)]
    report = service_report(cases, set(), [], now_ms=NOW, window_days=1)
    assert report["backlog"] == {"low": 0, "normal": 0, "high": 2, "urgent": 1}
    assert report["counts"]["backlog"] == 3


def test_means_of_first_response_and_resolution_over_the_window() -> None:
    cases = [case("a", first_after_s=60, status="resolved", resolved_after_s=600),
             case("b", first_after_s=180),
             case("c"),                                       # no response yet
             case("d", first_after_s=9999, opened_h_ago=48),  # outside the window
             case("e", status="resolved", first_after_s=120, resolved_after_s=1800)]
    report = service_report(cases, set(), [], now_ms=NOW, window_days=1)
    assert report["mean_first_response_s"] == 120.0  # (60 + 180 + 120) / 3
    assert report["mean_resolution_s"] == 1200.0     # (600 + 1800) / 2
    assert report["counts"]["first_responses"] == 3
    assert report["counts"]["resolved"] == 2


def test_abandonment_rate_is_abandoned_calls_over_all_ended_calls_in_the_window() -> None:
    calls = [CallEnded(NOW - H, "abandoned"), CallEnded(NOW - 2 * H, "answered"),
             CallEnded(NOW - 3 * H, "answered"), CallEnded(NOW - 4 * H, "missed"),
             CallEnded(NOW - 2 * DAY_MS, "abandoned"),  # outside the window
             CallEnded(NOW + H, "abandoned")]           # in the future of `now`
    report = service_report([], set(), calls, now_ms=NOW, window_days=1)
    assert report["abandonment_rate"] == 0.25
    assert report["counts"]["calls_ended"] == 4
    assert report["counts"]["calls_abandoned"] == 1


def test_no_window_means_all_time() -> None:
    calls = [CallEnded(NOW - 100 * DAY_MS, "abandoned"), CallEnded(NOW - H, "answered")]
    report = service_report([case("old", opened_h_ago=24 * 400)], {"old"}, calls,
                            now_ms=NOW, window_days=None)
    assert report["sla_attainment_pct"] == 0.0
    assert report["abandonment_rate"] == 0.5


def test_calls_counted_by_outcome_weigh_as_many() -> None:
    one_by_one = [CallEnded(NOW - H, "abandoned")] * 3 + [CallEnded(NOW - H, "answered")] * 5
    counted = [CallEnded(NOW - H, "abandoned", 3), CallEnded(NOW - H, "answered", 5)]
    assert service_report([], set(), counted, now_ms=NOW, window_days=1) == \
        service_report([], set(), one_by_one, now_ms=NOW, window_days=1)


def test_backlog_by_queue_counts_open_and_waiting_cases_by_queue_status_and_priority() -> None:
    rows = [CaseRow("a", "open", "high", NOW - H, queue="billing"),
            CaseRow("b", "open", "high", NOW - H, queue="billing"),
            CaseRow("c", "waiting", "low", NOW - H, queue="billing"),
            CaseRow("d", "open", "urgent", NOW - H, queue=None),
            CaseRow("e", "resolved", "high", NOW - H, queue="billing")]
    report = service_report(rows, set(), [], now_ms=NOW, window_days=1)
    assert report["backlog_by_queue"] == [
        {"queue": None, "status": "open", "priority": "urgent", "cases": 1},
        {"queue": "billing", "status": "open", "priority": "high", "cases": 2},
        {"queue": "billing", "status": "waiting", "priority": "low", "cases": 1}]


def test_a_start_given_is_the_window_instead_of_window_days() -> None:
    cases = [case("a", first_after_s=60, opened_h_ago=2),
             case("b", first_after_s=600, opened_h_ago=5)]
    report = service_report(cases, {"b"}, [], now_ms=NOW, window_days=1,
                            start_ms=NOW - 3 * H)
    assert report["mean_first_response_s"] == 60.0
    assert report["sla_attainment_pct"] == 100.0


def test_today_starts_at_the_local_midnight_on_a_dst_day_too() -> None:
    budapest = ZoneInfo("Europe/Budapest")
    # 2026-03-29: clocks go from 02:00 to 03:00; at 10:00 local (08:00 UTC) today began
    # at 00:00 CET, 23:00 UTC the day before
    start = today_start(datetime(2026, 3, 29, 8, 0, tzinfo=UTC), budapest)
    assert start.astimezone(UTC) == datetime(2026, 3, 28, 23, 0, tzinfo=UTC)
    # at 23:30 UTC on the 28th it is already the 29th in Budapest
    assert today_start(datetime(2026, 3, 28, 23, 30, tzinfo=UTC), budapest) == start
    assert today_start(datetime(2026, 3, 29, 8, 0, tzinfo=UTC), UTC) == \
        datetime(2026, 3, 29, tzinfo=UTC)
