"""Reading envelopes from JSONL and CSV files for `contactstream publish`."""

from __future__ import annotations

import csv
import io
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from contactstream.adapters.demo import DemoPopulation, synthetic_events
from contactstream.adapters.eventfile import count_lines, read_events
from contactstream.domain.interactions import validate_envelope

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
FLAT = ["event_id", "type", "occurred_at", "source", "channel", "agent_id", "queue", "case_id"]
CUSTOMER = ["id", "email", "phone", "visitor_id", "name"]


def sample() -> list[dict[str, Any]]:
    """Demo envelopes of every type, with multilingual text and messy identifiers."""
    events = list(DemoPopulation(seed=11, customers=40, now=NOW).history(days=30))
    return events + synthetic_events(300, seed=3, customers=200, now=NOW)


def compact(env: dict[str, Any]) -> dict[str, Any]:
    """The envelope without null fields: what a CSV row with empty cells can say."""
    out = {k: v for k, v in env.items() if v is not None and k not in ("customer", "payload")}
    out["customer"] = {k: v for k, v in env["customer"].items() if v is not None}
    out["payload"] = dict(env["payload"])
    return out


def write_jsonl(path: Path, events: list[dict[str, Any]], bom: bool = False) -> None:
    text = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))


def write_csv(path: Path, events: list[dict[str, Any]], bom: bool = False) -> None:
    payload_keys = sorted({k for e in events for k in e["payload"]})
    header = FLAT + [f"customer.{k}" for k in CUSTOMER] + [f"payload.{k}" for k in payload_keys]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    for e in events:
        row = [e[k] for k in FLAT] + [e["customer"][k] for k in CUSTOMER]
        row += [e["payload"].get(k) for k in payload_keys]
        writer.writerow(["" if v is None else v for v in row])
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + buf.getvalue().encode("utf-8"))


def parsed(path: Path | str, fmt: str | None = None) -> list[tuple[int, Any]]:
    return list(read_events(path, fmt))


def test_csv_and_jsonl_give_identical_envelopes(tmp_path: Path) -> None:
    events = sample()
    assert {e["type"] for e in events} >= {"call.ended", "survey.answered", "web.visit"}
    write_jsonl(tmp_path / "events.jsonl", events)
    write_csv(tmp_path / "events.csv", events)
    from_jsonl = [env for _, env in parsed(tmp_path / "events.jsonl")]
    from_csv = [env for _, env in parsed(tmp_path / "events.csv")]
    assert from_jsonl == events
    assert from_csv == [compact(e) for e in events]


def test_csv_converts_numbers_but_keeps_amounts_as_text(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text(
        "event_id,type,customer.id,payload.duration_s,payload.wait_s,payload.score,"
        "payload.amount,payload.order_id\n"
        "e1,call.ended,c-1,125,2.5,,,\n"
        "e2,survey.answered,c-1,,,4.0,,\n"
        "e3,purchase.completed,c-1,,,,12.50,0042\n"
        "e4,call.ended,c-1,soon,,,,\n",
        encoding="utf-8",
    )
    rows = parsed(path)
    assert rows[0] == (2, {"event_id": "e1", "type": "call.ended", "customer": {"id": "c-1"},
                           "payload": {"duration_s": 125, "wait_s": 2.5}})
    assert rows[1][1]["payload"] == {"score": 4}
    assert rows[2][1]["payload"] == {"amount": "12.50", "order_id": "0042"}
    assert rows[3][0] == 5 and "payload.duration_s" in rows[3][1]


def test_a_bad_jsonl_line_is_reported_and_the_rest_still_parse(tmp_path: Path) -> None:
    path = tmp_path / "events.ndjson"
    good = {"event_id": "e1", "type": "call.started"}
    path.write_bytes(
        json.dumps(good).encode() + b"\n"
        b"{not json\n"
        b"\n"
        b"[1, 2]\n"
        b"\xff\xfe broken bytes\n"
        + json.dumps({**good, "event_id": "e2"}).encode()  # no final newline
    )
    rows = parsed(path)
    assert rows[0] == (1, good)
    assert rows[1][0] == 2 and rows[1][1].startswith("invalid JSON")
    assert rows[2][0] == 4 and "not a JSON object" in rows[2][1]
    assert rows[3] == (5, "not valid UTF-8")
    assert rows[4] == (6, {**good, "event_id": "e2"})
    assert count_lines(path) == 6


@pytest.mark.parametrize("name", ["events.jsonl", "events.csv"])
def test_a_byte_order_mark_is_ignored(tmp_path: Path, name: str) -> None:
    events = sample()[:20]
    path = tmp_path / name
    (write_csv if name.endswith(".csv") else write_jsonl)(path, events, bom=True)
    rows = parsed(path)
    assert all(isinstance(env, dict) for _, env in rows)
    assert [env["event_id"] for _, env in rows] == [e["event_id"] for e in events]


def test_csv_line_numbers_survive_quoted_newlines(tmp_path: Path) -> None:
    path = tmp_path / "multi.csv"
    path.write_text(
        'event_id,type,customer.name,payload.description,surprise\n'
        'e1,complaint.filed,Kovács Anna,"Kétszer vonták le,\na havidíjat",x\n'
        '\n'
        'e2,complaint.filed,مریم احمدی,مبلغ دو بار کسر شد,y\n'
        'e3,complaint.filed,王芳,重复扣款,z,extra\n',
        encoding="utf-8",
    )
    rows = parsed(path)
    assert rows[0] == (1, "unknown column(s) ignored: surprise")
    assert rows[1] == (2, {"event_id": "e1", "type": "complaint.filed",
                           "customer": {"name": "Kovács Anna"},
                           "payload": {"description": "Kétszer vonták le,\na havidíjat"}})
    assert rows[2][0] == 5 and rows[2][1]["customer"]["name"] == "مریم احمدی"
    assert rows[3][0] == 6 and "cells" in rows[3][1]
    assert count_lines(path) == 5


def test_a_json_array_file_is_read_element_by_element(tmp_path: Path) -> None:
    path = tmp_path / "batch.json"
    path.write_text('[\n  {"event_id": "a"},\n  {"event_id": "b"},\n  3\n]\n', encoding="utf-8")
    assert parsed(path) == [(2, {"event_id": "a"}), (3, {"event_id": "b"}),
                            (4, "not a JSON object but int")]
    assert count_lines(path) is None


def test_format_comes_from_the_extension_or_the_argument(tmp_path: Path) -> None:
    path = tmp_path / "export.txt"
    path.write_text("event_id,type\ne1,call.started\n", encoding="utf-8")
    with pytest.raises(ValueError):
        parsed(path)
    assert parsed(path, fmt="csv") == [(2, {"event_id": "e1", "type": "call.started"})]
    assert count_lines(path, fmt="csv") == 1


def test_dash_reads_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    data = "\ufeff" + json.dumps({"event_id": "e1", "customer": {"name": "王芳"}},
                                 ensure_ascii=False) + "\nnope\n"
    stdin = io.TextIOWrapper(io.BytesIO(data.encode("utf-8")), encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", stdin)
    assert parsed("-") == [(1, {"event_id": "e1", "customer": {"name": "王芳"}}),
                           (2, "invalid JSON: Expecting value (column 1)")]
    assert count_lines("-") is None


def test_csv_rows_of_demo_envelopes_validate(tmp_path: Path) -> None:
    write_csv(tmp_path / "events.csv", sample())
    for line, env in parsed(tmp_path / "events.csv"):
        assert isinstance(env, dict) and validate_envelope(env) == [], (line, env)
