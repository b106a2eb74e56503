"""The Case aggregate: its lifecycle, refused transitions, duplicates and concurrent saves."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError, RecordConflictError

from contactstream.domain.cases import Case, InvalidCommand, InvalidTransition
from contactstream.domain.sla import SlaPolicy, policy_snapshot

BUDAPEST = ZoneInfo("Europe/Budapest")
FILED = datetime(2026, 11, 23, 9, 0, tzinfo=BUDAPEST)
HIGH = SlaPolicy.from_json("high", {"priority": ["high"], "first_response_s": 7200,
                                    "resolution_s": 28800})


def minutes(n: int) -> datetime:
    return FILED + timedelta(minutes=n)


def complaint(event_id: str = "ev-complaint-1") -> Case:
    return Case.open(customer_id="c-1001", channel="web", priority="high", queue="billing",
                     opened_by_event_id=event_id, opened_at=FILED,
                     policy=policy_snapshot(HIGH))


def test_a_complaint_opens_a_case_with_its_policy_fixed():
    case = complaint()
    assert case.status == "open" and case.is_open
    assert (case.customer_id, case.channel, case.priority, case.queue) \
        == ("c-1001", "web", "high", "billing")
    assert case.opened_at == FILED and case.policy == policy_snapshot(HIGH)
    assert case.history == [("opened", FILED)]
    assert case.handled("ev-complaint-1")
    assert [type(e).__name__ for e in case.collect_events()] == ["Opened"]


def test_the_same_trigger_always_maps_to_the_same_case_id():
    assert complaint("ev-7").id == complaint("ev-7").id == Case.id_for("ev-7")
    assert complaint("ev-7").id != complaint("ev-8").id
    keyed = Case.open(customer_id="c-1", channel="chat", priority="normal", queue=None,
                      opened_by_event_id="ev-9", opened_at=FILED, source_key="chat:c-1:1")
    assert keyed.id == Case.id_for("chat:c-1:1")


def test_a_case_through_its_whole_life():
    case = complaint()
    assert case.assign("agent-7", minutes(5), event_id="api-1")
    assert case.agent_id == "agent-7"
    assert case.reply("agent-7", minutes(20), event_id="ev-mail-1")
    assert case.first_response_at == minutes(20)
    assert case.wait_for_customer(minutes(21))
    assert case.status == "waiting"
    assert case.customer_replied(minutes(90), event_id="ev-mail-2")
    assert case.status == "open" and case.last_customer_reply_at == minutes(90)
    assert case.reply("agent-7", minutes(100), event_id="ev-mail-3")
    assert case.first_response_at == minutes(20) and case.last_response_at == minutes(100)
    assert case.resolve(minutes(120), resolution="refunded")
    assert case.status == "resolved" and not case.is_open
    assert (case.resolved_at, case.resolution) == (minutes(120), "refunded")
    assert case.reopen(minutes(600))
    assert case.status == "open" and case.resolved_at is None and case.reopened_count == 1
    assert [type(e).__name__ for e in case.collect_events()] == [
        "Opened", "Assigned", "FirstResponseGiven", "PausedForCustomer", "CustomerReplied",
        "ResponseGiven", "Resolved", "Reopened"]
    assert [kind for kind, _ in case.history] == [
        "opened", "assigned", "first_response", "waiting", "customer_replied", "response",
        "resolved", "reopened"]


def test_the_first_agent_to_reply_takes_an_unassigned_case():
    case = complaint()
    case.reply("agent-3", minutes(10))
    assert case.agent_id == "agent-3"
    case.assign("agent-9", minutes(11))
    case.reply("agent-3", minutes(12))
    assert case.agent_id == "agent-9"


def test_an_agent_may_write_while_the_case_waits_on_the_customer():
    case = complaint()
    case.wait_for_customer(minutes(1))
    case.reply("agent-7", minutes(30))
    assert case.status == "waiting"


@pytest.mark.parametrize(("setup", "command"), [
    (["resolve"], lambda c: c.reply("agent-7", minutes(60))),
    (["resolve"], lambda c: c.assign("agent-7", minutes(60))),
    (["resolve"], lambda c: c.resolve(minutes(60))),
    (["resolve"], lambda c: c.wait_for_customer(minutes(60))),
    (["resolve"], lambda c: c.customer_replied(minutes(60))),
    (["wait"], lambda c: c.wait_for_customer(minutes(60))),
    ([], lambda c: c.reopen(minutes(60))),
    (["wait"], lambda c: c.reopen(minutes(60))),
])
def test_invalid_transitions_are_refused_and_change_nothing(setup, command):
    case = complaint()
    for step in setup:
        (case.resolve if step == "resolve" else case.wait_for_customer)(minutes(30))
    version = case.version
    with pytest.raises(InvalidTransition) as err:
        command(case)
    assert case.version == version
    assert err.value.case_id == case.id and err.value.status == case.status
    assert "cannot" in str(err.value)


def test_bad_values_are_refused():
    with pytest.raises(InvalidCommand, match="priority 'critical'"):
        Case.open(customer_id="c-1", channel="web", priority="critical", queue=None,
                  opened_by_event_id="ev-1", opened_at=FILED)
    with pytest.raises(InvalidCommand, match="channel 'fax'"):
        Case.open(customer_id="c-1", channel="fax", priority="low", queue=None,
                  opened_by_event_id="ev-1", opened_at=FILED)
    with pytest.raises(InvalidCommand, match="timezone-aware"):
        Case.open(customer_id="c-1", channel="web", priority="low", queue=None,
                  opened_by_event_id="ev-1", opened_at=datetime(2026, 11, 23, 9))
    with pytest.raises(InvalidCommand, match="timezone-aware"):
        complaint().reply("agent-7", datetime(2026, 11, 23, 10))
    with pytest.raises(InvalidCommand, match="agent_id"):
        complaint().assign("", minutes(1))


def test_the_same_inbound_event_twice_changes_nothing():
    case = complaint()
    assert case.reply("agent-7", minutes(20), event_id="ev-mail-1")
    assert case.resolve(minutes(30), event_id="ev-close-1")
    version = case.version
    # redelivered after a crash: no new events, and no error although resolved
    assert not case.reply("agent-7", minutes(20), event_id="ev-mail-1")
    assert not case.resolve(minutes(30), event_id="ev-close-1")
    assert case.version == version and case.handled("ev-mail-1")
    assert not case.handled("ev-other") and not case.handled(None)


def test_the_case_computes_its_clocks_from_its_own_history():
    case = complaint()
    case.wait_for_customer(minutes(30))
    case.customer_replied(minutes(90))
    first = case.clocks(now=minutes(100))["first_response"]
    assert first.due_at == minutes(180) and not first.breached
    assert [d.key for d in case.due_times()][:2] == [
        "first_response#1:sla.warning", "first_response#1:sla.breached"]
    no_sla = Case.open(customer_id="c-1", channel="web", priority="low", queue=None,
                       opened_by_event_id="ev-2", opened_at=FILED)
    assert no_sla.clocks(now=minutes(1)) == {} and no_sla.due_times() == []


def test_a_stored_case_comes_back_the_same():
    app: Application = Application()
    case = complaint()
    case.reply("agent-7", minutes(20), event_id="ev-mail-1")
    case.wait_for_customer(minutes(25))
    app.save(case)
    again = app.repository.get(case.id)
    assert again.status == "waiting" and again.history == case.history
    assert again.handled("ev-mail-1") and again.policy == case.policy
    assert again.clocks(now=minutes(60)) == case.clocks(now=minutes(60))


def test_two_commands_on_stale_copies_of_one_case_cannot_both_be_saved():
    app: Application = Application()
    app.save(complaint())
    case_id = Case.id_for("ev-complaint-1")
    by_agent = app.repository.get(case_id)
    by_supervisor = app.repository.get(case_id)
    by_agent.reply("agent-7", minutes(20))
    by_supervisor.resolve(minutes(21))
    app.save(by_agent)
    with pytest.raises(RecordConflictError) as err:
        app.save(by_supervisor)
    assert isinstance(err.value, IntegrityError)
    # the winner's change is kept; the loser reloads and decides again
    stored = app.repository.get(case_id)
    assert stored.status == "open" and stored.first_response_at == minutes(20)


def test_opening_the_same_case_twice_is_caught_too():
    app: Application = Application()
    app.save(complaint("ev-dup"))
    with pytest.raises(RecordConflictError):
        app.save(complaint("ev-dup"))
