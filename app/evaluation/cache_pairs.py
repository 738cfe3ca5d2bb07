"""The semantic cache on golden question pairs, through the real cache.

``evals/data/cache_pairs.jsonl`` holds pairs of questions: true paraphrases, which should be
served the same cached answer, and near misses (a number, a name, a negation, a comparison or
the topic changed), which must not be. For each pair the answer to the first question is
stored with ``AnswerCache.store`` in a partition of its own, and the second is looked up with
``AnswerCache.lookup``, as the answer path does: the installation's embedder, index, exact
layer, thresholds and near-miss guard. Both thresholds are tried: the strict one of ordinary
hits, and the looser one used only when every model has failed.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from app.evaluation.golden import data_dir
from app.services import Services
from app.settings import Settings


@dataclass
class PairResult:
    id: str
    label: str
    kind: str
    a: str
    b: str
    hit: bool
    fallback_hit: bool
    lookup_ms: float


def load_pairs(path: Path | None = None) -> list[dict[str, str]]:
    path = path or data_dir() / "cache_pairs.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def run_pairs(settings: Settings, pairs: list[dict[str, str]]) -> list[PairResult]:
    settings = settings.model_copy(update={"cache_enabled": True, "ingest_own_docs": False})
    services = Services.build(settings)
    try:
        cache = services.answers.cache
        if cache is None:
            raise RuntimeError("the answer cache is off")
        tenant = settings.default_tenant
        results = []
        for pair in pairs:
            part = f"eval-pair|{pair['id']}"
            cache.store(
                tenant=tenant,
                question=pair["a"],
                part=part,
                answer_id=f"eval-{pair['id']}",
                text="A stored answer. [1]",
                sources=[],
                citations=[],
                grounding=[],
                risk="low",
                model="eval",
            )
            started = time.perf_counter()
            hit = cache.lookup(tenant, pair["b"], part) is not None
            took = (time.perf_counter() - started) * 1000
            fallback = cache.lookup(tenant, pair["b"], part, fallback=True) is not None
            results.append(
                PairResult(
                    pair["id"], pair["label"], pair["kind"], pair["a"], pair["b"], hit, fallback,
                    took,
                )
            )  # fmt: skip
        return results
    finally:
        services.close()


def summarise_cache(results: list[PairResult], settings: Settings) -> dict[str, Any]:
    paraphrases = [r for r in results if r.label == "paraphrase"]
    near = [r for r in results if r.label != "paraphrase"]

    def share(rows: list[PairResult], attr: str) -> float | None:
        return round(sum(getattr(r, attr) for r in rows) / len(rows), 4) if rows else None

    lookups = sorted(r.lookup_ms for r in results)
    return {
        "pairs": len(results),
        "paraphrases": len(paraphrases),
        "near_misses": len(near),
        "threshold": settings.cache_threshold,
        "fallback_threshold": settings.cache_fallback_threshold,
        "hit_rate": share(paraphrases, "hit"),
        "false_hit_rate": share(near, "hit"),
        "fallback_hit_rate": share(paraphrases, "fallback_hit"),
        "fallback_false_hit_rate": share(near, "fallback_hit"),
        "false_hits_by_kind": dict(Counter(r.kind for r in near if r.hit)),
        "fallback_false_hits_by_kind": dict(Counter(r.kind for r in near if r.fallback_hit)),
        "lookup_ms_p50": round(lookups[len(lookups) // 2], 2) if lookups else None,
    }


def pairs_json(results: list[PairResult]) -> list[dict[str, Any]]:
    return [asdict(r) for r in results]
