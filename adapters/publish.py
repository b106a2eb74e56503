"""``contactstream publish FILE``: bulk-publish JSONL or CSV over HTTP with a progress bar."""

from __future__ import annotations

import itertools
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from .eventfile import count_lines, read_events


def default_url_and_token(data_dir: Path) -> tuple[str, str | None]:
    tokens = data_dir / "tokens.json"
    token = json.loads(tokens.read_text())["publisher"] if tokens.exists() else None
    return "http://127.0.0.1:8080", token


def publish_file(path: str, url: str, token: str | None, batch_size: int = 1000) -> int:
    """Returns the exit code: 0 when every line was accepted or a duplicate."""
    totals: Counter[str] = Counter()
    reasons: list[str] = []
    warnings: list[str] = []
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    total = count_lines(path)
    events = read_events(path)
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
                result = _post(client, [item for _, item in good])
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
    for reason in reasons[:50]:
        print(f"  rejected {reason}")
    if len(reasons) > 50:
        print(f"  ... and {len(reasons) - 50} more")
    if warnings:
        print(f"accepted with a warning {len(warnings)}")
        for warning in warnings[:50]:
            print(f"  warning {warning}")
        if len(warnings) > 50:
            print(f"  ... and {len(warnings) - 50} more")
    return 1 if totals["rejected"] else 0


def _post(client: httpx.Client, items: list[Any]) -> dict[str, Any]:
    for attempt in range(8):
        resp = client.post("/v1/events", json=items)
        if resp.status_code == 202:
            return resp.json()  # type: ignore[no-any-return]
        if resp.status_code in (429, 503) and attempt < 7:
            import time
            time.sleep(0.25 * 2**attempt)
            continue
        try:
            message = resp.json()["error"]["message"]
        except Exception:
            message = resp.text[:200]
        raise SystemExit(f"publish: HTTP {resp.status_code}: {message}")
    raise AssertionError("unreachable")
