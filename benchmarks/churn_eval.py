"""Checks the churn model on a synthetic population whose churners are known.

Run: python benchmarks/churn_eval.py [--customers 5000] [--seed 7] [--churn-rate 0.2]
"""

from __future__ import annotations

import argparse
import random
import time
from bisect import bisect_left, bisect_right

from contactstream.projections.churn import DAY_MS, ChurnFacts, churn_risk

NOW = 1_780_000_000_000  # the cutoff the model is run at


def _poisson_times(rng: random.Random, start: int, end: int, mean_days: float) -> list[int]:
    out, t = [], start
    while True:
        t += int(rng.expovariate(1 / mean_days) * DAY_MS)
        if t >= end:
            return out
        out.append(t)


def _score(rng: random.Random, kind: str, happy: float) -> int:
    """A noisy answer from a 0-1 satisfaction level."""
    x = min(max(rng.gauss(happy, 0.2), 0.0), 1.0)
    return 1 + round(x * 4) if kind == "csat" else round(x * 10)


def customer(rng: random.Random, churner: bool) -> tuple[ChurnFacts, bool]:
    """A year of history; churners stop or slow down 20-120 days before the cutoff, often
    after a complaint and a bad score; one non-churner in eight has a quiet spell (the
    second value says so), which the contact data alone cannot tell from churn."""
    quiet = False
    rhythm = 5 * 12 ** rng.random()  # 5-60 days between contacts
    start = NOW - rng.randint(200, 400) * DAY_MS
    onset = NOW - rng.randint(20, 120) * DAY_MS if churner else NOW
    contacts = _poisson_times(rng, start, onset, rhythm)
    if churner and rng.random() < 0.35:  # slows down rather than stopping
        contacts += _poisson_times(rng, onset, NOW, rhythm * rng.uniform(3, 6))
    elif not churner and rng.random() < 0.125:  # a holiday or a quiet spell
        quiet = True
        gap_start = NOW - rng.randint(15, 90) * DAY_MS
        contacts = [t for t in contacts if t < gap_start]
    complaints = [t for t in _poisson_times(rng, start, NOW, 300) if t < onset]
    if churner and rng.random() < 0.5:
        complaints.append(onset - rng.randint(0, 20) * DAY_MS)
    happy = rng.uniform(0.55, 0.95)
    surveys = []
    for t in contacts:
        if rng.random() < 0.2:
            soured = churner and t > onset - 60 * DAY_MS and rng.random() < 0.7
            kind = rng.choice(("csat", "nps"))
            surveys.append((t, kind, _score(rng, kind, happy - 0.45 * soured)))
    purchases = [t for t in contacts if rng.random() < 0.3]
    contacts = sorted(set(contacts) - set(purchases))
    return ChurnFacts(contacts, purchases, sorted(complaints), surveys,
                      open_cases=int(rng.random() < (0.25 if churner else 0.08)),
                      breached_ms=[NOW - rng.randint(1, 60) * DAY_MS]
                      if rng.random() < (0.12 if churner else 0.02) else []), quiet


def prf(scores: list[float], labels: list[bool], threshold: float) -> tuple[float, float, float]:
    tp = sum(1 for s, y in zip(scores, labels, strict=True) if s >= threshold and y)
    fp = sum(1 for s, y in zip(scores, labels, strict=True) if s >= threshold and not y)
    fn = sum(1 for s, y in zip(scores, labels, strict=True) if s < threshold and y)
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def auc(scores: list[float], labels: list[bool]) -> float:
    """The chance a random churner scores above a random stayer (ties count half)."""
    pos = sorted(s for s, y in zip(scores, labels, strict=True) if y)
    neg = sorted(s for s, y in zip(scores, labels, strict=True) if not y)
    below = sum(bisect_left(neg, s) + (bisect_right(neg, s) - bisect_left(neg, s)) / 2
                for s in pos)
    return below / (len(pos) * len(neg))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--customers", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--churn-rate", type=float, default=0.2)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    labels = [rng.random() < args.churn_rate for _ in range(args.customers)]
    population = [customer(rng, y) for y in labels]
    t0 = time.perf_counter()
    scores = [churn_risk(f, NOW).score for f, _ in population]
    elapsed = time.perf_counter() - t0
    p, r, f1 = prf(scores, labels, 0.5)
    best = max((prf(scores, labels, t / 100) + (t / 100,) for t in range(5, 96)),
               key=lambda x: x[2])
    print(f"customers {args.customers}, churners {sum(labels)}, seed {args.seed}, "
          f"scored in {elapsed * 1000:.0f} ms")
    print(f"threshold 0.50: precision {p:.3f} recall {r:.3f} F1 {f1:.3f}")
    fp = [q for s, y, (_, q) in zip(scores, labels, population, strict=True)
          if s >= 0.5 and not y]
    print(f"false positives at 0.50: {len(fp)}, of them {sum(fp)} stayers with a quiet spell; "
          f"ROC AUC {auc(scores, labels):.3f}")
    print(f"best threshold {best[3]:.2f}: precision {best[0]:.3f} recall {best[1]:.3f} "
          f"F1 {best[2]:.3f}")


if __name__ == "__main__":
    main()
