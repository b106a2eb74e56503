"""Rounds of scores, and the periodic refresh of the figures, in processes of their own
beside the worker (issue 12).

A round (``FigureWriter.score_queued``: claim queued ids, read their facts, rescore, take
them off the queue) is database work and pure Python over what it reads; it needs none of
the worker's memory. On the worker's scores thread it still took the worker's GIL, about
a sixth of the worker's Python time an event, measured, and every thread of the batch
path waited for it in turns. Here the scores thread only hands the round to a child
process and waits for its answer without the GIL; the child has a connection of its own.

The periodic refresh (``FigureWriter.refresh``: stale scores, new breaches, every
buyer's RFM) is the same kind of work, and grows with the base: it runs there too. Two
children at most, so that a long refresh does not hold up the rounds.

A child is spawned with the worker's services, dies with the worker
(PR_SET_PDEATHSIG), and one found dead is spawned again for the round: a round that died
with it left claims that expire (``figurestore.CLAIM_EXPIRES``), so nothing queued is
lost. Rounds run on the system clock, as the worker does; a worker on another
clock (tests) scores on its own thread.
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


class ScoreProcess:
    """``round()`` runs one round in a child and returns how many ids it scored;
    ``refresh(now)`` runs the periodic refresh in one. Called from the projector's scores
    thread (one round at a time) and a refresh's thread (one refresh at a time)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False

    def start(self) -> None:
        """Spawn the child now, in the background (not at the first round, which would
        wait for it)."""
        self._started()

    def _started(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._closed:
                raise RuntimeError("the scores' process was closed")
            if self._pool is None:
                # a round and a refresh at once: a long refresh (the RFM of a large
                # base) does not hold up the rounds (the database's locks order what
                # must be ordered); a second child is spawned when a call finds the
                # first busy or still starting
                self._pool = ProcessPoolExecutor(
                    max_workers=2, mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start, initargs=(self.settings, os.getpid()))
                self._pool.submit(int)  # spawns it
            return self._pool

    def round(self) -> int:
        """One round in the child; a child found dead is spawned again and the round run
        there (what a round dying with it had claimed is claimed again once expired); a
        second death raises, as a failed round does."""
        return int(self._in_child(_round))

    def refresh(self, now: int | None = None) -> dict[str, int]:
        """The periodic refresh of the figures (``FigureWriter.refresh``: a round, the
        stale scores, new breaches, every buyer's RFM) in the child, as of ``now``. Its
        Python grows with the base (the RFM reads and ranks every buyer): in the worker's
        own process it took the GIL from the batches. Redone in a new child if the child
        dies, as a round is: every step of it is idempotent."""
        return dict(self._in_child(_refresh, now))

    def _in_child(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return self._call(self._started(), fn, *args)
        except BrokenProcessPool:
            log.warning("scores.process_died", action="spawned again for the call")
        return self._call(self._started(), fn, *args)

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
        """The children's process ids (the bench counts their CPU as the worker's)."""
        procs = getattr(self._pool, "_processes", None) or {}
        try:
            return [p for p in list(procs) if p is not None]
        except RuntimeError:  # the pool's own thread changed it meanwhile
            return []

    def close(self) -> None:
        with self._lock:
            pool, self._pool, self._closed = self._pool, None, True
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


_writer: FigureWriter | None = None
_db: Database | None = None


def _start(settings: Settings, worker: int) -> None:
    """In the child: die with the worker, and the writer and connection rounds use."""
    global _writer, _db
    from .broker import die_with_parent
    from .logging import configure

    # the death signal follows the thread that spawned the child: the worker's main
    # thread, its scores thread or the thread of a refresh (the projector's database
    # thread, a thread of the event loop's default pool), all as long-lived as the
    # worker. A worker that died before the signal was asked for is looked for once
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


def _round() -> int:
    assert _writer is not None and _db is not None
    return _writer.score_queued(_db)


def _refresh(now: int | None) -> dict[str, int]:
    assert _writer is not None and _db is not None
    return _writer.refresh(_db, now)
