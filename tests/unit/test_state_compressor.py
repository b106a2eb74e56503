"""adapters/eventstore.py: a state compressed from the loaded dictionary's copy is the
same bytes a compressor made afresh gives (the format is fixed for ever), from any
thread, and reads back whole."""

from __future__ import annotations

import json
import random
import zlib
from concurrent.futures import ThreadPoolExecutor

from contactstream.adapters.eventstore import DICTIONARY_V1, V1, WBITS, StateCompressor


def _fresh(data: bytes) -> bytes:
    c = zlib.compressobj(1, zlib.DEFLATED, WBITS, 2, zdict=DICTIONARY_V1)
    return V1 + c.compress(data) + c.flush()


def _states(seed: int, n: int) -> list[bytes]:
    rnd = random.Random(seed)
    return [json.dumps({"timestamp": {"_type_": "datetime_iso", "_data_": f"2026-{i}"},
                        "agent_id": f"agent-{rnd.randrange(99)}",
                        "noise": rnd.randbytes(rnd.randrange(0, 300)).hex()}).encode()
            for i in range(n)]


def test_the_loaded_copy_writes_the_bytes_a_fresh_compressor_writes() -> None:
    comp = StateCompressor()
    for state in [b"", b"{}", *_states(1, 200)]:
        packed = comp.compress(state)
        assert packed == _fresh(state)
        assert comp.decompress(packed) == state


def test_threads_compressing_at_once_each_get_their_own_state() -> None:
    comp = StateCompressor()
    batches = [_states(seed, 300) for seed in range(4)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda states: [comp.compress(s) for s in states], batches))
    for states, packed in zip(batches, results, strict=True):
        assert packed == [_fresh(s) for s in states]
