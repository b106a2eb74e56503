"""What no store can keep, anywhere in an envelope: U+0000, lone surrogates (not Unicode
text: they cannot be written as UTF-8), NaN and infinities (not JSON numbers), and nesting
deeper than a reader should have to follow. And how a rejection echoes what it was sent."""

from __future__ import annotations

import math
from typing import Final

MAX_DEPTH: Final = 32  # objects and arrays inside the envelope, the envelope itself included
ECHO: Final = 40  # characters of a refused value or key a reason quotes at most


def echo(value: object) -> str:
    """A short, printable quote of what was sent: at most ``ECHO`` characters (then '…'),
    lone surrogates and control characters escaped, so the answer stays small and valid."""
    text = value if isinstance(value, str) else repr(value)
    short = text[:ECHO] + ("…" if len(text) > ECHO else "")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in short)


def echo_repr(value: object) -> str:
    """As ``echo``, quoted as Python's repr quotes a string ('x'); other values as repr."""
    if isinstance(value, str):
        return repr(value[:ECHO]) + ("…" if len(value) > ECHO else "")
    return echo(value)


def text_problem(s: str) -> str | None:
    if "\x00" in s:
        return "contains a NUL character (U+0000)"
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (U+D800–U+DFFF), which is not Unicode text"
    return None


def _text_ok(s: str) -> bool:
    # ASCII, the common case: no surrogate can hide in it
    return "\x00" not in s and (s.isascii() or _utf8_ok(s))


def _utf8_ok(s: str) -> bool:
    """Whether text has no lone surrogate (UTF-8 can carry it)."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _all_storable(envelope: object, max_depth: int | None) -> bool:
    """``unstorable(...) is None``, quickly: the same walk without naming paths (every
    record read from the log takes it, so it stays off the per-key string work)."""
    limit = max_depth if max_depth is not None else -1
    stack: list[tuple[object, int]] = [(envelope, 0)]
    pop, push = stack.pop, stack.append
    while stack:
        value, depth = pop()
        kind = type(value)
        if kind is dict or kind is list:
            if depth == limit:
                return False
            items = value.items() if kind is dict else (  # type: ignore[attr-defined]
                (None, v) for v in value)  # type: ignore[attr-defined]
            for k, v in items:
                # a string checked where it is found, not stacked, and _text_ok inline
                # (every key and string of every record read comes here)
                if type(k) is str and ("\x00" in k or not (k.isascii() or _utf8_ok(k))):
                    return False
                if type(v) is str:
                    if "\x00" in v or not (v.isascii() or _utf8_ok(v)):
                        return False
                elif v is not None and type(v) is not int and type(v) is not bool:
                    push((v, depth + 1))
        elif not _scalar_ok(value):
            return False
    return True


def _scalar_ok(value: object) -> bool:
    if type(value) is str:
        return _text_ok(value)
    if type(value) is float:
        return math.isfinite(value)
    return True


def unstorable(envelope: object, max_depth: int | None = MAX_DEPTH) -> str | None:
    """``"<field>: <why>"`` for the first thing in ``envelope`` no store can keep (or
    nested deeper than ``max_depth``), in document order; None when there is none. Walks
    without recursion: depth is data."""
    if _all_storable(envelope, max_depth):
        return None
    stack: list[tuple[object, str, int]] = [(envelope, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        where = path or "envelope"
        if type(value) is str:
            if (why := text_problem(value)) is not None:
                return f"{where}: {why}"
        elif type(value) is float:
            if not math.isfinite(value):
                return f"{where}: not a finite number (NaN and Infinity are not JSON)"
        elif type(value) is dict or type(value) is list:
            if max_depth is not None and depth >= max_depth:
                return f"{where}: nested deeper than {max_depth} levels"
            children: list[tuple[object, str, int]] = []
            if type(value) is dict:
                for k, v in value.items():
                    if type(k) is str and (why := text_problem(k)) is not None:
                        return f"{where}: a key {why}"
                    key = echo(k)
                    children.append((v, f"{path}.{key}" if path else key, depth + 1))
            else:
                children = [(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
            stack.extend(reversed(children))
    return None
