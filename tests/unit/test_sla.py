"""SLA policies and clocks: warnings, breaches, pauses and business hours, from history alone."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from contactstream.domain.calendars import ALWAYS, BusinessCalendar
from contactstream.domain.sla import (
    BREACHED,
    WARNING,
    PolicyError,
    SlaPolicy,
    clocks,
    due_times,
    first_matching,
    from_snapshot,
    policy_snapshot,
)

BUDAPEST = ZoneInfo("Europe/Budapest")
HOUR = 3600


def at(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=BUDAPEST)


COMPLAINTS = SlaPolicy.from_json("complaints", {
    "priority": ["high", "urgent"], "first_response_s": 2 * HOUR,
    "next_response_s": HOUR, "resolution_s": 8 * HOUR, "warn_at": 0.8})
OFFICE = BusinessCalendar.from_json("office", {
    "timezone": "Europe/Budapest",
    "hours": {d: [["09:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri")},
    "holidays": ["2026-12-25"]})
OFFICE_COMPLAINTS = SlaPolicy.from_json("office-complaints", {
    "first_response_s": 2 * HOUR, "resolution_s": 16 * HOUR, "calendar": "office"})


def alerts(history: list[tuple[str, datetime]], policy: SlaPolicy = COMPLAINTS,
           calendar: Any = ALWAYS) -> list[tuple[str, str, datetime]]:
    return [(d.metric, d.kind, d.at) for d in due_times(history, policy, calendar)]


# --- the stories ---------------------------------------------------------------------------

def test_an_unanswered_complaint_warns_then_breaches():
    filed = [("opened", at(23, 9))]
    # 80 % of two hours is 96 minutes: a warning at 10:36, the breach at 11:00
    assert alerts(filed)[:2] == [("first_response", WARNING, at(23, 10, 36)),
                                 ("first_response", BREACHED, at(23, 11))]
    assert alerts(filed)[2:] == [("resolution", WARNING, at(23, 15, 24)),
                                 ("resolution", BREACHED, at(23, 17))]

    before = clocks(filed, COMPLAINTS, now=at(23, 10, 59))["first_response"]
    assert before.due_at == at(23, 11) and before.warn_at == at(23, 10, 36)
    assert not before.breached and before.running and before.remaining_s == 60

    after = clocks(filed, COMPLAINTS, now=at(23, 11))["first_response"]
    assert after.breached and after.elapsed_s == 2 * HOUR and after.remaining_s == 0


def test_no_breach_when_the_agent_replies_in_time():
    history = [("opened", at(23, 9)), ("first_response", at(23, 10, 45))]
    first = clocks(history, COMPLAINTS, now=at(23, 12))["first_response"]
    assert not first.breached and first.stopped_at == at(23, 10, 45)
    assert first.due_at == at(23, 11) and first.elapsed_s == 1.75 * HOUR
    # the warning at 10:36 did happen; the breach never will
    assert [(m, k) for m, k, _ in alerts(history) if m == "first_response"] \
        == [("first_response", WARNING)]


def test_a_reply_exactly_at_the_deadline_is_in_time():
    history = [("opened", at(23, 9)), ("first_response", at(23, 11))]
    assert not clocks(history, COMPLAINTS, now=at(23, 12))["first_response"].breached


def test_a_late_reply_leaves_the_clock_breached():
    history = [("opened", at(23, 9)), ("first_response", at(23, 11, 30))]
    first = clocks(history, COMPLAINTS, now=at(23, 12))["first_response"]
    assert first.breached and first.due_at == at(23, 11)
    assert ("first_response", BREACHED, at(23, 11)) in alerts(history)


def test_waiting_on_the_customer_pauses_the_clock_and_moves_the_deadline():
    history = [("opened", at(23, 9)), ("waiting", at(23, 9, 30))]
    paused = clocks(history, COMPLAINTS, now=at(23, 12))["first_response"]
    assert paused.paused and paused.due_at is None and not paused.breached
    assert paused.remaining_s == 1.5 * HOUR
    assert not [a for a in alerts(history) if a[0] == "first_response"]

    # the customer answers at 11:00, after 90 paused minutes: due at 12:30, not 11:00
    history.append(("customer_replied", at(23, 11)))
    resumed = clocks(history, COMPLAINTS, now=at(23, 12))["first_response"]
    assert resumed.running and resumed.due_at == at(23, 12, 30)
    assert alerts(history)[:2] == [("first_response", WARNING, at(23, 12, 6)),
                                   ("first_response", BREACHED, at(23, 12, 30))]


def test_a_breach_before_the_pause_is_not_undone_by_it():
    history = [("opened", at(23, 9)), ("waiting", at(23, 11, 30))]
    first = clocks(history, COMPLAINTS, now=at(23, 12))["first_response"]
    assert first.paused and first.breached and first.due_at == at(23, 11)
    assert ("first_response", BREACHED, at(23, 11)) in alerts(history)


def test_business_hours_carry_a_friday_afternoon_complaint_into_monday():
    history = [("opened", at(20, 16, 30))]  # Friday
    first = clocks(history, OFFICE_COMPLAINTS, OFFICE, now=at(23, 9))["first_response"]
    assert first.due_at == at(23, 10, 30)
    # 96 business minutes: 30 on Friday, 66 on Monday
    assert first.warn_at == at(23, 10, 6)
    assert first.elapsed_s == 30 * 60 and not first.breached


def test_a_pause_in_business_time_moves_the_deadline_by_business_time_only():
    history = [("opened", at(23, 9)),                 # Monday, one business hour used
               ("waiting", at(23, 10)),
               ("customer_replied", at(23, 18))]      # after hours: resumes Tuesday 09:00
    first = clocks(history, OFFICE_COMPLAINTS, OFFICE, now=at(24, 9))["first_response"]
    assert first.due_at == at(24, 10) and first.elapsed_s == HOUR


def test_the_next_response_clock_runs_from_each_customer_message_to_the_next_reply():
    history = [("opened", at(23, 9)), ("first_response", at(23, 9, 30)),
               ("customer_replied", at(23, 10)), ("response", at(23, 10, 20)),
               ("customer_replied", at(23, 12)), ("customer_replied", at(23, 12, 10))]
    nxt = clocks(history, COMPLAINTS, now=at(23, 13, 30))["next_response"]
    # the second wait started with the first of the two messages
    assert nxt.cycle == 2 and nxt.started_at == at(23, 12)
    assert nxt.due_at == at(23, 13) and nxt.breached
    keys = [d.key for d in due_times(history, COMPLAINTS) if d.metric == "next_response"]
    assert keys == ["next_response#2:sla.warning", "next_response#2:sla.breached"]


def test_no_next_response_clock_before_the_first_answer_or_without_a_target():
    history = [("opened", at(23, 9)), ("customer_replied", at(23, 9, 10))]
    assert "next_response" not in clocks(history, COMPLAINTS, now=at(23, 10))
    no_target = SlaPolicy("plain", first_response_s=HOUR, resolution_s=8 * HOUR)
    answered = [*history, ("first_response", at(23, 9, 20)), ("customer_replied", at(23, 9, 30))]
    assert "next_response" not in clocks(answered, no_target, now=at(23, 10))


def test_resolving_stops_the_clocks_and_reopening_resumes_the_resolution_budget():
    history = [("opened", at(23, 9)), ("first_response", at(23, 9, 30)),
               ("resolved", at(23, 15))]                     # 6 of 8 hours used
    done = clocks(history, COMPLAINTS, now=at(24, 9))["resolution"]
    assert done.stopped_at == at(23, 15) and not done.breached and done.due_at == at(23, 17)

    history.append(("reopened", at(25, 9)))                  # two days later
    reopened = clocks(history, COMPLAINTS, now=at(25, 10))["resolution"]
    # the two resolved days do not count; the 2 hours left do
    assert reopened.running and reopened.stopped_at is None
    assert reopened.due_at == at(25, 11) and reopened.remaining_s == HOUR
    assert ("resolution", BREACHED, at(25, 11)) in alerts(history)


def test_the_same_history_gives_the_same_alerts_and_late_stamps_do_not_run_time_backwards():
    history = [("opened", at(23, 9)), ("waiting", at(23, 9, 30)),
               ("customer_replied", at(23, 9, 20))]   # stamped before the wait: no pause
    assert due_times(history, COMPLAINTS) == due_times(list(history), COMPLAINTS)
    assert clocks(history, COMPLAINTS, now=at(23, 10))["first_response"].due_at == at(23, 11)


def test_no_policy_means_no_clocks():
    assert clocks([("opened", at(23, 9))], None, now=at(23, 10)) == {}
    assert due_times([("opened", at(23, 9))], None) == []


# --- policies ------------------------------------------------------------------------------

def test_policies_match_by_priority_and_channel_and_the_first_match_wins():
    urgent_chat = SlaPolicy.from_json("urgent-chat", {
        "priority": ["urgent"], "channel": ["chat"], "first_response_s": 300,
        "resolution_s": HOUR})
    high = SlaPolicy.from_json("high", {"priority": ["high", "urgent"],
                                        "first_response_s": HOUR, "resolution_s": 4 * HOUR})
    anything = SlaPolicy.from_json("default", {"first_response_s": 8 * HOUR,
                                               "resolution_s": 40 * HOUR})
    policies = [urgent_chat, high, anything]
    assert first_matching(policies, "urgent", "chat") is urgent_chat
    assert first_matching(policies, "urgent", "email") is high
    assert first_matching(policies, "low", "chat") is anything
    assert first_matching([urgent_chat, high], "low", "voice") is None
    assert first_matching([anything, urgent_chat], "urgent", "chat") is anything


def test_a_policy_defaults_to_warning_at_80_percent_and_elapsed_time():
    policy = SlaPolicy.from_json("p", {"first_response_s": 60, "resolution_s": 600})
    assert policy.warn_at == 0.8 and policy.calendar is None and policy.next_response_s is None
    assert policy.priority is None and policy.matches("low", "sms")


def test_a_snapshot_keeps_policy_and_calendar_as_they_were_at_open():
    snap = policy_snapshot(OFFICE_COMPLAINTS, OFFICE)
    policy, calendar = from_snapshot(snap)
    assert policy == OFFICE_COMPLAINTS and calendar == OFFICE
    assert from_snapshot(policy_snapshot(COMPLAINTS)) == (COMPLAINTS, ALWAYS)
    bare = policy_snapshot(OFFICE_COMPLAINTS)
    assert from_snapshot(bare, {"office": OFFICE})[1] is OFFICE
    with pytest.raises(PolicyError, match="calendar 'office'"):
        from_snapshot(bare)


@pytest.mark.parametrize(("data", "message"), [
    ({"resolution_s": 60}, "first_response_s is required"),
    ({"first_response_s": 60}, "resolution_s is required"),
    ({"first_response_s": -5, "resolution_s": 60}, "first_response_s must be a positive"),
    ({"first_response_s": "1h", "resolution_s": 60}, "first_response_s must be a positive"),
    ({"first_response_s": 60, "resolution_s": True}, "resolution_s must be a positive"),
    ({"first_response_s": 60, "resolution_s": 60, "next_response_s": 0},
     "next_response_s must be a positive"),
    ({"first_response_s": 60, "resolution_s": 60, "warn_at": 1}, "warn_at must be a fraction"),
    ({"first_response_s": 60, "resolution_s": 60, "warn_at": 0}, "warn_at must be a fraction"),
    ({"first_response_s": 60, "resolution_s": 60, "priority": ["critical"]},
     "'critical' is not one of low, normal, high, urgent"),
    ({"first_response_s": 60, "resolution_s": 60, "priority": []}, "non-empty list"),
    ({"first_response_s": 60, "resolution_s": 60, "channel": "email"}, "non-empty list"),
    ({"first_response_s": 60, "resolution_s": 60, "channel": ["fax"]}, "'fax' is not one of"),
    ({"first_response_s": 60, "resolution_s": 60, "calendar": ""}, "calendar must be"),
    ({"first_response_s": 60, "resolution_s": 60, "target": 5}, "unknown field 'target'"),
    ("fast", "must be a JSON object"),
])
def test_bad_policies_are_refused_with_a_clear_reason(data: Any, message: str):
    with pytest.raises(PolicyError) as err:
        SlaPolicy.from_json("bad", data)
    assert message in str(err.value)


def test_due_times_carry_the_deadline_with_each_warning():
    warning = due_times([("opened", at(23, 9))], COMPLAINTS)[0]
    assert warning.kind == WARNING and warning.due_at == at(23, 11)
    assert warning.at + timedelta(minutes=24) == warning.due_at
