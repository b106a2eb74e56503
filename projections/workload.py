"""Where the work is: unresolved cases per queue and per agent, and what each agent took
and closed today. A pure fold over the cases read model and the day's case events."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class OpenCase:
    case_id: str
    status: str  # open | waiting (resolved cases are not work)
    queue: str | None
    agent_id: str | None
    opened_ms: int


def _slot(counts: dict[Any, dict[str, Any]], key: Any, fields: tuple[str, ...],
          ) -> dict[str, Any]:
    return counts.setdefault(key, dict.fromkeys(fields, 0))


QUEUE_FIELDS = ("open", "waiting", "breached", "unassigned")
AGENT_FIELDS = ("open", "waiting", "breached", "assigned_today", "resolved_today")


def workload(cases: Iterable[OpenCase], breached: set[str],
             today: Iterable[tuple[str, str]], now_ms: int) -> dict[str, Any]:
    """``today``: (case event type, agent id) of the case events since the day began;
    ``case.assigned`` counts as assigned, ``case.resolved`` as resolved by that agent."""
    queues: dict[str | None, dict[str, Any]] = {}
    oldest: dict[str | None, int] = {}
    agents: dict[str, dict[str, Any]] = {}
    for c in cases:
        if c.status not in ("open", "waiting"):
            continue
        q = _slot(queues, c.queue, QUEUE_FIELDS)
        q[c.status] += 1
        q["breached"] += c.case_id in breached
        q["unassigned"] += c.agent_id is None
        oldest[c.queue] = min(oldest.get(c.queue, c.opened_ms), c.opened_ms)
        if c.agent_id is not None:
            a = _slot(agents, c.agent_id, AGENT_FIELDS)
            a[c.status] += 1
            a["breached"] += c.case_id in breached
    for kind, agent in today:
        if kind in ("case.assigned", "case.resolved") and agent:
            _slot(agents, agent, AGENT_FIELDS)[
                "assigned_today" if kind == "case.assigned" else "resolved_today"] += 1
    return {
        "queues": [{"queue": k, **v, "oldest_open_s": max(0, (now_ms - oldest[k]) // 1000)}
                   for k, v in sorted(queues.items(), key=lambda kv: (kv[0] is None,
                                                                     kv[0] or ""))],
        "agents": [{"agent_id": k, **v} for k, v in sorted(agents.items())],
    }
