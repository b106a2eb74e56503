"""SQLite connections with the settings every contactstream store uses."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path


def connect(path: Path, *, durable: bool = False, readonly: bool = False) -> sqlite3.Connection:
    """WAL mode; ``durable`` also fsyncs each commit (used where a commit is an
    acknowledgement to somebody outside)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False,
                               isolation_level=None)
    else:
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA busy_timeout=10000")
    conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
    return conn


class ThreadLocalStore:
    """A SQLite file shared by threads: its schema created once, one connection per
    thread (sqlite3 connections must not be used by two threads at once)."""

    def __init__(self, path: Path, *schemas: str) -> None:
        self.path = path
        init = connect(path)
        for schema in schemas:
            init.executescript(schema)
        init.close()
        self._local = threading.local()

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.path)
        return conn
