"""Read envelopes from JSONL or CSV files (or stdin) for `contactstream publish`, line by line."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

Item = tuple[int, dict[str, Any] | str]

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv"}
FLAT_COLUMNS = ("event_id", "type", "occurred_at", "source", "channel", "agent_id", "queue",
                "case_id")
CUSTOMER_FIELDS = ("id", "email", "phone", "visitor_id", "name")
# Payload fields the contract types as numbers; everything else (amount too) stays a string.
NUMERIC_PAYLOAD = frozenset({"duration_s", "wait_s", "score"})
# ... and as JSON booleans: a cell reads true/false (any case).
BOOLEAN_PAYLOAD = frozenset({"granted"})
_INT = re.compile(r"[+-]?\d+")
_BOM = b"\xef\xbb\xbf"


def detect_format(path: str | Path, fmt: str | None = None) -> str:
    """'jsonl' or 'csv', from `fmt` if given, else from the file extension."""
    if fmt:
        key = fmt.lower().lstrip(".")
        if key in ("jsonl", "ndjson", "json"):
            return "jsonl"
        if key == "csv":
            return "csv"
        raise ValueError(f"unknown format {fmt!r}: use jsonl or csv")
    if str(path) == "-":
        return "jsonl"
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"cannot tell the format of {str(path)!r} from its extension; "
                         "use .jsonl, .ndjson, .json or .csv, or pass the format")
    return FORMATS[suffix]


def read_events(path: str | Path, fmt: str | None = None) -> Iterator[Item]:
    """Yield (line number, envelope) or (line number, error) per record; never raise on a line.

    `-` reads stdin. A `.json` file holding one JSON array is read as that array.
    """
    kind = detect_format(path, fmt)
    if str(path) == "-":
        yield from _read(_stdin_binary(), kind)
        return
    with open(path, "rb") as fh:
        yield from _read(fh, kind)


def count_lines(path: str | Path, fmt: str | None = None) -> int | None:
    """A total for the progress bar: records in the file (None for stdin or a JSON array)."""
    if str(path) == "-":
        return None
    lines, last, first = 0, b"\n", b""
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            if not first:
                first = chunk.removeprefix(_BOM).lstrip()[:1]
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    if last != b"\n":
        lines += 1
    if first == b"[":
        return None
    kind = detect_format(path, fmt)
    return max(0, lines - 1) if kind == "csv" else lines


def _stdin_binary() -> BinaryIO:
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is not None:
        return buffer  # type: ignore[no-any-return]
    return io.BytesIO(sys.stdin.read().encode("utf-8"))  # a text-only stdin, as in some tests


def _read(fh: BinaryIO, kind: str) -> Iterator[Item]:
    lines = _decoded_lines(fh)
    if kind == "csv":
        yield from _read_csv(lines)
    else:
        yield from _read_jsonl(lines)


def _decoded_lines(fh: BinaryIO) -> Iterator[tuple[int, str | None]]:
    """(line number, text) per line; text None when the line is not valid UTF-8."""
    for number, raw in enumerate(fh, start=1):
        if number == 1:
            raw = raw.removeprefix(_BOM)
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError:
            yield number, None


def _read_jsonl(lines: Iterator[tuple[int, str | None]]) -> Iterator[Item]:
    first = True
    for number, text in lines:
        if text is None:
            yield number, "not valid UTF-8"
            continue
        stripped = text.strip()
        if not stripped:
            continue
        if first and stripped.startswith("["):
            yield from _read_array(number, text, lines)
            return
        first = False
        yield number, _parse_object(stripped)


def _parse_object(text: str) -> dict[str, Any] | str:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"invalid JSON: {exc.msg} (column {exc.colno})"
    if not isinstance(value, dict):
        return f"not a JSON object but {type(value).__name__}"
    return value


def _read_array(first: int, text: str, rest: Iterator[tuple[int, str | None]]) -> Iterator[Item]:
    """A whole-document JSON array: each element is reported at the line it starts on."""
    parts = [text]
    for number, more in rest:
        if more is None:
            yield number, "not valid UTF-8"
            return
        parts.append(more)
    doc = "".join(parts)
    decoder = json.JSONDecoder()
    pos = doc.index("[") + 1
    while True:
        pos = _skip(doc, pos)
        if pos < len(doc) and doc[pos] == "]":
            return
        line = first + doc.count("\n", 0, pos)
        try:
            value, pos = decoder.raw_decode(doc, pos)
        except json.JSONDecodeError as exc:
            yield line, f"invalid JSON: {exc.msg} (line {first + exc.lineno - 1})"
            return
        yield line, value if isinstance(value, dict) else (
            f"not a JSON object but {type(value).__name__}")
        pos = _skip(doc, pos)
        if pos < len(doc) and doc[pos] == ",":
            pos += 1
        elif pos >= len(doc) or doc[pos] != "]":
            yield first + doc.count("\n", 0, pos), "invalid JSON: expected ',' or ']'"
            return


def _skip(doc: str, pos: int) -> int:
    while pos < len(doc) and doc[pos] in " \t\r\n":
        pos += 1
    return pos


def _read_csv(lines: Iterator[tuple[int, str | None]]) -> Iterator[Item]:
    bad: set[int] = set()

    def texts() -> Iterable[str]:
        for number, text in lines:
            if text is None:
                bad.add(number)
                yield "\n"
            else:
                yield text

    reader = csv.reader(texts())
    header: list[str] | None = None
    start = 1
    for row in reader:
        end = reader.line_num
        first, start = start, end + 1
        if not row or all(not cell.strip() for cell in row):
            continue
        if any(n in bad for n in range(first, end + 1)):
            yield first, "not valid UTF-8"
            continue
        if header is None:
            header = [cell.strip() for cell in row]
            unknown = [c for c in header if not _known_column(c)]
            if unknown:
                yield first, f"unknown column(s) ignored: {', '.join(unknown)}"
            continue
        yield first, _row_to_envelope(header, row)


def _known_column(name: str) -> bool:
    if name in FLAT_COLUMNS:
        return True
    prefix, dot, field = name.partition(".")
    return bool(dot and field) and (prefix == "payload" or
                                    (prefix == "customer" and field in CUSTOMER_FIELDS))


def _row_to_envelope(header: list[str], row: list[str]) -> dict[str, Any] | str:
    if len(row) > len(header):
        return f"row has {len(row)} cells but the header has {len(header)}"
    envelope: dict[str, Any] = {}
    customer: dict[str, Any] = {}
    payload: dict[str, Any] = {}
    for name, cell in zip(header, row, strict=False):
        if cell == "" or not _known_column(name):
            continue
        if name in FLAT_COLUMNS:
            envelope[name] = cell
            continue
        prefix, _, field = name.partition(".")
        if prefix == "customer":
            customer[field] = cell
        elif field in NUMERIC_PAYLOAD:
            number = _number(cell)
            if number is None:
                return f"{name}: not a number: {cell!r}"
            payload[field] = number
        elif field in BOOLEAN_PAYLOAD:
            flag = {"true": True, "false": False}.get(cell.strip().lower())
            if flag is None:
                return f"{name}: not true or false: {cell!r}"
            payload[field] = flag
        else:
            payload[field] = cell
    if customer:
        envelope["customer"] = customer
    if payload:
        envelope["payload"] = payload
    return envelope


def _number(text: str) -> int | float | None:
    text = text.strip()
    if _INT.fullmatch(text):
        return int(text)
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    return int(value) if value.is_integer() else value  # "4.0" is the integer 4
