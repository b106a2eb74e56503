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

import zlib
from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import retry
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

TOPIC = "contactstream.adapters.eventstore:UnpipelinedApplicationRecorder"


class UnpipelinedApplicationRecorder(PostgresApplicationRecorder):
    # the library's exceptions: its connection block raises psycopg's as these (a retry
    # on psycopg's own classes never fired), as its own recorders retry them
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

    def _insert_stored_events(self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent],
                              **kwargs: Any) -> None:
        """As the library's (the table's lock, the notify, one INSERT … RETURNING in the
        events' order), with the rows sent as four binary arrays: the library's array of
        a composite type is dumped as text, value by value in Python (~4% of the worker's
        time in a bench). Two round trips instead of four."""
        # the table's lock and the notify in one round trip (the library sends three):
        # statements without parameters go as one simple query
        curs.execute(SQL("; ").join([*self.lock_table_statements, SQL("NOTIFY {0}").format(
            Identifier(self.channel_name))]))
        curs.execute(SQL(
            "INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state)"
            " SELECT i, v, t, s FROM unnest(%b::uuid[], %b::int8[], %b::text[], %b::bytea[])"
            " WITH ORDINALITY AS u(i, v, t, s, n) ORDER BY n"  # numbered in the given order
            " RETURNING notification_id").format(
                schema=Identifier(self.datastore.schema),
                table=Identifier(self.events_table_name)),
            [[e.originator_id for e in stored_events],
             [e.originator_version for e in stored_events],
             [e.topic for e in stored_events], [e.state for e in stored_events]])

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def last_versions(self, originator_ids: Iterable[UUID]) -> dict[UUID, int]:
        """The stored version of each of these aggregates that has events, in one query
        (no replay of their events): which a batch's cases or merge histories exist, and
        which version an SLA timer's case is at, instead of loading each."""
        ids = sorted(set(originator_ids))
        if not ids:
            return {}
        statement = SQL("SELECT u.id, (SELECT max(originator_version) FROM {schema}.{table}"
                        " WHERE originator_id = u.id) AS v FROM unnest(%s::uuid[]) AS u(id)"
                        ).format(schema=Identifier(self.datastore.schema),
                                 table=Identifier(self.events_table_name))
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement, (ids,))
            return {row["id"]: int(row["v"]) for row in curs.fetchall()
                    if row["v"] is not None}


# -- the stored events' states, compressed ---------------------------------------------

# What the states of the case and identity events have in common (the library's JSON,
# its type tags, our field names and usual values), most frequent last: zlib finds a
# state's repeats in it. FIXED FOR EVER: states written with it are read with it. A
# better one is a new format byte (and a new dictionary), never a change of this one.
DICTIONARY_V1 = b"".join((
    b'{"timestamp":{"_type_":"datetime_iso","_data_":"2026-01-01T00:00:00.000000+00:00"},'
    b'"originator_topic":"contactstream.domain.identity:CustomerLink","member":"cs-",'
    b'"strong":false}',
    b'{"timestamp":{"_type_":"datetime_iso","_data_":"2026-01-01T00:00:00.000000+00:00"},'
    b'"survivor":"","reason":"","by":"system","at":{"_type_":"datetime_iso","_data_":'
    b'"2026-01-01T00:00:00.000000+00:00"}}',
    b'{"timestamp":{"_type_":"datetime_iso","_data_":"2026-01-01T00:00:00.000000+00:00"},'
    b'"survivor":"c-","survivor_strong":true,"previous":null,"reason":"","by":"system",'
    b'"at":{"_type_":"datetime_iso","_data_":"2026-01-01T00:00:00.000000+00:00"}}',
    b'{"timestamp":{"_type_":"datetime_iso","_data_":"2026-01-01T00:00:00.000000+00:00"},'
    b'"at":{"_type_":"datetime_iso","_data_":"2026-01-01T00:00:00+00:00"},"resolution":'
    b'"enc1:","event_id":null}',
    b'{"timestamp":{"_type_":"datetime_iso","_data_":"2026-01-01T00:00:00.000000+00:00"},'
    b'"originator_topic":"contactstream.domain.cases:Case","source_key":"","customer_id":'
    b'"c-","channel":"phone","priority":"urgent","queue":"billing","opened_by_event_id":"",'
    b'"opened_at":{"_type_":"datetime_iso","_data_":"2026-01-01T00:00:00+00:00"},'
    b'"policy":{"name":"","channel":["chat","web"],"priority":["low","high"],'
    b'"first_response_s":3600,"resolution_s":86400,"warn_at":0.8,"calendar":null}}',
    b'{"timestamp":{"_type_":"datetime_iso","_data_":"2026-01-01T00:00:00.000000+00:00"},'
    b'"at":{"_type_":"datetime_iso","_data_":"2026-01-01T00:00:00+00:00"},"event_id":'
    b'"00000000-0000-4000-8000-000000000000"}',
    b'{"timestamp":{"_type_":"datetime_iso","_data_":"2026-01-01T00:00:00.000000+00:00"},'
    b'"agent_id":"agent-1","at":{"_type_":"datetime_iso","_data_":'
    b'"2026-01-01T00:00:00+00:00"},"event_id":"00000000-0000-4000-8000-000000000000"}',
    b'{"timestamp":{"_type_":"datetime_iso","_data_":"2026-01-01T00:00:00.000000+00:00"},'
    b'"originator_topic":"contactstream.domain.cases:Case","source_key":"","customer_id":'
    b'"cs-","channel":"email","priority":"normal","queue":"support","opened_by_event_id":"'
    b'","opened_at":{"_type_":"datetime_iso","_data_":"2026-01-01T00:00:00+00:00"},'
    b'"policy":null}',
))
V1 = b"\x01"
WBITS = -12  # raw deflate, a 4 KB window: the dictionary and a state fit
LEGACY = b"{"  # a state stored before compression: the library's JSON as it was


class StateCompressor:
    """Compresses the stored events' states (``COMPRESSOR_TOPIC``, adapters/database.py):
    a format byte, then deflate with ``DICTIONARY_V1``; states stored before, plain JSON,
    are read as they are. A case event's state takes ~100 bytes instead of ~300 (plain
    zlib, without the dictionary: ~190), for ~8 µs of CPU to write and ~2 µs to read.
    (zlib's defaults, a 32 KB window and 256 KB of state, cost ~50 µs a call.)"""

    # the dictionary loaded once: each state copies the loaded compressor (the same bytes
    # out; loading the dictionary again was ~40% of a state's compression)
    _LOADED = zlib.compressobj(1, zlib.DEFLATED, WBITS, 2, zdict=DICTIONARY_V1)

    def compress(self, data: bytes) -> bytes:
        c = self._LOADED.copy()
        return V1 + c.compress(data) + c.flush()

    def decompress(self, data: bytes) -> bytes:
        head = data[:1]
        if head == V1:
            d = zlib.decompressobj(WBITS, zdict=DICTIONARY_V1)
            state = d.decompress(data[1:]) + d.flush()
            if not d.eof:
                raise ValueError("a stored state cut short (its deflate stream ends early)")
            return state
        if head == LEGACY:
            return data
        raise ValueError(f"a stored state of an unknown format (first byte {head!r})")
