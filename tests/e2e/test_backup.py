"""Backup and restore as documented: `contactstream backup` (pg_dump + the key store) of a
stopped `up`, `contactstream restore` into a new data dir with the same master key, and
`up` there serves the same customers, decrypted."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.e2e.system import Up, cli
from tests.helpers import envelope, eventually

pytestmark = pytest.mark.e2e


def test_backup_then_restore_into_a_new_data_dir(tmp_path: Path) -> None:
    old, new, out = tmp_path / "old", tmp_path / "new", tmp_path / "backup"
    events = [envelope(i, customer={"id": f"c-b{i % 3}", "name": f"Kiss Péter {i % 3}",
                                    "email": f"p{i % 3}@example.hu"}, event_id=f"bk-{i}")
              for i in range(30)]
    with Up(old).start() as up:
        with up.client("publisher") as pub:
            assert pub.post("/v1/events", json=events).json()["accepted"] == 30
        before = eventually(lambda: (v := up.get("/v1/customers/c-b1").json()).get(
            "interactions_total") == 10 and v)

    made = cli("backup", str(out), "--data-dir", str(old))
    assert made.returncode == 0, made.stderr
    assert sorted(p.name for p in out.iterdir()) == ["contactstream.dump", "keys.sqlite",
                                                     "tokens.json"]
    assert "master key is not in it" in made.stdout

    new.mkdir()
    shutil.copy2(old / "master.key", new / "master.key")  # kept apart, given back
    done = cli("restore", str(out), "--data-dir", str(new))
    assert done.returncode == 0, done.stderr
    assert cli("restore", str(out), "--data-dir", str(new)).returncode == 2  # not empty

    with Up(new).start() as up2:
        after = up2.get("/v1/customers/c-b1").json()
        assert after["name"] == "Kiss Péter 1" == before["name"]
        assert after["identifiers"] == before["identifiers"]
        assert after["interactions_total"] == 10
        assert up2.get("/v1/customers/lookup", email="p2@example.hu").json() == {"id": "c-b2"}
        with up2.client("publisher") as pub:  # the journal came back: old ids are duplicates
            assert pub.post("/v1/events", json=events[:5]).json()["duplicates"] == 5
