"""``contactstream publish FILE``: bulk-publish JSONL or CSV over HTTP with a progress bar.

What goes wrong before a line is published (no such file, no server at the URL, a token
it refuses) is a ``PublishError``: the command prints its one line and exits non-zero."""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from .eventfile import count_lines, detect_format, read_events

INSTANCE_FILE = "up.json"  # where `up` says where it serves (DATA_DIR/up.json)


class PublishError(Exception):
    """A mistake the user can fix; its message says how."""


def write_instance(data_dir: Path, url: str, kafka: str, database: str = "") -> Path:
    """`up` records its URL (and its Kafka bootstrap address, for Kafka tools, and its
    database) in its data dir, so `publish --data-dir` finds it, and so do more workers and
    API replicas started beside it (`contactstream worker|api --data-dir`)."""
    path = data_dir / INSTANCE_FILE
    path.write_text(json.dumps({"url": url, "kafka": kafka, "database": database}))
    return path


def instance(data_dir: Path) -> dict[str, str]:
    """What the `up` serving ``data_dir`` recorded (empty if none runs there)."""
    try:
        found = json.loads((data_dir / INSTANCE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {k: str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def instance_url(data_dir: Path) -> str | None:
    """The URL of the `up` serving ``data_dir`` (None if it never ran there)."""
    return instance(data_dir).get("url")


def publish_file(path: str, url: str, token: str | None, batch_size: int = 1000,
                 fmt: str | None = None) -> int:
    """Returns the exit code: 0 when every line was accepted or a duplicate; raises
    PublishError when nothing could be published (bad file, server, token)."""
    try:
        kind = detect_format(path, fmt)
        total = count_lines(path, kind)
    except ValueError as exc:
        raise PublishError(str(exc)) from None
    except OSError as exc:
        raise PublishError(f"cannot read {path}: {exc.strerror or exc}") from None
    totals: Counter[str] = Counter()
    reasons: list[str] = []
    warnings: list[str] = []
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    events = read_events(path, kind)
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client, tqdm(
            total=total, unit="ev", file=sys.stderr, disable=None) as bar:
        while chunk := list(itertools.islice(events, batch_size)):
            good: list[tuple[int, Any]] = []
            for line, item in chunk:
                if isinstance(item, str):
                    totals["rejected"] += 1
                    reasons.append(f"line {line}: {item}")
                else:
                    good.append((line, item))
            if good:
                result = _post(client, url, [item for _, item in good])
                totals["accepted"] += result["accepted"]
                totals["duplicates"] += result["duplicates"]
                for rej in result["rejected"]:
                    totals["rejected"] += 1
                    reasons.append(f"line {good[rej['index']][0]}: {rej['error']}")
                for w in result.get("warnings", []):  # accepted without a bad identifier
                    warnings.append(f"line {good[w['index']][0]}: {w['warning']}")
            bar.update(len(chunk))
    print(f"accepted {totals['accepted']}, duplicates {totals['duplicates']}, "
          f"rejected {totals['rejected']}")
    _listed("  rejected", reasons)
    if warnings:
        print(f"accepted with a warning {len(warnings)}")
        _listed("  warning", warnings)
    return 1 if totals["rejected"] else 0


def _listed(prefix: str, lines: list[str], at_most: int = 50) -> None:
    for line in lines[:at_most]:
        print(f"{prefix} {line}")
    if len(lines) > at_most:
        print(f"  ... and {len(lines) - at_most} more")


def _post(client: httpx.Client, url: str, items: list[Any]) -> dict[str, Any]:
    for attempt in range(8):
        try:
            resp = client.post("/v1/events", json=items)
        except httpx.TransportError as exc:
            raise PublishError(
                f"no contactstream answers at {url} ({type(exc).__name__}): is `contactstream"
                " up` running? Give its address with --url, or its data dir with"
                " --data-dir") from None
        if resp.status_code == 202:
            return _accepted(resp, url)
        if resp.status_code in (429, 503) and attempt < 7:
            time.sleep(0.25 * 2**attempt)
            continue
        raise PublishError(_refusal(resp, url))
    raise PublishError(f"{url} kept answering 429/503: try again later")


def _accepted(resp: httpx.Response, url: str) -> dict[str, Any]:
    try:
        body = resp.json()
        if isinstance(body, dict) and {"accepted", "duplicates", "rejected"} <= body.keys():
            return body
    except ValueError:
        pass
    raise PublishError(f"{url} is not a contactstream API (its answer to POST /v1/events"
                       " is not one): check --url or the port")


def _refusal(resp: httpx.Response, url: str) -> str:
    try:
        message = str(resp.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return (f"{url} answered HTTP {resp.status_code} and is not a contactstream API:"
                " check --url or the port")
    if resp.status_code == 401:
        return (f"the server refused the token (HTTP 401: {message}): use the publisher"
                " token of DATA_DIR/tokens.json, with --token or --data-dir")
    if resp.status_code == 403:
        return (f"the token is not a publisher's (HTTP 403: {message}): use the publisher"
                " token of DATA_DIR/tokens.json")
    return f"HTTP {resp.status_code}: {message}"
