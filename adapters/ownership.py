"""Who holds what among many workers on one database (issue 9): leases in PostgreSQL.

Every worker registers in ``workers`` and renews its row and its leases from a thread of
its own (a busy event loop cannot make it miss a beat). Lease ``partition:N`` is
partition N of the interactions topic and of the cases topic (both are keyed so that a
customer's records share N, docs/ARCHITECTURE.md "Many workers"); lease ``singletons``
is the SLA timers, the outbox relays, the webhook deliveries, the admins' requests, the
figures refresh and the retention runs, which must run once; lease ``replay`` is a
replay's. Partitions are shared out round-robin over the live workers sorted by id, so
every worker computes the same split; a worker takes a partition of its share once it is
free or its holder's lease expired, and gives back those past its share after its commit
in flight. The database's clock is the only clock: hosts need not agree on the time.

Fencing: a lease's ``generation`` grows with each new holder. The projector's batch
transaction reads its partitions' rows ``FOR SHARE`` and commits only if it still holds
them at the generation it started with (``check_fence``); a new holder's takeover waits
for that transaction, and a worker that lost a partition can never commit rows or
offsets for it after its new owner started.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg

from ..streams.ports import Redo, partition_lease
from .logging import get_logger

log = get_logger(__name__)

SINGLETONS = "singletons"
REPLAY = "replay"
# its generation is the embedded broker's epoch: `up` raises it before it starts the
# broker again (an empty one, until the restore): processes that joined `up` by its data
# dir stop or refuse then (BrokerMoved), as `up`'s own children are killed
BROKER = "broker"
# a lease lives this long past its last renewal; renewed every BEAT_S. A kill -9 frees a
# worker's partitions after TTL_S at most, and its successor takes them at its next beat
TTL_S = 1.5
BEAT_S = 0.3
BETWEEN_BEATS_S = BEAT_S  # for those who wait for every worker's next beat


class Fenced(Redo):
    """This worker no longer holds a lease it wrote under: the transaction was refused."""


def check_fence(conn: psycopg.Connection[Any], holder: str, fence: Mapping[str, int]) -> None:
    """In a transaction: hold the leases' rows (a takeover waits for this commit) and
    refuse unless ``holder`` still holds each at its generation."""
    if not fence:
        return
    rows = dict(conn.execute(
        "SELECT name, generation FROM leases WHERE name = ANY(%s) AND holder = %s"
        " ORDER BY name FOR SHARE", (sorted(fence), holder)).fetchall())
    lost = sorted(n for n, g in fence.items() if rows.get(n) != g)
    if lost:
        raise Fenced(f"{holder} no longer holds {', '.join(lost)}")


def share(partitions: int, workers: list[str], me: str) -> set[int]:
    """The partitions ``me`` should hold: round-robin over the live workers sorted by id."""
    if me not in workers:
        return set()
    ordered = sorted(workers)
    i, n = ordered.index(me), len(ordered)
    return {p for p in range(partitions) if p % n == i}


@dataclass
class Holdings:
    """What this worker holds now: lease name -> generation."""

    leases: dict[str, int] = field(default_factory=dict)
    workers: list[str] = field(default_factory=list)

    def partitions(self) -> dict[int, int]:
        return {int(n.split(":", 1)[1]): g for n, g in self.leases.items()
                if n.startswith("partition:")}

    @property
    def singletons(self) -> int | None:
        return self.leases.get(SINGLETONS)


class Leases:
    """One worker's leases, renewed by a thread. ``on_change(holdings)`` is called (from
    that thread) whenever what it holds, or the set of live workers, changed."""

    def __init__(self, url: str, partitions: int, *, worker_id: str | None = None,
                 singletons: bool = True, ttl_s: float = TTL_S, beat_s: float = BEAT_S,
                 on_change: Callable[[Holdings], None] | None = None,
                 only: str | None = None,
                 on_broker_restart: Callable[[], None] | None = None) -> None:
        self.url = url
        self.partitions = partitions
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:" \
                                      f"{uuid.uuid4().hex[:6]}"
        self.want_singletons = singletons
        self.ttl_s = ttl_s
        self.beat_s = beat_s
        self.on_change = on_change
        # a replay's: this one lease and nothing else, not counted among the workers
        self.only = only
        self.on_broker_restart = on_broker_restart
        self.broker_epoch: int | None = None
        self.holdings = Holdings()
        self._release: set[str] = set()  # given back by the projector after its commit
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._renewed = 0.0  # monotonic time of the last successful beat

    # --- the thread ------------------------------------------------------------------

    def start(self) -> Leases:
        self._connect()
        self.beat()
        self._thread = threading.Thread(target=self._run, name="leases", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Give everything back at once (a clean stop: no one waits for the TTL)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        try:
            conn = self._conn or self._connect()
            conn.execute("UPDATE leases SET holder=NULL, expires_at=NULL WHERE holder=%s",
                         (self.worker_id,))
            conn.execute("DELETE FROM workers WHERE worker_id=%s", (self.worker_id,))
        except psycopg.Error as exc:
            log.warning("leases.release_failed", error=type(exc).__name__)
        finally:
            if self._conn is not None:
                self._conn.close()
        self._set(Holdings())

    def _connect(self) -> psycopg.Connection[Any]:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
        # a beat that cannot finish in time must fail, not hang: the leases are then
        # given up locally (``_fresh``) while the thread tries again
        ms = int(self.ttl_s * 1000)
        self._conn = psycopg.connect(
            self.url, autocommit=True, connect_timeout=5,
            options=f"-c statement_timeout={ms} -c lock_timeout={ms}")
        return self._conn

    def _run(self) -> None:
        while not self._stop.wait(self.beat_s):
            try:
                self.beat()
            except psycopg.Error as exc:
                log.warning("leases.beat_failed", error=type(exc).__name__)
                if not self._fresh():
                    self._set(Holdings())
                try:
                    self._connect()
                except psycopg.Error:
                    pass

    def beat(self) -> None:
        """Renew, look at who is alive, give back and take what the share says."""
        conn = self._conn or self._connect()
        ttl = f"{self.ttl_s} seconds"
        me = self.worker_id
        started = time.monotonic()  # the leases' expiry counts from (about) here
        with conn.transaction():
            if self.only is None:
                conn.execute(
                    "INSERT INTO workers (worker_id, host, pid, expires_at)"
                    " VALUES (%s,%s,%s, now() + %s::interval) ON CONFLICT (worker_id)"
                    " DO UPDATE SET expires_at = excluded.expires_at",
                    (me, socket.gethostname(), os.getpid(), ttl))
            workers = [r[0] for r in conn.execute(
                "SELECT worker_id FROM workers WHERE expires_at > now() ORDER BY worker_id")]
            with self._lock:
                release, self._release = self._release, set()
            if release:
                conn.execute("UPDATE leases SET holder=NULL, expires_at=NULL"
                             " WHERE holder=%s AND name = ANY(%s)", (me, sorted(release)))
            held = dict(conn.execute(
                "UPDATE leases SET expires_at = now() + %s::interval WHERE holder=%s"
                " RETURNING name, generation", (ttl, me)).fetchall())
            wanted = [partition_lease(p) for p in sorted(share(self.partitions, workers, me))]
            if self.want_singletons:
                wanted.append(SINGLETONS)
            if self.only is not None:
                wanted = [self.only]
            elif wanted and _replaying(conn):  # no partition is taken while one runs
                wanted = [n for n in wanted if not n.startswith("partition:")]
            missing = [n for n in wanted if n not in held]
            if missing:
                conn.execute("INSERT INTO leases (name) SELECT unnest(%s::text[])"
                             " ON CONFLICT DO NOTHING", (missing,))
                held.update(conn.execute(
                    "UPDATE leases SET holder=%s, generation=generation+1,"
                    " expires_at = now() + %s::interval WHERE name = ANY(%s)"
                    " AND (holder IS NULL OR expires_at <= now()) RETURNING name, generation",
                    (me, ttl, missing)).fetchall())
            # dead workers' rows, long gone: only the table's size is at stake
            conn.execute("DELETE FROM workers WHERE expires_at < now() - interval '1 hour'")
            epoch = broker_epoch(conn)
        if self.broker_epoch is None:
            self.broker_epoch = epoch
        elif epoch != self.broker_epoch and self.on_broker_restart is not None:
            self.on_broker_restart()
        self._renewed = started
        self._set(Holdings({n: int(g) for n, g in held.items()}, workers))

    def _fresh(self) -> bool:
        """Whether the last renewal is recent enough to act on what it holds: past 3/4 of
        the TTL another worker may take it any moment, so this one stops first, whether
        its beats fail or hang."""
        return time.monotonic() - self._renewed < self.ttl_s * 0.75

    def _set(self, holdings: Holdings) -> None:
        with self._lock:
            if self._release:  # given back while this beat ran: gone for the projector
                holdings = Holdings({n: g for n, g in holdings.leases.items()
                                     if n not in self._release}, holdings.workers)
            changed = holdings != self.holdings
            moved = holdings.leases.keys() != self.holdings.leases.keys()
            self.holdings = holdings
        if moved:  # what it holds (not only who else is alive)
            log.info("leases.changed", worker=self.worker_id, workers=len(holdings.workers),
                     partitions=sorted(holdings.partitions()),
                     singletons=holdings.singletons is not None)
        if changed and self.on_change is not None:
            self.on_change(holdings)

    # --- for the projector -------------------------------------------------------------

    def held_partitions(self) -> dict[int, int]:
        return self.holdings.partitions() if self._fresh() else {}

    def holds_singletons(self) -> bool:
        return self.holdings.singletons is not None and self._fresh()

    def surplus(self) -> set[int]:
        """Partitions held past this worker's share (another live worker wants them)."""
        h = self.holdings
        return set(h.partitions()) - share(self.partitions, h.workers, self.worker_id)

    def give_back(self, partitions: Iterable[int]) -> None:
        """After the commit in flight: released at the next beat."""
        with self._lock:
            self._release |= {partition_lease(p) for p in partitions}
            self.holdings = Holdings({n: g for n, g in self.holdings.leases.items()
                                      if n not in self._release}, self.holdings.workers)


def broker_epoch(conn: psycopg.Connection[Any], lock: bool = False) -> int:
    """The embedded broker's epoch (0 until `up` first restarts it)."""
    row = conn.execute("SELECT generation FROM leases WHERE name=%s"
                       + (" FOR SHARE" if lock else ""), (BROKER,)).fetchone()
    return int(row[0]) if row else 0


class BrokerMoved(Redo):
    """The embedded broker was restarted while this was produced: not journalled."""


def raise_broker_epoch(url: str) -> None:
    """`up`, before it starts its broker again: waits for the journal commits that
    read the old epoch (they hold its row), then moves it."""
    with psycopg.connect(url, autocommit=True, connect_timeout=5,
                         options="-c lock_timeout=30000") as conn:
        conn.execute("INSERT INTO leases (name) VALUES (%s) ON CONFLICT DO NOTHING", (BROKER,))
        conn.execute("UPDATE leases SET generation = generation + 1 WHERE name=%s", (BROKER,))


def _replaying(conn: psycopg.Connection[Any]) -> bool:
    """Whether a replay holds its lease; the row is read FOR SHARE, so a replay's take
    waits for this beat's partitions and then sees them (``replay_lease``)."""
    conn.execute("INSERT INTO leases (name) VALUES (%s) ON CONFLICT DO NOTHING", (REPLAY,))
    row = conn.execute("SELECT holder IS NOT NULL AND expires_at > now() FROM leases"
                       " WHERE name=%s FOR SHARE", (REPLAY,)).fetchone()
    return bool(row and row[0])


class ReplayRefused(RuntimeError):
    """A replay cannot start: workers hold partitions, or another replay runs."""


def replay_lease(url: str) -> Leases:
    """The global lease of a replay, renewed while it runs; refused while any worker holds
    a partition (workers take none while it is held)."""
    leases = Leases(url, 0, singletons=False, only=REPLAY).start()
    if leases.holdings.leases.get(REPLAY) is None:
        leases.stop()
        raise ReplayRefused("another replay is running on this database")
    holders = partitions_held(url)
    if holders:
        leases.stop()
        raise ReplayRefused(f"{len(holders)} worker(s) hold partitions of this database"
                            f" ({', '.join(sorted(holders)[:3])}): stop them first")
    return leases


def partitions_held(url: str) -> list[str]:
    """Live holders of any partition lease (what a replay must not run beside)."""
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        return [r[0] for r in conn.execute(
            "SELECT DISTINCT holder FROM leases WHERE name LIKE 'partition:%%'"
            " AND holder IS NOT NULL AND expires_at > now()")]
