"""Rounds of scores, and the periodic refresh of the figures, in processes of their own
beside the worker (issue 12).

A round (``FigureWriter.score_queued``: claim queued ids, read their facts, rescore, take
them off the queue) is database work and pure Python over what it reads; it needs none of
the worker's memory. On the worker's scores thread it still took the worker's GIL, about
a sixth of the worker's Python time an event, measured, and every thread of the batch
path waited for it in turns. Here the scores thread only hands the round to a child
process and waits for its answer without the GIL; the child has a connection of its own.

The periodic refresh (``FigureWriter.refresh``: stale scores, new breaches, every
buyer's RFM) is the same kind of work, and grows with the base: it runs in a second child
of the same kind, so that a long refresh does not hold up the rounds. Each child holds one
database connection.

The children are spawned with the worker's services, die with the worker
(PR_SET_PDEATHSIG), and one found dead is spawned again for its call: a round that died
with it left claims that expire (``figurestore.CLAIM_EXPIRES``), so nothing queued is
lost; a refresh is redone whole. Both run on the system clock, as the worker does; a
worker on another clock (tests) scores and refreshes on its own threads.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from .config import Settings
from .database import Database
from .figurestore import FigureWriter
from .logging import get_logger

log = get_logger(__name__)

NICENESS = 10  # the child's scheduling priority below the worker's


class _Child:
    """One child process of the worker and the calls it runs, one at a time. A child found
    dead is spawned again and the call run there once more; a second death raises."""

    def __init__(self, settings: Settings, name: str) -> None:
        self.settings = settings
        self.name = name
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False

    def started(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"the {self.name} process was closed")
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start, initargs=(self.settings, os.getpid()))
                self._pool.submit(int)  # spawns it
            return self._pool

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return self._call(self.started(), fn, *args)
        except BrokenProcessPool:
            log.warning("scores.process_died", process=self.name, action="spawned again")
        return self._call(self.started(), fn, *args)

    def _call(self, pool: ProcessPoolExecutor, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return pool.submit(fn, *args).result()
        except BrokenProcessPool:
            with self._lock:  # the next call spawns a new one
                if self._pool is pool:
                    self._pool = None
            pool.shutdown(wait=False)
            raise

    def pids(self) -> list[int]:
        return [p for p in _processes(self._pool) if p is not None]

    def close(self, wait: bool) -> None:
        """Stop the child: after its call in flight (``wait``), or at once (its call's
        transaction is rolled back with its connection)."""
        with self._lock:
            pool, self._pool, self._closed = self._pool, None, True
        if pool is None:
            return
        if not wait:
            for process in _processes(pool).values():
                process.terminate()
        pool.shutdown(wait=wait, cancel_futures=True)


def _processes(pool: ProcessPoolExecutor | None) -> dict[int, Any]:
    """A copy of the pool's processes by id (the executor keeps them in a private
    attribute, which its own thread changes while a process starts or dies)."""
    try:
        return dict(getattr(pool, "_processes", None) or {})
    except RuntimeError:  # changed meanwhile
        return {}


class ScoreProcess:
    """``round()`` runs one round in the rounds' child and returns how many ids it scored;
    ``refresh(now)`` runs the periodic refresh in a child of its own, so a long refresh
    (the RFM of a large base) does not hold up the rounds, and a child that dies takes
    only its own call with it. Called from the projector's scores thread (one round at a
    time) and a refresh's thread (one refresh at a time)."""

    def __init__(self, settings: Settings) -> None:
        self._rounds = _Child(settings, "scores")
        self._refresh = _Child(settings, "refresh")

    def start(self) -> None:
        """Spawn both children now, in the background (not at the first call, which would
        wait for it, nor inside a measured run)."""
        self._rounds.started()
        self._refresh.started()

    def round(self) -> int:
        """One round in the child (what a round dying with it had claimed is claimed again
        once expired)."""
        return int(self._rounds.call(_round))

    def refresh(self, now: int | None = None) -> dict[str, int]:
        """The periodic refresh of the figures (``FigureWriter.refresh``: a round, the
        stale scores, new breaches, every buyer's RFM) in its child, as of ``now``. Its
        Python grows with the base (the RFM reads and ranks every buyer): in the worker's
        own process it took the GIL from the batches. Redone in a new child if the child
        dies: every step of it is idempotent."""
        return dict(self._refresh.call(_refresh, now))

    def pids(self) -> list[int]:
        """The children's process ids (the bench counts their CPU as the worker's)."""
        return self._rounds.pids() + self._refresh.pids()

    def close(self) -> None:
        """The rounds' child after its round in flight (the worker's last round ends in
        order); the refresh's at once (a refresh can take long, and is redone)."""
        self._refresh.close(wait=False)
        self._rounds.close(wait=True)


_writer: FigureWriter | None = None
_db: Database | None = None


def _start(settings: Settings, worker: int) -> None:
    """In a child: die with the worker, and the writer and connection its calls use."""
    global _writer, _db
    from .broker import die_with_parent
    from .logging import configure

    # the death signal follows the thread that spawned the child: the worker's main
    # thread (at start), or after a death its scores thread or a refresh's thread (the
    # projector's database thread, a thread of the event loop's default pool), all as
    # long-lived as the worker. A worker that died before the signal was asked for is
    # looked for once
    die_with_parent()
    if os.getppid() != worker:
        os._exit(0)
    # a Ctrl-C reaches the whole process group: the worker stops itself (and its last
    # round, here) in order, so the child does not die of it mid-round
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # background work: when the cores are busy, the worker's batches go first
    os.nice(NICENESS)
    configure(settings.log_format, settings.log_level)
    from .bootstrap import database, figure_writer  # the composition root's, as the worker's
    _db = database(settings, max_size=1)
    _writer = figure_writer(settings)


def _writer_and_db() -> tuple[FigureWriter, Database]:
    if _writer is None or _db is None:
        raise RuntimeError("not in a scores child: _start has not run")
    return _writer, _db


def _round() -> int:
    writer, db = _writer_and_db()
    return writer.score_queued(db)


def _refresh(now: int | None) -> dict[str, int]:
    writer, db = _writer_and_db()
    return writer.refresh(db, now)
