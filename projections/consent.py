"""Consent from ``consent.changed``: each channel's and purpose's current answer.

A pure fold over timeline rows. The latest answer by (occurred_ms, event_id) wins, so the
result does not depend on the order rows arrive in, and a duplicate changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any


def current_consent(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``rows``: timeline rows of type consent.changed with ``event_id``, ``occurred_ms``,
    ``occurred_at``, ``source`` and ``payload`` (a dict or its JSON text).

    One item per (channel, purpose): ``{"channel", "purpose", "granted", "at", "source",
    "event_id"}``, where ``at`` is the answer's occurred_at as published; sorted by channel,
    then purpose.
    """
    latest: dict[tuple[str, str], tuple[tuple[int, str], dict[str, Any]]] = {}
    for row in rows:
        payload = row["payload"]
        if isinstance(payload, str):
            payload = json.loads(payload)
        channel, purpose, granted = (payload.get("channel"), payload.get("purpose"),
                                     payload.get("granted"))
        if type(channel) is not str or type(purpose) is not str or type(granted) is not bool:
            continue  # validation keeps these out; a stray row must not break the view
        key = (channel, purpose)
        rank = (int(row["occurred_ms"]), str(row["event_id"]))
        held = latest.get(key)
        if held is None or rank > held[0]:
            latest[key] = (rank, {"channel": channel, "purpose": purpose, "granted": granted,
                                  "at": row["occurred_at"], "source": row["source"],
                                  "event_id": row["event_id"]})
    return [item for _, (_, item) in sorted(latest.items())]
