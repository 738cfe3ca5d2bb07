"""Figures for the console's dashboard, read from the audit rows (one per answer).

Every figure comes from what the answers recorded: time per pipeline step, time to first
token, cost, cache status, grounding verdicts and the provider path with its failures.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from app.db import Database
from app.db.tables import AnswerRecord, utcnow

# The marks an answer records, in pipeline order (app/answer/audit.py, Trail.mark): each
# step's time is the difference from the mark before it.
STEPS = ["condense", "retrieve", "cache", "first_token", "grounding", "total"]
STEP_NAMES = {
    "condense": "understand the question",
    "retrieve": "search",
    "cache": "answer cache",
    "first_token": "model's first words",
    "grounding": "rest of the answer and grounding",
    "total": "finish (audit, cache)",
}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _pass_rate(grounding: list[dict[str, Any]]) -> float | None:
    claims = [g for g in grounding if g.get("claim", True)]
    if not claims:
        return None
    return float(sum(g.get("verdict") == "supported" for g in claims)) / len(claims)


def dashboard(db: Database, tenant: str, days: int = 14) -> dict[str, Any]:
    since = utcnow() - timedelta(days=days)
    with db.session() as s:
        rows = list(
            s.execute(
                select(
                    AnswerRecord.created_at,
                    AnswerRecord.timings,
                    AnswerRecord.cost_usd,
                    AnswerRecord.cache_status,
                    AnswerRecord.grounding,
                    AnswerRecord.provider_path,
                    AnswerRecord.outcome,
                ).where(AnswerRecord.tenant == tenant, AnswerRecord.created_at >= since)
            )
        )
    by_day: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"answers": 0, "cost_usd": 0.0, "cached": 0, "pass_rates": [], "errors": 0}
    )
    steps: dict[str, list[float]] = defaultdict(list)
    ttft: list[float] = []
    failures: Counter[tuple[str, str]] = Counter()
    for created, timings_json, cost, cache_status, grounding_json, path_json, outcome in rows:
        day = by_day[created.date().isoformat()]
        day["answers"] += 1
        day["cost_usd"] += cost or 0.0
        day["cached"] += cache_status in ("hit", "fallback")
        day["errors"] += outcome in ("error", "interrupted")
        rate = _pass_rate(json.loads(grounding_json or "[]"))
        if rate is not None:
            day["pass_rates"].append(rate)
        timings = json.loads(timings_json or "{}")
        previous = 0.0
        for step in STEPS:
            mark = timings.get(f"{step}_ms")
            if isinstance(mark, int | float):
                steps[step].append(max(0.0, mark - previous))
                previous = mark
        if isinstance(timings.get("first_token_ms"), int | float) and cache_status not in (
            "hit",
            "fallback",
        ):
            ttft.append(float(timings["first_token_ms"]))
        for attempt in json.loads(path_json or "[]"):
            if attempt.get("outcome") not in ("ok", "skipped"):
                failures[(str(attempt.get("provider")), str(attempt.get("outcome")))] += 1
    days_out = [
        {
            "day": day,
            "answers": v["answers"],
            "cost_usd": round(v["cost_usd"], 6),
            "cache_hit_rate": round(v["cached"] / v["answers"], 4) if v["answers"] else None,
            "grounding_pass_rate": (
                round(statistics.fmean(v["pass_rates"]), 4) if v["pass_rates"] else None
            ),
            "errors": v["errors"],
        }
        for day, v in sorted(by_day.items())
    ]
    return {
        "days": days,
        "answers": len(rows),
        "by_day": days_out,
        "steps": [
            {
                "step": step,
                "name": STEP_NAMES[step],
                "median_ms": round(statistics.median(steps[step]), 1),
                "p90_ms": round(_pct(steps[step], 0.9), 1),
            }
            for step in STEPS
            if steps[step]
        ],
        "time_to_first_token_ms": {
            "n": len(ttft),
            "median": round(statistics.median(ttft), 1) if ttft else None,
            "p90": round(_pct(ttft, 0.9), 1) if ttft else None,
            "values": [round(v, 1) for v in ttft[-2000:]],
        },
        "provider_failures": [
            {"provider": p, "kind": k, "count": n} for (p, k), n in failures.most_common()
        ],
    }
