"""The customer's figures as a fold of new timeline rows (projections/figures.py): what a
row adds, and that any order of batches, duplicates and redeliveries ends in the same
aggregates and report buckets as one fold of the distinct rows."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from contactstream.projections import figures, satisfaction
from contactstream.projections.figures import Figures, Owner, Tally, apply, fold
from contactstream.projections.timeline import TimelineEntry

DAY_MS = 86_400_000
NOW = 1_790_000_000_000


def row(eid: str, typ: str, payload: dict | None = None, *, customer: str = "c-1",
        days_ago: float = 1, channel: str = "email", agent: str | None = None,
        queue: str | None = None, case: str | None = None) -> TimelineEntry:
    ms = NOW - int(days_ago * DAY_MS)
    return TimelineEntry(customer, eid, typ, channel, f"at-{ms}", ms, 0, "test", agent, queue,
                         case, payload or {})


def test_a_row_adds_to_its_base_customers_channel_count_and_last_contact() -> None:
    d = fold([row("e1", "call.started", days_ago=3, channel="voice"),
              row("e2", "email.received", days_ago=1),
              row("e3", "email.sent", days_ago=2),
              row("e4", "case.opened", days_ago=0, case="k1")])  # a case event: no contact
    assert {k: (c.interactions, c.last[1]) for k, c in d.channels.items()} == {
        ("c-1", "voice"): (1, "e1"), ("c-1", "email"): (2, "e2")}
    assert sorted(a[2] for a in d.activity) == ["e1", "e2", "e3"]


def test_surveys_purchases_complaints_and_consent() -> None:
    d = fold([row("s1", "survey.answered", {"kind": "csat", "score": 5}),
              row("s2", "survey.answered", {"kind": "nps", "score": 3}),
              row("s3", "survey.answered", {"kind": "nps", "score": 10}),
              row("s4", "survey.answered", {"kind": "ces", "score": 6}),
              row("p1", "purchase.completed", {"amount": "10.50", "currency": "EUR"}, days_ago=5),
              row("p2", "purchase.completed", {"amount": "0.25", "currency": "EUR"}, days_ago=2),
              row("x1", "complaint.filed", {"category": "b"}),
              row("g1", "consent.changed", {"channel": "email", "purpose": "m", "granted": True},
                  days_ago=4),
              row("g2", "consent.changed", {"channel": "email", "purpose": "m",
                                            "granted": False}, days_ago=3)])
    assert d.satisfaction[("c-1", "csat")] == Tally(1, 1, 0, 5)
    assert d.satisfaction[("c-1", "nps")] == Tally(2, 1, 1, 13)
    assert d.satisfaction[("c-1", "ces")] == Tally(1, 0, 0, 6)
    money = d.revenue[("c-1", "EUR")]
    assert (money.amount, money.purchases, money.last_ms) == (Decimal("10.75"), 2,
                                                              NOW - 2 * DAY_MS)
    assert d.consent[("c-1", "email", "m")].event_id == "g2" and \
        d.consent[("c-1", "email", "m")].granted is False
    kinds = {a[2]: a[3] for a in d.activity}
    assert (kinds["p1"], kinds["x1"], kinds["s1"]) == ("p", "x", "c")
    assert figures.summary({k: t for (_, k), t in d.satisfaction.items()}) == \
        satisfaction.summarize([satisfaction.SurveyAnswer(e, "c-1", 0, k, s) for e, k, s in (
            ("s1", "csat", 5), ("s2", "nps", 3), ("s3", "nps", 10), ("s4", "ces", 6))])


def test_a_survey_without_agent_takes_its_cases_latest_and_moves_with_it() -> None:
    state = apply(Figures(), [
        row("s1", "survey.answered", {"kind": "csat", "score": 5}, case="k1", queue="q"),
        row("m1", "email.sent", days_ago=2, case="k1", agent="ann")])
    day = (NOW - DAY_MS) // DAY_MS
    assert state.buckets[("agent", day, "ann", "csat")] == Tally(1, 1, 0, 5)
    # a later row of the case names another agent: the answer moves over to them
    state = apply(state, [row("m2", "chat.message", days_ago=0.5, case="k1", agent="bob")])
    assert ("agent", day, "ann", "csat") not in state.buckets
    assert state.buckets[("agent", day, "bob", "csat")] == Tally(1, 1, 0, 5)
    # an older one does not
    state = apply(state, [row("m0", "chat.message", days_ago=9, case="k1", agent="cy")])
    assert state.counted["s1"] == ("bob", "q")


def test_stray_rows_count_as_contacts_but_add_no_figure() -> None:
    d = fold([row("s1", "survey.answered", {"kind": "nope", "score": 5}),
              row("p1", "purchase.completed", {"amount": "NaN", "currency": "EUR"}),
              row("g1", "consent.changed", {"channel": "email", "purpose": "m",
                                            "granted": "yes"})])
    assert (d.satisfaction, d.revenue, d.consent, d.surveys) == ({}, {}, {}, [])
    assert len(d.activity) == 3


# -- any order, duplicates, redeliveries ----------------------------------------------------
TYPES = ["call.started", "complaint.filed", "survey.answered", "purchase.completed",
         "consent.changed", "case.assigned"]


@st.composite
def rows(draw: st.DrawFn) -> list[TimelineEntry]:
    out = []
    for i in range(draw(st.integers(1, 25))):
        typ = draw(st.sampled_from(TYPES))
        payload: dict = {}
        if typ == "survey.answered":
            payload = {"kind": draw(st.sampled_from(["csat", "nps", "ces"])),
                       "score": draw(st.integers(0, 10))}
        elif typ == "purchase.completed":
            payload = {"amount": str(draw(st.integers(0, 10_000)) / 100),
                       "currency": draw(st.sampled_from(["EUR", "HUF"]))}
        elif typ == "consent.changed":
            payload = {"channel": "email", "purpose": "m", "granted": draw(st.booleans())}
        out.append(row(f"e{i}", typ, payload, customer=draw(st.sampled_from(["a", "b", "c"])),
                       days_ago=draw(st.integers(0, 5)) / 2,  # equal instants: ties by id
                       channel=draw(st.sampled_from(["email", "voice"])),
                       agent=draw(st.sampled_from([None, "", "ann", "bob"])),
                       queue=draw(st.sampled_from([None, "q1", "q2"])),
                       case=draw(st.sampled_from([None, "k1", "k2"]))))
    return out


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[TimelineEntry], list[list[TimelineEntry]]]:
    """Distinct rows, and batches that deliver each at least once, in any order, with
    repeats (within a batch too) and whole redelivered batches."""
    distinct = draw(rows())
    stream = draw(st.permutations(distinct + draw(st.lists(st.sampled_from(distinct),
                                                           max_size=15))))
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    batches = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    for _ in range(draw(st.integers(0, 2))):
        batches.insert(draw(st.integers(0, len(batches))), draw(st.sampled_from(batches)))
    return distinct, batches


def _aggregates(f: Figures) -> tuple:
    d = f.delta
    return ({k: (c.interactions, c.last) for k, c in d.channels.items()}, d.satisfaction,
            {k: (m.amount, m.purchases, m.last_ms) for k, m in d.revenue.items()}, d.consent,
            sorted(d.activity), sorted(d.surveys, key=lambda s: s.event_id), d.owners,
            f.buckets, f.counted)


def _from_scratch(distinct: list[TimelineEntry]) -> Figures:
    """One fold of the distinct rows, buckets straight from the final case owners."""
    d = fold(distinct)
    counted = {s.event_id: figures.effective(s, d.owners.get(s.case_id or "")) for s in
               d.surveys}
    buckets = figures.bucket_changes((s, counted[s.event_id]) for s in d.surveys)
    return Figures({e.event_id for e in distinct}, d, counted, buckets)


@settings(max_examples=300, deadline=None)
@given(deliveries())
def test_any_order_of_batches_duplicates_and_redeliveries_gives_the_same_figures(
        case: tuple[list[TimelineEntry], list[list[TimelineEntry]]]) -> None:
    distinct, batches = case
    state = Figures()
    for batch in batches:
        state = apply(state, batch)
    assert _aggregates(state) == _aggregates(_from_scratch(distinct))


@given(rows(), st.lists(st.integers(0, 24), max_size=10))
def test_fresh_keeps_the_first_of_each_inserted_event(batch: list[TimelineEntry],
                                                      picks: list[int]) -> None:
    doubled = batch + [batch[i % len(batch)] for i in picks]
    inserted = {e.event_id for e in batch[::2]}
    got = figures.fresh(doubled, inserted)
    assert [e.event_id for e in got] == [e.event_id for e in batch if e.event_id in inserted]


@given(rows())
def test_merging_deltas_is_folding_the_rows_together(rs: list[TimelineEntry]) -> None:
    half = len(rs) // 2
    merged = figures.merge(fold(rs[:half]), fold(rs[half:]))
    whole = fold(rs)
    assert _aggregates(Figures(delta=merged)) == _aggregates(Figures(delta=whole))


def test_owner_merge_keeps_the_latest_agent_and_queue_apart() -> None:
    a = Owner((1, "e1", "ann"), (5, "e5", "q-late"))
    b = Owner((3, "e3", "bob"), (2, "e2", "q-early"))
    assert a.merged(b) == b.merged(a) == Owner((3, "e3", "bob"), (5, "e5", "q-late"))


@given(st.lists(st.tuples(st.sampled_from(["csat", "nps", "ces"]), st.integers(0, 10),
                          st.sampled_from([None, "ann", "bob"])), max_size=30))
def test_the_report_from_tallies_is_satisfaction_by_group(
        answers: list[tuple[str, int, str | None]]) -> None:
    rows_ = [satisfaction.SurveyAnswer(f"e{i}", "c", NOW, k, s, agent_id=g)
             for i, (k, s, g) in enumerate(answers)]
    groups: dict[str, dict[str, Tally]] = {}
    for a in rows_:
        groups.setdefault(a.agent_id or figures.NO_GROUP, {}).setdefault(
            a.kind, Tally()).add(figures.tally(a.kind, a.score))
    assert figures.report_rows(groups) == satisfaction.by_group(rows_, "agent")


def test_a_purchase_the_fold_cannot_take_is_skipped_and_named() -> None:
    d = fold([row("ok", "purchase.completed", {"amount": "12.50", "currency": "EUR"}),
              *(row(f"big{i}", "purchase.completed", {"amount": a, "currency": "EUR"})
                for i, a in enumerate(["1E+26", "1e999999999", "1000000000000", "-1"]))])
    assert d.revenue[("c-1", "EUR")].amount == Decimal("12.50")
    assert d.revenue[("c-1", "EUR")].purchases == 1
    assert [e for e, _ in d.skipped] == ["big0", "big1", "big2", "big3"]
    assert len(d.activity) == 5  # the facts stay on the timeline and in the counts
