"""The measures of an evaluation run, as plain functions of ids and numbers.

Retrieval is judged against gold chunks (those holding a gold quote); citations against gold
evidence items (each quote, each evidence abstract): precision is the share of what an answer
cites that is gold, recall the share of gold evidence that at least one citation covers.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence


def hit_at(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """1.0 when a relevant id is among the first ``k``."""
    return 1.0 if any(r in relevant for r in ranked[:k]) else 0.0


def reciprocal_rank(ranked: Sequence[str], relevant: set[str], k: int = 10) -> float:
    """1 / the rank of the first relevant id in the first ``k``; 0 when there is none."""
    for rank, r in enumerate(ranked[:k], start=1):
        if r in relevant:
            return 1.0 / rank
    return 0.0


def ndcg_at(ranked: Sequence[str], relevant: set[str], k: int = 10) -> float:
    """Normalised discounted cumulative gain with binary relevance; each id counts once."""
    if not relevant:
        return 0.0
    seen: set[str] = set()
    dcg = 0.0
    for rank, r in enumerate(ranked[:k], start=1):
        if r in relevant and r not in seen:
            seen.add(r)
            dcg += 1.0 / math.log2(rank + 1)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(relevant), k) + 1))
    return dcg / ideal


def citation_precision(cited: Sequence[str], relevant: set[str]) -> float | None:
    """The share of distinct cited ids that are relevant; None when nothing is cited."""
    distinct = set(cited)
    if not distinct:
        return None
    return len(distinct & relevant) / len(distinct)


def citation_recall(cited: Iterable[str], evidence: Sequence[set[str]]) -> float | None:
    """The share of evidence items (each a set of ids that would show it) that a citation
    covers; None when there is no evidence to find."""
    if not evidence:
        return None
    chosen = set(cited)
    return sum(1 for ids in evidence if ids & chosen) / len(evidence)


def mean(values: Iterable[float | None]) -> float | None:
    """The mean of the values that are not None; None when there are none."""
    kept = [v for v in values if v is not None]
    return statistics.fmean(kept) if kept else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
