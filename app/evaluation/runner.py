"""A golden set through Docent's real answer path, one question at a time.

The documents are uploaded into a collection of their own in a working directory (kept
between runs with ``workdir``: nothing is indexed twice), with the settings of this
installation (embedder, provider chain, prices). For each question:

- retrieval: ``Retriever.search`` for the top 10, judged against the gold chunks;
- the answer: ``app.answer.answer.answer`` with the cache off, read event by event as a client
  reads it: its citations judged against the gold evidence, its grounding verdicts, whether
  it declined (no citation), its risk tier, and from its audit row the time of each step,
  tokens and cost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from app.answer.answer import answer
from app.db.tables import AnswerRecord, Chunk, Document
from app.evaluation import metrics as m
from app.evaluation.golden import GoldenQuestion, GoldenSet, gold_chunks
from app.models import ChatRequest
from app.services import Services
from app.settings import Settings

log = logging.getLogger(__name__)

COLLECTION = "eval"
TOP_K = 10


@dataclass
class QuestionResult:
    id: str
    question: str
    kind: str
    topic: str
    risk_expected: str | None
    risk: str | None = None
    retrieved: list[str] = field(default_factory=list)
    relevant: list[str] = field(default_factory=list)
    hit_1: float | None = None
    hit_3: float | None = None
    hit_5: float | None = None
    hit_10: float | None = None
    reciprocal_rank: float | None = None
    ndcg_10: float | None = None
    search_ms: float = 0.0
    cited: list[str] = field(default_factory=list)
    citation_precision: float | None = None
    citation_recall: float | None = None
    declined: bool = False
    outcome: str = ""
    error: str | None = None
    grounding_pass_rate: float | None = None
    grounded: bool | None = None
    text: str = ""
    reference: str = ""
    contexts: list[str] = field(default_factory=list)
    """The texts of the sources the answer was given (for context measures)."""
    reference_contexts: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    provider: str | None = None
    extra: dict[str, float | None] = field(default_factory=dict)
    """Further measures of this answer (ragas), by name."""


@dataclass
class RunData:
    set_name: str
    source: str
    chunks: int
    documents: int
    ingest_s: float
    settings: dict[str, Any]
    results: list[QuestionResult]

    def as_json(self) -> dict[str, Any]:
        return {
            "set": self.set_name,
            "source": self.source,
            "documents": self.documents,
            "chunks": self.chunks,
            "ingest_s": round(self.ingest_s, 2),
            "settings": self.settings,
            "questions": [asdict(r) for r in self.results],
        }


def prepare(
    golden: GoldenSet, settings: Settings
) -> tuple[Services, dict[str, list[tuple[str, str]]], float]:
    """Services on ``settings.data_dir`` with the set's documents indexed, and the live
    chunks (id, text) of each file name."""
    services = Services.build(settings)
    tenant = settings.default_tenant
    started = time.perf_counter()
    batch = 200
    for i in range(0, len(golden.documents), batch):
        services.ingestor.receive_many(tenant, COLLECTION, golden.documents[i : i + batch])
        services.ingestor.run_pending()
    took = time.perf_counter() - started
    by_file: dict[str, list[tuple[str, str]]] = {}
    with services.db.session() as s:
        rows = s.execute(
            select(Document.filename, Chunk.id, Chunk.text)
            .join(Chunk, Chunk.document_id == Document.id)
            .where(
                Document.tenant == tenant,
                Document.collection == COLLECTION,
                Chunk.version == Document.live_version,
            )
            .order_by(Chunk.n)
        ).all()
    for filename, chunk_id, text in rows:
        by_file.setdefault(filename, []).append((chunk_id, text))
    return services, by_file, took


Run = Callable[[Coroutine[Any, Any, Any]], Any]
"""Runs a coroutine to its end on the run's one event loop (the SDK clients keep their
connections on it)."""


async def _ask(services: Services, question: str) -> list[tuple[str, dict[str, Any]]]:
    request = ChatRequest(question=question, collection=COLLECTION, use_cache=False)
    tenant = services.settings.default_tenant
    return [(e.event, e.data) async for e in answer(services.answers, tenant, request)]


def evaluate_question(
    services: Services,
    q: GoldenQuestion,
    chunks: dict[str, list[tuple[str, str]]],
    texts: dict[str, str],
    run: Run | None = None,
) -> QuestionResult:
    """Retrieval measures of ``q``, and with ``run`` its answer's."""
    tenant = services.settings.default_tenant
    result = QuestionResult(q.id, q.question, q.kind, q.topic, q.risk, reference=q.answer)
    evidence = [gold_chunks(e, chunks.get(e.doc, [])) for e in q.evidence]
    relevant: set[str] = set().union(*evidence) if evidence else set()
    for doc in q.relevant_docs:
        relevant |= {cid for cid, _ in chunks.get(doc, [])}
    result.relevant = sorted(relevant)
    result.reference_contexts = (
        [texts[c] for c in sorted(set().union(*evidence))] if evidence else []
    )

    started = time.perf_counter()
    hits = services.answers.retriever.search(tenant, q.question, TOP_K, COLLECTION)
    result.search_ms = (time.perf_counter() - started) * 1000
    ranked = [h.chunk_id for h in hits]
    result.retrieved = ranked
    if relevant:
        result.hit_1 = m.hit_at(ranked, relevant, 1)
        result.hit_3 = m.hit_at(ranked, relevant, 3)
        result.hit_5 = m.hit_at(ranked, relevant, 5)
        result.hit_10 = m.hit_at(ranked, relevant, 10)
        result.reciprocal_rank = m.reciprocal_rank(ranked, relevant)
        result.ndcg_10 = m.ndcg_at(ranked, relevant)
    if run is None:
        return result

    events: list[tuple[str, dict[str, Any]]] = run(_ask(services, q.question))
    by_name: dict[str, dict[str, Any]] = {}
    for name, data in events:
        by_name[name] = data  # the last of each kind
    result.risk = by_name.get("meta", {}).get("risk")
    result.contexts = [
        texts.get(s["chunk_id"], s.get("snippet", ""))
        for s in by_name.get("sources", {}).get("sources", [])
    ]
    if "error" in by_name:
        result.outcome, result.error = "error", str(by_name["error"].get("message"))
        return result
    done = by_name.get("done", {})
    result.text = str(done.get("text", ""))
    result.outcome = str(done.get("outcome", ""))
    result.provider = done.get("provider")
    result.cited = [c["chunk_id"] for c in by_name.get("citations", {}).get("citations", [])]
    result.declined = not result.cited
    if q.kind == "answerable" and not result.declined:
        result.citation_precision = m.citation_precision(result.cited, relevant)
        result.citation_recall = m.citation_recall(result.cited, evidence)
    grounding = by_name.get("grounding", {})
    if grounding.get("pass_rate") is not None and not result.declined:
        result.grounding_pass_rate = float(grounding["pass_rate"])
        result.grounded = all(
            s.get("verdict") == "supported" for s in grounding.get("sentences", [])
        )
    answer_id = done.get("answer_id")
    if answer_id:
        services.answers.lanes.flush_writes()
        with services.db.session() as s:
            row = s.get(AnswerRecord, answer_id)
            if row is not None:
                result.timings = {
                    k: float(v)
                    for k, v in json.loads(row.timings).items()
                    if isinstance(v, int | float) and k.endswith("_ms")
                }
                result.input_tokens, result.output_tokens = row.input_tokens, row.output_tokens
                result.cost_usd = row.cost_usd
    return result


def failed(q: GoldenQuestion, exc: Exception) -> QuestionResult:
    """The result of a question whose evaluation raised: an error, and a miss wherever it
    had something to find (so a failure never improves an average)."""
    judged = 0.0 if (q.evidence or q.relevant_docs) else None
    return QuestionResult(
        q.id, q.question, q.kind, q.topic, q.risk,
        outcome="error", error=f"{type(exc).__name__}: {exc}",
        hit_1=judged, hit_3=judged, hit_5=judged, hit_10=judged,
        reciprocal_rank=judged, ndcg_10=judged,
    )  # fmt: skip


def run_set(
    golden: GoldenSet,
    settings: Settings,
    answers: bool = True,
    progress: Any = None,
) -> RunData:
    """Every question of ``golden``; ``progress(done, total)`` after each."""
    services, chunks, took = prepare(golden, settings)
    try:
        results = []
        texts = {cid: text for pieces in chunks.values() for cid, text in pieces}
        with asyncio.Runner() as loop:
            for i, q in enumerate(golden.questions, start=1):
                try:
                    result = evaluate_question(
                        services, q, chunks, texts, loop.run if answers else None
                    )
                except Exception as exc:  # one broken question does not lose the run
                    log.exception("evaluating %s failed", q.id)
                    result = failed(q, exc)
                results.append(result)
                if progress is not None:
                    progress(i, len(golden.questions))
        return RunData(
            set_name=golden.name,
            source=golden.source,
            chunks=sum(len(v) for v in chunks.values()),
            documents=len(chunks),
            ingest_s=took,
            settings={
                "embedder": settings.embedder,
                "chain": settings.chain,
                "answer_sources": settings.answer_sources,
                "query_precision": settings.query_precision,
            },
            results=results,
        )
    finally:
        services.close()


def workdir_settings(base: Settings, workdir: Path) -> Settings:
    """``base`` with its data in ``workdir``, the cache off and no documentation of its own
    (the set's documents are the only ones), grounding in a thread of this process (the same
    checker without a worker process to start)."""
    return base.model_copy(
        update={
            "data_dir": workdir,
            "model_cache": base.model_cache_dir,  # the exported model is not made again
            "ingest_own_docs": False,
            "cache_enabled": False,
            "grounding_workers": 0,
        }
    )
