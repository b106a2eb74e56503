"""The eventsourcing library's PostgreSQL application recorder, without pipeline mode.

Its stock ``insert_events`` sends the whole batch in psycopg's pipeline mode; with a
large batch (measured here: 1,000 aggregates of ~1 KB saved at once, psycopg 3.3.9, unix
socket) client and server wait on each other for ever (the server shows the session
"active" in ClientRead; psycopg's issue #685 describes the same). The case stage saves
every case a batch of up to 5,000 interactions changed in one call, so this recorder
does the same statements — table lock, notify, one INSERT … RETURNING — plainly, in one
transaction. Selected through ``APPLICATION_RECORDER_TOPIC`` (adapters/database.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import retry
from psycopg import InterfaceError, OperationalError

TOPIC = "contactstream.adapters.eventstore:UnpipelinedApplicationRecorder"


class UnpipelinedApplicationRecorder(PostgresApplicationRecorder):
    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(self, stored_events: Sequence[StoredEvent],
                      **kwargs: Any) -> Sequence[int] | None:
        with self.datastore.get_connection() as conn, conn.transaction(), \
                conn.cursor() as curs:
            self._insert_events(curs, stored_events, **kwargs)
            if not stored_events:
                return None
            self._insert_stored_events(curs, stored_events, **kwargs)
            return self._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
