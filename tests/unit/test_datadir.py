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
        with exclusive(tmp_path, "worker", "worker.lock"):  # another lock, another owner
            pass
    assert holder(tmp_path) is None
    with exclusive(tmp_path, "replay"):
        pass
