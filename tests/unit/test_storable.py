"""domain/storable.py: the quick walk every record read from the log takes agrees with the
definition of what no store can keep (here: what strict JSON in UTF-8 cannot carry)."""

from __future__ import annotations

import json
import math

from hypothesis import given
from hypothesis import strategies as st

from contactstream.domain.storable import _all_storable, unstorable

texts = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=8)
leaves = st.none() | st.booleans() | st.integers() | st.floats() | texts
values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(texts, inner, max_size=4), max_leaves=30)


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _keepable(value: object, max_depth: int) -> bool:
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
        text.encode("utf-8")
    except (ValueError, UnicodeEncodeError):
        return False
    return "\\u0000" not in json.dumps(value) and _depth(value) <= max_depth


@given(values, st.integers(min_value=1, max_value=4))
def test_unstorable_is_none_exactly_for_what_strict_utf8_json_keeps(value: object,
                                                                    depth: int) -> None:
    assert (unstorable(value, depth) is None) == _keepable(value, depth)


@given(values, st.integers(min_value=1, max_value=4))
def test_the_quick_walk_agrees_both_ways(value: object, depth: int) -> None:
    # unstorable() falls back to the slow walk when the quick one says no: a quick walk
    # refusing what is keepable would only be slow there, so it is checked on its own
    assert _all_storable(value, depth) == _keepable(value, depth)
    assert _all_storable(value, None) == _keepable(value, 10**6)


def test_the_reason_names_the_field() -> None:
    assert unstorable({"payload": {"a": ["ok", "x\x00"]}}) == (
        "payload.a[1]: contains a NUL character (U+0000)")
    assert unstorable({"n": [1.0, math.nan]}) == (
        "n[1]: not a finite number (NaN and Infinity are not JSON)")
    assert unstorable({"k\ud800": 1}) is not None
    assert unstorable({"é": "ü", "x": [1, 2.5, None, True]}) is None
