"""The case and identity stores keep their events' states compressed (adapters/eventstore.py,
``StateCompressor``), and read the plain JSON states stored before as they are."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from eventsourcing.persistence import StoredEvent

from contactstream.adapters.caseservice import CaseApp, CaseService, case_app
from contactstream.adapters.control import ControlStore
from contactstream.adapters.database import Database, eventsourcing_env
from contactstream.adapters.eventstore import StateCompressor

pytestmark = pytest.mark.integration

AT = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def _complaint(customer: str) -> dict[str, object]:
    return {"event_id": str(uuid.uuid4()), "type": "complaint.filed",
            "occurred_at": AT.isoformat(), "source": "test", "customer": {"id": customer},
            "channel": "web", "payload": {"category": "billing", "priority": "high",
                                          "description": "Charged twice"}}


def _states(db: Database) -> list[bytes]:
    return [bytes(r[0]) for r in db.all(
        "SELECT state FROM contactstream_cases_events ORDER BY notification_id")]


def test_a_case_is_stored_compressed_and_read_back_whole(database_url: str) -> None:
    db = Database(database_url)
    service = CaseService(case_app(database_url), ControlStore(db), lambda: AT)
    try:
        case_id = service.handle_interaction("c-1", _complaint("c-1"))
        assert case_id is not None
        service.command(case_id, "assign", {"agent_id": "agent-7"})
        states = _states(db)
        assert len(states) == 2
        assert all(s[:1] == b"\x01" for s in states)  # the format byte, not JSON
        plain = [StateCompressor().decompress(s) for s in states]
        assert plain[0].startswith(b'{"timestamp":') and b'"customer_id":"c-1"' in plain[0]
        assert sum(map(len, states)) < sum(map(len, plain)) / 2
        case = service.stored(case_id)
        assert (case.customer_id, case.agent_id, case.priority) == ("c-1", "agent-7", "high")
    finally:
        service.app.close()
        db.close()


def test_states_stored_before_compression_are_read_as_they_are(database_url: str) -> None:
    db = Database(database_url)
    # the store as the release before wrote it: plain JSON states
    env = {k: v for k, v in eventsourcing_env(database_url).items()
           if k != "COMPRESSOR_TOPIC"}
    old = CaseService(CaseApp(env=env), ControlStore(db), lambda: AT)
    new = None
    try:
        case_id = old.handle_interaction("c-2", _complaint("c-2"))
        assert case_id is not None
        assert _states(db)[0][:1] == b"{"
        old.app.close()
        new = CaseService(case_app(database_url), ControlStore(db), lambda: AT)
        new.command(case_id, "reply", {"agent_id": "agent-1"})  # on the old event
        assert [s[:1] for s in _states(db)] == [b"{", b"\x01"]
        case = new.stored(case_id)
        assert (case.customer_id, case.agent_id, case.version) == ("c-2", "agent-1", 2)
    finally:
        old.app.close()
        if new is not None:
            new.app.close()
        db.close()


def test_a_state_of_an_unknown_format_is_an_error_not_a_guess() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        StateCompressor().decompress(b"\x02abc")
    data = b'{"timestamp":{"_type_":"datetime_iso","_data_":"2026-12-05T08:33:05+00:00"}}'
    assert StateCompressor().decompress(StateCompressor().compress(data)) == data


def test_events_saved_together_are_numbered_in_their_order(database_url: str) -> None:
    app = case_app(database_url)
    try:
        events = [StoredEvent(uuid.uuid4(), 1, "t:Opened", StateCompressor().compress(b"{}"))
                  for _ in range(5)]
        ids = app.recorder.insert_events(events)
        assert ids is not None and list(ids) == sorted(ids) and len(set(ids)) == 5
        logged = app.recorder.select_notifications(ids[0], 10)  # type: ignore[attr-defined]
        assert [(n.id, n.originator_id) for n in logged] == [
            (i, e.originator_id) for i, e in zip(ids, events, strict=True)]
    finally:
        app.close()


def _close_the_recorders_connections(db: Database, app: CaseApp) -> None:
    """The server closes the case store's pooled connections (a restart's effect on
    them), and only those."""
    pids = set()
    for _ in range(4):  # the pool may hold more than one
        with app.recorder.datastore.get_connection() as conn:  # type: ignore[attr-defined]
            pids.add(conn.info.backend_pid)
    closed = db.all("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS p(pid)",
                    (sorted(pids),))
    assert closed and all(ok for (ok,) in closed)


def test_the_case_store_goes_on_after_the_server_closed_its_connections(
        database_url: str) -> None:
    """The library's pool does not ping a connection as it leaves the pool (a round trip
    each save and lookup): one the server closed fails once, is dropped, and the
    recorder's retry takes another. Each of the batch path's own recorder calls (the
    stored versions, the save) is here the first to meet the closed connections."""
    db = Database(database_url)
    app = case_app(database_url)
    service = CaseService(app, ControlStore(db), lambda: AT)
    try:
        first = service.handle_interaction("c-1", _complaint("c-1"))
        assert first is not None
        _close_the_recorders_connections(db, app)
        assert app.recorder.last_versions([uuid.UUID(first)]) == {  # type: ignore[attr-defined]
            uuid.UUID(first): 1}
        second = _complaint("c-2")
        with service.batch([("c-2", second)]):
            opened = service.handle_interaction("c-2", second)
            _close_the_recorders_connections(db, app)  # before the batch's save
        assert opened is not None
        assert service.stored(opened).customer_id == "c-2"
        assert service.stored(first).customer_id == "c-1"
        assert len(_states(db)) == 2
    finally:
        service.app.close()
        db.close()
