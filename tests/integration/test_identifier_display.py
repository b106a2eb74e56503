"""What the customer view shows for an identifier is its earliest event's form, across
batches and whatever order they arrive in (migration 5), so a replay stores the same."""

from __future__ import annotations

import pytest

from contactstream.adapters.database import Database
from contactstream.adapters.readstore import ReadStoreWriter
from contactstream.projections import timeline
from contactstream.streams.ports import BatchChanges
from tests.helpers import envelope

pytestmark = pytest.mark.integration

EARLY = envelope(1, occurred_at="2026-11-20T09:00:00+00:00",
                 customer={"id": "c-1", "email": " Anna@Example.com "})
LATE = envelope(2, occurred_at="2026-11-21T09:00:00+00:00",
                customer={"id": "c-1", "email": "anna@example.com"})


def _commit(writer: ReadStoreWriter, env: dict, known: dict) -> None:
    state = timeline.apply(timeline.TimelineState(known=dict(known)), env)
    writer.commit(BatchChanges(timeline=state))
    known.update(state.new_identifiers)


@pytest.mark.parametrize("order", [(EARLY, LATE), (LATE, EARLY)], ids=["in order", "late first"])
def test_the_earliest_form_is_kept_across_batches(db: Database, order: tuple) -> None:
    writer = ReadStoreWriter(db)
    known: dict = {}
    for env in order:
        _commit(writer, env, known)
    row = db.one("SELECT display, display_event FROM identifiers"
                 " WHERE kind='email' AND value='anna@example.com'")
    assert row == (" Anna@Example.com ", EARLY["event_id"])
