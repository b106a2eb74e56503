"""What new timeline rows add to each base customer's figures: a pure fold.

The worker keeps these aggregates in the read store, in the batch's transaction, from the
rows the timeline did not hold yet (adapters/readstore.py), so a duplicate or a
redelivery adds nothing. Every aggregate is a sum or a latest-by-(occurred_ms, event_id),
so the order rows arrive in does not matter. Interactions count per base customer (the
owner of the Kafka partition); a merged customer's figures combine its members' rows.

Satisfaction reports group answers by agent, channel and queue; a survey without its own
agent or queue takes the latest one seen on its case's other rows (``Owner``), which later
rows can change, so the report's day buckets move with it (``regroup``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from ..domain.interactions import amount_value
from .satisfaction import KINDS, Counts
from .timeline import TimelineEntry

DAY_MS = 86_400_000
CONTACT, COMPLAINT, PURCHASE = "c", "x", "p"  # the kinds of a customer's activity
# an interaction's kind by its type (CONTACT for every other; case events are no activity)
ACTIVITY_KINDS = {"purchase.completed": PURCHASE, "complaint.filed": COMPLAINT}
DIMENSIONS = ("agent", "channel", "queue")
NO_GROUP = ""  # a bucket's group when the answer has none (effective values are never "")

Rank = tuple[int, str]  # (occurred_ms, event_id): what "latest" means everywhere


@dataclass(slots=True)
class Tally:
    """Sufficient statistics of survey answers: ``good`` = CSAT 4-5 or NPS 9-10, ``bad`` =
    NPS 0-6, ``total`` = the sum of scores (CES' mean)."""

    responses: int = 0
    good: int = 0
    bad: int = 0
    total: int = 0

    def add(self, other: Tally, sign: int = 1) -> None:
        self.responses += sign * other.responses
        self.good += sign * other.good
        self.bad += sign * other.bad
        self.total += sign * other.total


def tally(kind: str, score: int, n: int = 1) -> Tally:
    """``n`` answers of ``kind`` with ``score``."""
    good = score >= 4 if kind == "csat" else score >= 9 if kind == "nps" else False
    return Tally(n, n * int(good), n * int(kind == "nps" and score <= 6), n * score)


def summary(tallies: Mapping[str, Tally]) -> dict[str, Any]:
    """CSAT/NPS/CES blocks from per-kind tallies, as projections/satisfaction.py shows them."""
    t = {k: tallies.get(k, Tally()) for k in KINDS}
    return Counts(t["csat"].responses, t["csat"].good, t["nps"].responses, t["nps"].good,
                  t["nps"].bad, t["ces"].responses, t["ces"].total).summary()


@dataclass(slots=True)
class ChannelTally:
    interactions: int
    last: tuple[int, str, str]  # (occurred_ms, event_id, occurred_at) of the latest


@dataclass(slots=True)
class Money:
    amount: Decimal
    purchases: int
    last_ms: int


@dataclass(frozen=True, slots=True)
class Survey:
    base: str
    event_id: str
    occurred_ms: int
    kind: str
    score: int
    channel: str
    agent_id: str | None  # its own; None when empty
    queue: str | None
    case_id: str | None

    def needs_owner(self) -> bool:
        return self.case_id is not None and (self.agent_id is None or self.queue is None)


@dataclass(frozen=True, slots=True)
class Consent:
    channel: str
    purpose: str
    granted: bool
    occurred_ms: int
    event_id: str
    occurred_at: str
    source: str


@dataclass(frozen=True, slots=True)
class Owner:
    """The latest non-empty agent and queue on a case's rows other than surveys."""

    agent: tuple[int, str, str] | None = None  # (occurred_ms, event_id, agent)
    queue: tuple[int, str, str] | None = None

    def merged(self, other: Owner | None) -> Owner:
        if other is None:
            return self
        return Owner(_later(self.agent, other.agent), _later(self.queue, other.queue))


def _later(a: tuple[int, str, str] | None, b: tuple[int, str, str] | None,
           ) -> tuple[int, str, str] | None:
    return b if a is None or (b is not None and b[:2] > a[:2]) else a


Effective = tuple[str | None, str | None]  # (agent, queue) a survey is reported under


def effective(s: Survey, owner: Owner | None) -> Effective:
    own = owner or Owner()
    return (s.agent_id or (own.agent[2] if own.agent else None),
            s.queue or (own.queue[2] if own.queue else None))


@dataclass
class Delta:
    """What a set of new rows adds, keyed by base customer."""

    channels: dict[tuple[str, str], ChannelTally] = field(default_factory=dict)
    satisfaction: dict[tuple[str, str], Tally] = field(default_factory=dict)
    revenue: dict[tuple[str, str], Money] = field(default_factory=dict)
    consent: dict[tuple[str, str, str], Consent] = field(default_factory=dict)
    activity: list[tuple[str, int, str, str]] = field(default_factory=list)
    surveys: list[Survey] = field(default_factory=list)
    owners: dict[str, Owner] = field(default_factory=dict)
    # (event id, why) of rows a figure could not take; the caller logs them
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def bases(self) -> set[str]:
        return {a[0] for a in self.activity}


def fresh(entries: Iterable[TimelineEntry], inserted: Iterable[str]) -> list[TimelineEntry]:
    """The rows the timeline took: the first entry of each event id it inserted."""
    wanted = set(inserted)
    out = []
    for e in entries:
        if e.event_id in wanted:
            wanted.discard(e.event_id)
            out.append(e)
    return out


def fold(entries: Iterable[TimelineEntry], delta: Delta | None = None) -> Delta:
    """Add rows (each event once: the caller passes only new rows) to ``delta``."""
    d = delta if delta is not None else Delta()
    for e in entries:
        if e.case_id and e.type != "survey.answered":
            _own(d, e)
        if e.type.startswith("case."):
            continue  # case events are timeline rows, not interactions
        _channel(d, e)
        d.activity.append((e.customer_id, e.occurred_ms, e.event_id,
                           ACTIVITY_KINDS.get(e.type, CONTACT)))
        if e.type == "survey.answered":
            _survey(d, e)
        elif e.type == "purchase.completed":
            _purchase(d, e)
        elif e.type == "consent.changed":
            _consent(d, e)
    return d


def _own(d: Delta, e: TimelineEntry) -> None:
    assert e.case_id is not None
    seen = Owner((e.occurred_ms, e.event_id, e.agent_id) if e.agent_id else None,
                 (e.occurred_ms, e.event_id, e.queue) if e.queue else None)
    if seen.agent or seen.queue:
        d.owners[e.case_id] = seen.merged(d.owners.get(e.case_id))


def _channel(d: Delta, e: TimelineEntry) -> None:
    key = (e.customer_id, e.channel)
    last = (e.occurred_ms, e.event_id, e.occurred_at)
    held = d.channels.get(key)
    if held is None:
        d.channels[key] = ChannelTally(1, last)
    else:
        held.interactions += 1
        held.last = max(held.last, last, key=lambda x: x[:2])


def _survey(d: Delta, e: TimelineEntry) -> None:
    kind, score = e.payload.get("kind"), e.payload.get("score")
    if kind not in KINDS or type(score) is not int:
        return  # validation keeps these out; a stray row must not stop the worker
    s = Survey(e.customer_id, e.event_id, e.occurred_ms, kind, score, e.channel,
               e.agent_id or None, e.queue or None, e.case_id or None)
    d.surveys.append(s)
    d.satisfaction.setdefault((s.base, kind), Tally()).add(tally(kind, score))


def _purchase(d: Delta, e: TimelineEntry) -> None:
    currency, amount = e.payload.get("currency"), amount_value(e.payload.get("amount"))
    if type(currency) is not str or amount is None:
        # ingest refuses these (an amount of 10^12 or more, say); one on the log anyway is
        # a fact on the timeline but no revenue: a sum with it would fail every report
        d.skipped.append((e.event_id, "purchase amount out of range"))
        return
    held = d.revenue.get((e.customer_id, currency))
    if held is None:
        d.revenue[(e.customer_id, currency)] = Money(amount, 1, e.occurred_ms)
    else:
        held.amount += amount
        held.purchases += 1
        held.last_ms = max(held.last_ms, e.occurred_ms)


def _consent(d: Delta, e: TimelineEntry) -> None:
    p = e.payload
    channel, purpose, granted = p.get("channel"), p.get("purpose"), p.get("granted")
    if type(channel) is not str or type(purpose) is not str or type(granted) is not bool:
        return  # as projections/consent.py: such a row never counts
    c = Consent(channel, purpose, granted, e.occurred_ms, e.event_id, e.occurred_at, e.source)
    key = (e.customer_id, channel, purpose)
    held = d.consent.get(key)
    if held is None or (c.occurred_ms, c.event_id) > (held.occurred_ms, held.event_id):
        d.consent[key] = c


# -- the report's day buckets ---------------------------------------------------------------
BucketKey = tuple[str, int, str, str]  # (dimension, day, group or NO_GROUP, kind)


def bucket_keys(s: Survey, eff: Effective) -> list[BucketKey]:
    day = s.occurred_ms // DAY_MS
    return [(dim, day, g or NO_GROUP, s.kind)
            for dim, g in zip(DIMENSIONS, (eff[0], s.channel, eff[1]), strict=True)]


def regroup(surveys: Iterable[tuple[Survey, Effective]], owners: Mapping[str, Owner],
            ) -> list[tuple[Survey, Effective, Effective]]:
    """Stored surveys (with the group they are counted under) whose case owner changed:
    (survey, old, new) for each whose effective agent or queue is now different."""
    out = []
    for s, old in surveys:
        new = effective(s, owners.get(s.case_id or ""))
        if new != old:
            out.append((s, old, new))
    return out


def bucket_changes(added: Iterable[tuple[Survey, Effective]],
                   moved: Iterable[tuple[Survey, Effective, Effective]] = (),
                   ) -> dict[BucketKey, Tally]:
    """Signed tallies per bucket: new answers added, moved ones out of the old group and
    into the new one (the channel never moves)."""
    out: dict[BucketKey, Tally] = {}
    for s, eff in added:
        for key in bucket_keys(s, eff):
            out.setdefault(key, Tally()).add(tally(s.kind, s.score))
    for s, old, new in moved:
        for key in bucket_keys(s, old):
            out.setdefault(key, Tally()).add(tally(s.kind, s.score), -1)
        for key in bucket_keys(s, new):
            out.setdefault(key, Tally()).add(tally(s.kind, s.score))
    return {k: t for k, t in out.items() if t != Tally()}


def report_rows(groups: Mapping[str, Mapping[str, Tally]]) -> list[dict[str, Any]]:
    """The satisfaction report's items from tallies per group and kind: groups with an
    answer, sorted by group, answers without one (``NO_GROUP``) last as ``None``."""
    rows = [{"group": g or None, **summary(t)} for g, t in groups.items()
            if any(x.responses for x in t.values())]
    return sorted(rows, key=lambda r: (r["group"] is None, r["group"] or ""))


# -- the reference model: every figure in memory (tests, and a check against the store) -----
@dataclass
class Figures:
    seen: set[str] = field(default_factory=set)
    delta: Delta = field(default_factory=Delta)
    counted: dict[str, Effective] = field(default_factory=dict)  # survey -> its group
    buckets: dict[BucketKey, Tally] = field(default_factory=dict)


def apply(state: Figures, entries: Iterable[TimelineEntry]) -> Figures:
    """One batch as the worker applies it: only unseen rows count, the case owners move
    the surveys that take their agent or queue from them, then the new ones are added."""
    new = []
    for e in entries:
        if e.event_id not in state.seen:
            state.seen.add(e.event_id)
            new.append(e)
    d = fold(new)
    owners = dict(state.delta.owners)
    for case_id, o in d.owners.items():
        owners[case_id] = o.merged(owners.get(case_id))
    stored = [(s, state.counted[s.event_id]) for s in state.delta.surveys
              if s.case_id in d.owners and s.needs_owner()]
    moved = regroup(stored, owners)
    added = [(s, effective(s, owners.get(s.case_id or ""))) for s in d.surveys]
    for key, t in bucket_changes(added, moved).items():
        state.buckets.setdefault(key, Tally()).add(t)
        if state.buckets[key] == Tally():
            del state.buckets[key]
    state.counted.update({s.event_id: new_ for s, _, new_ in moved})
    state.counted.update({s.event_id: eff for s, eff in added})
    state.delta = merge(state.delta, d)
    return state


def merge(a: Delta, b: Delta) -> Delta:
    """Two deltas of disjoint rows as one (sums and latest-wins, order-free)."""
    out = Delta(activity=a.activity + b.activity, surveys=a.surveys + b.surveys,
                skipped=a.skipped + b.skipped)
    for src in (a, b):
        for kc, c in src.channels.items():
            held = out.channels.get(kc)
            out.channels[kc] = replace(c) if held is None else ChannelTally(
                held.interactions + c.interactions, max(held.last, c.last, key=lambda x: x[:2]))
        for ks, t in src.satisfaction.items():
            out.satisfaction.setdefault(ks, Tally()).add(t)
        for kr, m in src.revenue.items():
            h = out.revenue.get(kr)
            out.revenue[kr] = replace(m) if h is None else Money(
                h.amount + m.amount, h.purchases + m.purchases, max(h.last_ms, m.last_ms))
        for kk, c2 in src.consent.items():
            h2 = out.consent.get(kk)
            if h2 is None or (c2.occurred_ms, c2.event_id) > (h2.occurred_ms, h2.event_id):
                out.consent[kk] = c2
        for case_id, o in src.owners.items():
            out.owners[case_id] = o.merged(out.owners.get(case_id))
    return out
