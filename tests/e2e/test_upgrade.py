"""A data dir of the SQLite release: `up` refuses it in one line naming the import, then
`contactstream import-sqlite DIR` brings it over and `up` serves the same customers."""

from __future__ import annotations

import sqlite3
import tarfile
from contextlib import closing
from pathlib import Path

import pytest

from tests.e2e.system import Up, cli

pytestmark = pytest.mark.e2e

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "sqlite-release-0.1.tar.gz"


def test_an_old_data_dir_is_refused_then_imported_and_served(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(data, filter="data")
    with closing(sqlite3.connect(data / "readstore.sqlite")) as lite:
        # the busiest named customers (survivors of merges), with every member's interactions
        customers = lite.execute(
            "SELECT COALESCE(l.survivor, t.customer_id) AS c, COUNT(*) FROM timeline t"
            " LEFT JOIN customer_links l ON l.base = t.customer_id"
            " WHERE t.customer_id NOT LIKE 'erased-%' AND t.type NOT LIKE 'case.%'"
            " GROUP BY c HAVING c IN (SELECT customer_id FROM customers WHERE name IS NOT NULL)"
            " ORDER BY 2 DESC, 1 LIMIT 3").fetchall()
    assert customers

    refused = cli("up", "--data-dir", str(data), "--port", "1")
    assert refused.returncode != 0
    last = refused.stderr.strip().splitlines()[-1]
    assert "import-sqlite" in last and str(data) in last, refused.stderr[-500:]

    imported = cli("import-sqlite", str(data))
    assert imported.returncode == 0, imported.stderr[-2000:]
    assert "timeline" in imported.stdout
    assert (data / "sqlite-imported" / "readstore.sqlite").exists()
    assert (data / "keys.sqlite").exists()  # the forgetting key store stays
    assert cli("import-sqlite", str(data)).returncode != 0  # nothing to import twice

    with Up(data).start() as up:
        for cid, events in customers:
            view = up.get(f"/v1/customers/{cid}")
            assert view.status_code == 200, view.text
            body = view.json()
            assert body["interactions_total"] == events
            assert body["name"]  # decrypted with the old data dir's keys
