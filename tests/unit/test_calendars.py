"""Business calendars: weekends, holidays and daylight-saving changes move deadlines right."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from contactstream.domain.calendars import ALWAYS, BusinessCalendar, CalendarError

BUDAPEST = ZoneInfo("Europe/Budapest")
OFFICE = [["09:00", "17:00"]]
HOUR = 3600


def budapest(*args: int) -> datetime:
    return datetime(*args, tzinfo=BUDAPEST)  # type: ignore[misc]


@pytest.fixture
def office() -> BusinessCalendar:
    """Mon–Fri 09:00–17:00 in Budapest, closed on Christmas Day."""
    return BusinessCalendar.from_json("budapest-office", {
        "timezone": "Europe/Budapest",
        "hours": {d: OFFICE for d in ("mon", "tue", "wed", "thu", "fri")},
        "holidays": ["2026-12-25"],
    })


def test_a_two_hour_target_started_friday_afternoon_ends_monday_morning(office):
    # Friday 2026-11-20 16:30: half an hour today, the weekend is closed, 1.5 h on Monday
    due = office.add_business_seconds(budapest(2026, 11, 20, 16, 30), 2 * HOUR)
    assert due == budapest(2026, 11, 23, 10, 30)
    assert office.business_seconds_between(budapest(2026, 11, 20, 16, 30), due) == 2 * HOUR


def test_a_deadline_spanning_christmas_day_skips_the_holiday(office):
    # Thursday 24 Dec 16:00 + 4 h: 1 h on Thursday, Friday is a holiday, 3 h on Monday
    due = office.add_business_seconds(budapest(2026, 12, 24, 16, 0), 4 * HOUR)
    assert due == budapest(2026, 12, 28, 12, 0)


def test_the_autumn_change_keeps_business_hours_on_the_wall_clock(office):
    # Clocks go back on Sunday 2026-10-25 (CEST -> CET): Friday 16:00 + 3 h is Monday
    # 11:00 local, which is 10:00 UTC rather than the 09:00 UTC it would be a week earlier
    due = office.add_business_seconds(budapest(2026, 10, 23, 16, 0), 3 * HOUR)
    assert due == budapest(2026, 10, 26, 11, 0)
    assert due.astimezone(UTC) == datetime(2026, 10, 26, 10, 0, tzinfo=UTC)


def test_the_spring_change_keeps_business_hours_on_the_wall_clock(office):
    # Clocks go forward on Sunday 2026-03-29 (CET -> CEST)
    due = office.add_business_seconds(budapest(2026, 3, 27, 16, 0), 3 * HOUR)
    assert due == budapest(2026, 3, 30, 11, 0)
    assert due.astimezone(UTC) == datetime(2026, 3, 30, 9, 0, tzinfo=UTC)


def test_a_round_the_clock_calendar_has_a_25_hour_day_in_autumn_and_23_in_spring():
    nonstop = BusinessCalendar("Europe/Budapest", {"sun": [["00:00", "24:00"]]})
    assert nonstop.business_seconds_between(budapest(2026, 10, 25), budapest(2026, 10, 26)) \
        == 25 * HOUR
    assert nonstop.business_seconds_between(budapest(2026, 3, 29), budapest(2026, 3, 30)) \
        == 23 * HOUR
    # 24 hours of business time from Sunday midnight run one hour into the next Sunday
    assert nonstop.add_business_seconds(budapest(2026, 3, 29), 24 * HOUR) \
        == budapest(2026, 4, 5, 1, 0)


def test_night_hours_across_the_spring_gap_count_real_time():
    # 01:00–05:00 on the night the clocks skip 02:00–03:00 holds three real hours
    night = BusinessCalendar("Europe/Budapest", {"sun": [["01:00", "05:00"]]})
    assert night.business_seconds_between(budapest(2026, 3, 29), budapest(2026, 3, 30)) \
        == 3 * HOUR


def test_a_start_outside_hours_waits_for_the_next_opening(office):
    saturday_noon = budapest(2026, 11, 21, 12, 0)
    assert office.add_business_seconds(saturday_noon, 30 * 60) == budapest(2026, 11, 23, 9, 30)
    assert office.business_seconds_between(saturday_noon, budapest(2026, 11, 23, 9, 0)) == 0


def test_a_target_ending_at_closing_time_is_due_at_closing_time(office):
    assert office.add_business_seconds(budapest(2026, 11, 20, 16, 0), HOUR) \
        == budapest(2026, 11, 20, 17, 0)


def test_deadlines_keep_the_time_zone_they_were_given_in(office):
    start = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)  # 16:30 in Budapest
    due = office.add_business_seconds(start, 2 * HOUR)
    assert due.tzinfo is UTC and due == budapest(2026, 11, 23, 10, 30)


def test_business_seconds_between_is_the_inverse_of_adding(office):
    start = budapest(2026, 10, 22, 10, 17)
    for hours in (0.5, 7, 8, 9, 40, 100):
        due = office.add_business_seconds(start, hours * HOUR)
        assert office.business_seconds_between(start, due) == hours * HOUR


def test_always_counts_plain_elapsed_time_even_across_a_dst_change():
    start = budapest(2026, 10, 24, 12, 0)
    due = ALWAYS.add_business_seconds(start, 24 * HOUR)
    assert due == budapest(2026, 10, 25, 11, 0)  # the night had 25 hours
    assert ALWAYS.business_seconds_between(start, due) == 24 * HOUR


def test_a_calendar_round_trips_through_its_json(office):
    assert BusinessCalendar.from_json("again", office.to_dict()) == office


@pytest.mark.parametrize(("data", "message"), [
    ({"hours": {"mon": OFFICE}}, "timezone is required"),
    ({"timezone": "Mars/Olympus", "hours": {"mon": OFFICE}}, "unknown time zone"),
    ({"timezone": "UTC", "hours": {"monday": OFFICE}}, "unknown weekday 'monday'"),
    ({"timezone": "UTC", "hours": {"mon": [["9:00", "17:00"]]}}, "'9:00' is not a time"),
    ({"timezone": "UTC", "hours": {"mon": [["17:00", "09:00"]]}}, "does not end after"),
    ({"timezone": "UTC", "hours": {"mon": [["09:00", "13:00"], ["12:00", "17:00"]]}},
     "overlap"),
    ({"timezone": "UTC", "hours": {"mon": ["09:00-17:00"]}}, "is not a [\"HH:MM\""),
    ({"timezone": "UTC", "hours": {}}, "at least one day"),
    ({"timezone": "UTC", "hours": {"mon": OFFICE}, "holidays": ["2026-02-30"]},
     "'2026-02-30' is not a date"),
    ({"timezone": "UTC", "hours": {"mon": OFFICE}, "weekends": []}, "unknown field"),
    ([], "must be a JSON object"),
])
def test_bad_calendars_are_refused_with_a_clear_reason(data: Any, message: str):
    with pytest.raises(CalendarError) as err:
        BusinessCalendar.from_json("bad", data)
    assert message in str(err.value)


def test_naive_datetimes_are_refused(office):
    with pytest.raises(CalendarError, match="timezone-aware"):
        office.add_business_seconds(datetime(2026, 11, 20, 16, 30), 60)


def test_fixed_offset_inputs_work_like_any_aware_datetime(office):
    start = datetime(2026, 11, 20, 16, 30, tzinfo=timezone(timedelta(hours=1)))
    assert office.add_business_seconds(start, 2 * HOUR) == budapest(2026, 11, 23, 10, 30)
