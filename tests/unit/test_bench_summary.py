"""The bench's late samples (adapters/bench.py): none late, nothing asked of the
database; with several runs, every run's late samples together."""

from __future__ import annotations

import asyncio

from contactstream.adapters.bench import _medians, _where_late


def test_no_late_sample_asks_the_database_nothing() -> None:
    assert asyncio.run(_where_late(None, {})) == []  # None: any query would raise


def test_late_samples_of_several_runs_are_kept_together_other_lists_as_the_first() -> None:
    runs = [{"late": 0, "late_samples": [], "l": [1]},
            {"late": 1, "late_samples": [{"journaled": True}], "l": [2]},
            {"late": 1, "late_samples": [{"journaled": False}], "l": [3]}]
    assert _medians(runs) == {"late": 1, "late_samples": [{"journaled": True},
                                                          {"journaled": False}],
                              "l": [1]}
