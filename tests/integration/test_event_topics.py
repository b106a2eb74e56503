"""The case and identity stores write their events' topics as short aliases from a fixed
table (adapters/eventtopics.py, ``AliasMapper``), and read the class paths stored before
as they are."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import Mapper
from eventsourcing.utils import get_topic, resolve_topic

from contactstream.adapters.caseservice import CaseApp, CaseService, case_app
from contactstream.adapters.control import ControlStore
from contactstream.adapters.database import Database, eventsourcing_env
from contactstream.adapters.eventtopics import ALIAS_OF, ALIASES, AliasMapper, one_to_one
from contactstream.domain.cases import Case
from contactstream.domain.identity import CustomerLink
from contactstream.streams.identity import LinkApp

pytestmark = pytest.mark.integration

AT = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
CASES = "contactstream.domain.cases:Case."
LINKS = "contactstream.domain.identity:CustomerLink."
# every alias ever written: rows hold them, so none may change meaning or go away
WRITTEN = {"c1": CASES + "Opened", "c2": CASES + "Assigned",
           "c3": CASES + "FirstResponseGiven", "c4": CASES + "ResponseGiven",
           "c5": CASES + "PausedForCustomer", "c6": CASES + "CustomerReplied",
           "c7": CASES + "Resolved", "c8": CASES + "Reopened",
           "l1": LINKS + "Started", "l2": LINKS + "Merged", "l3": LINKS + "Unmerged"}


class Later(Aggregate):
    """An aggregate whose events the alias table does not name."""

    @event("Noted")
    def __init__(self, note: str) -> None:
        self.note = note


def _complaint(customer: str) -> dict[str, object]:
    return {"event_id": str(uuid.uuid4()), "type": "complaint.filed",
            "occurred_at": AT.isoformat(), "source": "test", "customer": {"id": customer},
            "channel": "web", "payload": {"category": "billing", "priority": "high",
                                          "description": "Charged twice"}}


def _topics(db: Database, table: str) -> list[str]:
    return [r[0] for r in db.all(f"SELECT topic FROM {table} ORDER BY notification_id")]


def _mapper(aliases: bool) -> Mapper[Any]:
    """The stores' mapper (``aliases``) or the library's, with the stores' compressor."""
    keep = ("COMPRESSOR_TOPIC", "MAPPER_TOPIC") if aliases else ("COMPRESSOR_TOPIC",)
    env = {k: v for k, v in eventsourcing_env("postgresql:///x").items() if k in keep}
    return Application(env=env).mapper  # in memory: the mapper alone is what is looked at


def _events() -> list[Any]:
    case = Case.open(customer_id="c-1", channel="email", priority="normal",
                     queue="support", opened_by_event_id="e-1", opened_at=AT)
    case.assign("agent-1", AT, "e-2")
    case.reply("agent-1", AT, "e-3")
    case.reply("agent-1", AT, "e-4")
    case.wait_for_customer(AT, "e-5")
    case.customer_replied(AT, "e-6")
    case.resolve(AT, "fixed", "e-7")
    case.reopen(AT, "e-8")
    link = CustomerLink.start("cs-1", strong=False)
    link.merge("c-9", survivor_strong=True, reason="e-9", at=AT)
    link.unmerge(by="admin", reason="t-1", at=AT)
    return [*case.collect_events(), *link.collect_events()]


def test_the_alias_table_is_one_to_one_and_keeps_every_alias_written() -> None:
    aliases = [a for a, _ in ALIASES]
    paths = [p for _, p in ALIASES]
    assert len(set(aliases)) == len(aliases) and len(set(paths)) == len(paths)
    assert len(ALIAS_OF) == len(ALIASES)  # no two paths name one class either
    assert all(":" not in a for a in aliases)  # none can be taken for a class path
    assert dict(ALIASES).items() >= WRITTEN.items()
    for alias, path in ALIASES:  # each path is its class's own topic today
        assert get_topic(resolve_topic(path)) == path and ALIAS_OF[resolve_topic(path)] == alias
    with pytest.raises(ValueError, match="one-to-one"):
        one_to_one((("c1", CASES + "Opened"), ("c1", CASES + "Assigned")))
    with pytest.raises(ValueError, match="one-to-one"):
        one_to_one((("c1", CASES + "Opened"), ("c9", CASES + "Opened")))
    with pytest.raises(ValueError, match="colon"):
        one_to_one((("x:y", CASES + "Opened"),))


def test_events_are_stored_with_their_alias_and_read_back_the_same() -> None:
    mapper, library = _mapper(True), _mapper(False)
    assert isinstance(mapper, AliasMapper) and type(library) is Mapper
    events = _events()
    assert {type(e) for e in events} == set(ALIAS_OF)  # every aliased class is exercised
    for e in events:
        stored, theirs = mapper.to_stored_event(e), library.to_stored_event(e)
        assert stored.topic == ALIAS_OF[type(e)] and theirs.topic == get_topic(type(e))
        # the same row but for its topic: the library's steps, repeated
        assert (stored.originator_id, stored.originator_version) == (
            theirs.originator_id, theirs.originator_version)
        assert library.compressor is not None and mapper.compressor is not None
        assert mapper.compressor.decompress(stored.state) == \
            library.compressor.decompress(theirs.state)
        back = mapper.to_domain_event(stored)
        assert type(back) is type(e) and back.__dict__ == e.__dict__
        old = mapper.to_domain_event(theirs)  # a row stored before, with its class path
        assert type(old) is type(e) and old.__dict__ == e.__dict__


def test_a_class_without_an_alias_keeps_its_class_path() -> None:
    mapper = _mapper(True)
    later = Later(note="n")
    stored = mapper.to_stored_event(later.collect_events()[0])
    assert stored.topic == get_topic(Later.Noted) == f"{__name__}:Later.Noted"
    assert mapper.to_domain_event(stored).__dict__["note"] == "n"
    assert Case.Created not in ALIAS_OF  # the library's default: never stored here


def test_new_rows_carry_the_alias_and_old_rows_still_load(database_url: str) -> None:
    db = Database(database_url)
    # the store as the release before wrote it: class paths
    env = {k: v for k, v in eventsourcing_env(database_url).items() if k != "MAPPER_TOPIC"}
    old = CaseService(CaseApp(env=env), ControlStore(db), lambda: AT)
    new = None
    try:
        case_id = old.handle_interaction("c-2", _complaint("c-2"))
        assert case_id is not None
        old.app.close()
        new = CaseService(case_app(database_url), ControlStore(db), lambda: AT)
        new.command(case_id, "assign", {"agent_id": "agent-1"})  # on the old event
        new.command(case_id, "reply", {"agent_id": "agent-1"})
        assert _topics(db, "contactstream_cases_events") == [CASES + "Opened", "c2", "c3"]
        case = new.stored(case_id)
        assert (case.customer_id, case.agent_id, case.version) == ("c-2", "agent-1", 3)
        assert case.first_response_at is not None
        # the notification log, as the case relay reads it (adapters/outbox_sources.py)
        logged = new.app.recorder.select_notifications(1, 10)  # type: ignore[attr-defined]
        kinds = [type(new.app.mapper.to_domain_event(n)).__qualname__ for n in logged]
        assert kinds == ["Case.Opened", "Case.Assigned", "Case.FirstResponseGiven"]
    finally:
        old.app.close()
        if new is not None:
            new.app.close()
        db.close()


def test_the_identity_store_too(database_url: str) -> None:
    db = Database(database_url)
    env = {k: v for k, v in eventsourcing_env(database_url).items() if k != "MAPPER_TOPIC"}
    old, new = LinkApp(env=env), LinkApp(env=eventsourcing_env(database_url))
    try:
        link = CustomerLink.start("cs-3", strong=False)
        old.save(link)
        again: CustomerLink = new.repository.get(link.id)
        again.merge("c-4", survivor_strong=True, reason="e-4", at=AT)
        new.save(again)
        assert _topics(db, "contactstream_identity_events") == [LINKS + "Started", "l2"]
        loaded: CustomerLink = new.repository.get(link.id)
        assert (loaded.member, loaded.survivor, loaded.version) == ("cs-3", "c-4", 2)
    finally:
        old.close()
        new.close()
        db.close()
