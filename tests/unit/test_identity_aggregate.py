"""The CustomerLink aggregate: merges and unmerges with their history, refusals, concurrency."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError, RecordConflictError

from contactstream.domain.identity import (
    CustomerLink,
    InvalidCommand,
    NotMerged,
    Separated,
    StrongIdConflict,
)

BUDAPEST = ZoneInfo("Europe/Budapest")
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=BUDAPEST)


def minutes(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


def test_a_merge_and_an_unmerge_are_recorded_with_who_when_and_why():
    link = CustomerLink.start("cs-phone", strong=False)
    assert not link.is_merged
    assert link.merge("c-1001", survivor_strong=True, reason="ev-call-2", at=minutes(1))
    assert link.survivor == "c-1001" and link.merged_at == minutes(1)
    assert link.unmerge(by="supervisor:eva", reason="ticket-17", at=minutes(30))
    assert link.survivor is None and link.separated_from == {"c-1001"}
    assert link.history == [("merged", "c-1001", "system", "ev-call-2", minutes(1)),
                            ("unmerged", "c-1001", "supervisor:eva", "ticket-17", minutes(30))]
    assert [type(e).__name__ for e in link.collect_events()] \
        == ["Started", "Merged", "Unmerged"]


def test_replays_change_nothing_and_land_on_the_same_id():
    assert CustomerLink.start("cs-x", strong=False).id == CustomerLink.id_for("cs-x")
    assert CustomerLink.id_for("cs-x") != CustomerLink.id_for("cs-y")
    link = CustomerLink.start("cs-x", strong=False)
    assert link.merge("cs-y", survivor_strong=False, reason="ev-1", at=minutes(1))
    assert not link.merge("cs-y", survivor_strong=False, reason="ev-1", at=minutes(1))
    assert not link.merge("cs-y", survivor_strong=False, reason="ev-2", at=minutes(2))
    assert link.unmerge(by="admin", reason="t-1", at=minutes(3))
    assert not link.unmerge(by="admin", reason="t-1", at=minutes(3))
    assert len(link.history) == 2


def test_a_merged_on_survivor_repoints_the_member():
    link = CustomerLink.start("cs-phone", strong=False)
    link.merge("cs-email", survivor_strong=False, reason="ev-1", at=minutes(1))
    assert link.merge("c-1001", survivor_strong=True, reason="ev-2", at=minutes(2))
    assert link.survivor == "c-1001" and [h[1] for h in link.history] == ["cs-email", "c-1001"]


def test_refusals():
    strong = CustomerLink.start("c-A", strong=True)
    with pytest.raises(StrongIdConflict):
        strong.merge("c-B", survivor_strong=True, reason="ev-1", at=minutes(1))
    with pytest.raises(StrongIdConflict):
        strong.merge("c-B", survivor_strong=True, reason="ev-1", at=minutes(1), by="admin")
    with pytest.raises(NotMerged):
        strong.unmerge(by="admin", reason="t-1", at=minutes(2))
    with pytest.raises(InvalidCommand):
        strong.merge("c-A", survivor_strong=True, reason="ev-2", at=minutes(1))
    with pytest.raises(InvalidCommand):
        strong.merge("cs-1", survivor_strong=False, reason="ev-3", at=datetime(2026, 1, 1))
    with pytest.raises(InvalidCommand):
        strong.merge("", survivor_strong=False, reason="ev-3", at=minutes(1))
    with pytest.raises(InvalidCommand):
        CustomerLink.start("", strong=False)
    assert strong.history == [] and not strong.is_merged


def test_the_system_may_not_merge_again_what_a_person_separated():
    link = CustomerLink.start("cs-phone", strong=False)
    link.merge("cs-email", survivor_strong=False, reason="ev-1", at=minutes(1))
    link.unmerge(by="admin", reason="t-1", at=minutes(2))
    with pytest.raises(Separated):
        link.merge("cs-email", survivor_strong=False, reason="ev-9", at=minutes(3))
    assert link.merge("cs-email", survivor_strong=False, reason="t-2", at=minutes(4),
                      by="admin")
    assert link.separated_from == set()


def test_a_stored_link_comes_back_the_same():
    app: Application = Application()
    link = CustomerLink.start("cs-phone", strong=False)
    link.merge("c-1001", survivor_strong=True, reason="ev-1", at=minutes(1))
    link.unmerge(by="admin", reason="t-1", at=minutes(2))
    app.save(link)
    again = app.repository.get(CustomerLink.id_for("cs-phone"))
    assert again.history == link.history and again.separated_from == {"c-1001"}
    assert again.handled("merged", "ev-1") and not again.is_merged


def test_two_decisions_on_stale_copies_cannot_both_be_saved():
    app: Application = Application()
    link = CustomerLink.start("cs-phone", strong=False)
    link.merge("cs-email", survivor_strong=False, reason="ev-1", at=minutes(1))
    app.save(link)
    by_system = app.repository.get(link.id)
    by_admin = app.repository.get(link.id)
    by_system.merge("c-1001", survivor_strong=True, reason="ev-2", at=minutes(2))
    by_admin.unmerge(by="admin", reason="t-1", at=minutes(2))
    app.save(by_system)
    with pytest.raises(RecordConflictError) as err:
        app.save(by_admin)
    assert isinstance(err.value, IntegrityError)
    assert app.repository.get(link.id).survivor == "c-1001"


def test_starting_the_same_link_twice_is_caught():
    app: Application = Application()
    app.save(CustomerLink.start("cs-dup", strong=False))
    with pytest.raises(RecordConflictError):
        app.save(CustomerLink.start("cs-dup", strong=False))
