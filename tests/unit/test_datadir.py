"""The data dir's owner lock (adapters/datadir.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from contactstream.adapters.datadir import DataDirBusy, exclusive, holder


def test_a_held_data_dir_is_refused_with_its_holder_and_free_again_after(tmp_path: Path) -> None:
    assert holder(tmp_path) is None
    with exclusive(tmp_path, "up"):
        with pytest.raises(DataDirBusy, match=r"in use by `contactstream up` \(pid \d+\)"):
            with exclusive(tmp_path, "replay"):
                pass
        assert "contactstream up" in (holder(tmp_path) or "")
        with exclusive(tmp_path, "other", "other.lock"):  # another lock, another owner
            pass
    assert holder(tmp_path) is None
    with exclusive(tmp_path, "replay"):
        pass


def test_taking_a_data_dir_makes_it_and_its_files_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    (data / "keys.sqlite").write_text("x")
    (data / "keys.sqlite").chmod(0o644)
    with exclusive(data, "up"):
        pass
    assert data.stat().st_mode & 0o777 == 0o700
    assert (data / "keys.sqlite").stat().st_mode & 0o777 == 0o600
