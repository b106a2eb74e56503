"""The chaos run's checker (benchmarks/chaos_checks.py) reads the case store's states as
the store writes them: compressed (adapters/eventstore.py), or plain JSON from before. It
read them as plain JSON only, and stopped at the first compressed state."""

from __future__ import annotations

import json

import pytest

from benchmarks.chaos_checks import case_state
from contactstream.adapters.eventstore import StateCompressor

STATE = {"event_id": "00000000-0000-4000-8000-000000000001", "agent_id": "agent-1"}


def test_a_compressed_state_is_read() -> None:
    stored = StateCompressor().compress(json.dumps(STATE).encode())
    assert stored[:1] != b"{"  # what json.loads alone cannot read
    assert case_state(stored) == STATE


def test_a_state_stored_before_compression_is_read_as_it_is() -> None:
    assert case_state(json.dumps(STATE).encode()) == STATE


def test_a_state_of_an_unknown_format_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        case_state(b"\x07garbage")
