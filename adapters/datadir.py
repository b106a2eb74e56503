"""Who owns a data dir: an exclusive lock (flock) on ``DATA_DIR/lock``, held for the life
of the process that runs the embedded broker, database and journal there (``up``) or
that would clash with it (``replay``, ``backup``/``restore`` of the embedded database,
``import-sqlite``). Workers take no lock: any number share the work by leases in the
database (adapters/ownership.py). The kernel releases a lock when its holder dies, even by
SIGKILL."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

OWNER = "lock"


class DataDirBusy(RuntimeError):
    """Another process holds the data dir."""


@contextmanager
def exclusive(data_dir: Path, command: str, name: str = OWNER) -> Iterator[None]:
    """Hold ``DATA_DIR/name`` for the block; DataDirBusy names the holder if it is taken."""
    data_dir.mkdir(parents=True, exist_ok=True)
    private(data_dir)
    fd = os.open(data_dir / name, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
        os.close(fd)
        raise DataDirBusy(
            f"{data_dir} is in use by {holder or 'another contactstream process'}: stop it"
            " first, or give this command another data dir") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"`contactstream {command}` (pid {os.getpid()})".encode(), 0)
        yield
    finally:
        os.ftruncate(fd, 0)
        os.close(fd)  # closing the last descriptor releases the lock


def private(data_dir: Path) -> None:
    """The data dir readable by its owner only (0700). The embedded PostgreSQL, run as
    its own system user when contactstream runs as root, is let through by its group
    (adapters/database.py EmbeddedPostgres makes it 0710 then)."""
    st = data_dir.stat()
    if st.st_uid != os.geteuid():
        return
    if st.st_mode & 0o777 not in (0o700, 0o710):
        data_dir.chmod(0o700)
    for path in data_dir.iterdir():  # files a release before this one left readable
        if path.is_file() and not path.is_symlink() and path.stat().st_mode & 0o077:
            path.chmod(0o600)


def holder(data_dir: Path, name: str = OWNER) -> str | None:
    """Who holds the lock now, or None if nobody does."""
    try:
        with exclusive(data_dir, "probe", name):
            return None
    except DataDirBusy as exc:
        return str(exc)
