"""Composition root: builds every adapter from settings, once. Tests build the same graph
with other settings (hash embedder, in-memory Qdrant) instead of patching modules."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from app.answer.answer import AnswerConfig, AnswerDeps, retrieve_batch
from app.answer.batch_lane import BatchLane
from app.answer.cache import AnswerCache
from app.answer.conversation import Conversations
from app.answer.grounding_pool import GroundingPool
from app.answer.retrieve import Retriever
from app.answer.risk import RiskPolicy
from app.db import Database
from app.embeddings import Embedder, MemoEmbedder, build_embedder
from app.errors import Unavailable
from app.index import VectorIndex
from app.index.sparse import Bm25Encoder
from app.providers.build import build_judge, build_tiers
from app.providers.fallback import Deadlines, FallbackChain
from app.settings import Settings
from ingest.pipeline import Ingestor

log = logging.getLogger(__name__)


def check_embedder_matches_index(settings: Settings, embedder: Embedder) -> None:
    """An embedded index holds vectors of one model; another model's queries would search it
    silently badly, or fail on the dimension. The first start records which model built it."""
    if settings.index_backend != "edge":
        return
    record = settings.data_dir / "embedder.json"
    current = {"name": embedder.name, "dimensions": embedder.dimensions}
    if not record.exists():
        record.write_text(json.dumps(current) + "\n")
        return
    built = json.loads(record.read_text())
    if built != current:
        raise Unavailable(
            f"The index in {settings.data_dir} was built with the embedder {built['name']} "
            f"({built['dimensions']} dimensions), but the settings now give {embedder.name} "
            f"({embedder.dimensions}). Set DOCENT_EMBEDDER back, or stop Docent, delete "
            f"{settings.shard_dir} and {record}, and start again: every document is "
            "re-embedded from the database."
        )


def build_index(settings: Settings, dimensions: int) -> VectorIndex:
    if settings.index_backend == "qdrant":
        from app.index.server import QdrantServerIndex

        return QdrantServerIndex.connect(
            settings.qdrant_url or "http://127.0.0.1:6333",
            settings.qdrant_api_key,
            settings.qdrant_collection,
            dimensions,
            settings.rrf_k,
            settings.prefetch_limit,
        )
    from app.index.edge import EdgeIndex

    return EdgeIndex.open(settings.shard_dir, dimensions, settings.rrf_k, settings.prefetch_limit)


def build_cache_index(settings: Settings, dimensions: int) -> VectorIndex | None:
    """The semantic answer cache: a second collection beside the documents."""
    if not settings.cache_enabled:
        return None
    if settings.index_backend == "qdrant":
        from app.index.server import QdrantServerIndex

        return QdrantServerIndex.connect(
            settings.qdrant_url or "http://127.0.0.1:6333",
            settings.qdrant_api_key,
            settings.qdrant_collection + "_answer_cache",
            dimensions,
        )
    from app.index.edge import EdgeIndex

    return EdgeIndex.open(settings.cache_shard_dir, dimensions)


def build_answers(
    settings: Settings,
    db: Database,
    retriever: Retriever,
    embedder: Embedder,
    cache_index: VectorIndex | None,
) -> AnswerDeps:
    tiers = build_tiers(settings, embedder)
    judge = build_judge(settings, embedder)
    low, high = (
        Deadlines(
            settings.connect_timeout_s, first, settings.stall_s, total, settings.max_retry_wait_s
        )
        for first, total in (
            (settings.first_token_low_s, settings.total_low_s),
            (settings.first_token_high_s, settings.total_high_s),
        )
    )
    cache = None
    if settings.cache_enabled:
        cache = AnswerCache(
            db, cache_index, embedder, settings.cache_threshold, settings.cache_fallback_threshold
        )
    return AnswerDeps(
        retriever=retriever,
        chain=FallbackChain(tiers["large"]),
        tiers=tiers,
        embedder=MemoEmbedder(embedder),
        db=db,
        conversations=Conversations(db),
        risk=RiskPolicy(settings.high_risk_topics, settings.high_risk_collections),
        cache=cache,
        judge=judge,
        grounding_pool=(
            GroundingPool(settings, settings.grounding_workers)
            if settings.grounding_workers
            else None
        ),
        config=AnswerConfig(
            sources=settings.answer_sources,
            low=low,
            high=high,
            max_tokens=settings.max_output_tokens,
            allow_partial_high=settings.high_risk_allow_partial,
            supported_at=settings.grounding_supported_at,
            prices=settings.prices,
        ),
        query_lane=BatchLane(retrieve_batch, name="answer-query"),
    )


@dataclass
class Services:
    settings: Settings
    db: Database
    index: VectorIndex
    embedder: Embedder
    ingestor: Ingestor
    retriever: Retriever
    answers: AnswerDeps
    cache_index: VectorIndex | None = None

    @classmethod
    def build(cls, settings: Settings, embedder: Embedder | None = None) -> Services:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        settings.files_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.sqlalchemy_url)
        db.migrate()
        embedder = embedder or build_embedder(settings)
        check_embedder_matches_index(settings, embedder)
        index = build_index(settings, embedder.dimensions)
        sparse = Bm25Encoder()
        ingestor = Ingestor(settings, db, index, embedder, sparse)
        retriever = Retriever(db, index, embedder, sparse)
        cache_index = build_cache_index(settings, embedder.dimensions)
        answers = build_answers(settings, db, retriever, embedder, cache_index)
        return cls(settings, db, index, embedder, ingestor, retriever, answers, cache_index)

    def delete_document(self, tenant: str, document_id: str) -> None:
        """Delete a document, and at once every cached answer that cites it (lookups would
        also refuse them, since their cited version is gone)."""
        self.ingestor.delete_document(tenant, document_id)
        if self.answers.cache is not None:
            self.answers.cache.invalidate_document(tenant, document_id)

    def recover(self) -> None:
        """After an unclean stop: repair the index from SQL, then finish interrupted jobs."""
        fixed = self.ingestor.reconcile()
        if any(fixed.values()):
            log.info("reconciled index after restart: %s", fixed)
        pending = self.ingestor.run_pending()
        if pending:
            log.info("resumed %d interrupted ingestion jobs", pending)

    def close(self) -> None:
        if self.answers.query_lane is not None:
            self.answers.query_lane.close()
        self.answers.lanes.close()
        if self.answers.grounding_pool is not None:
            self.answers.grounding_pool.close()
        self.index.close()
        if self.cache_index is not None:
            self.cache_index.close()
        self.db.close()


def own_docs() -> list[Path]:
    """Docent's own README and docs/, wherever this installation keeps them."""
    here = Path(__file__).resolve().parent
    for root in (here / "_bundled", here.parent):
        readme = root / "README.md"
        if readme.is_file():
            return [readme, *sorted((root / "docs").glob("*.md"))]
    return []


def ingest_own_docs_once(services: Services) -> int:
    """First run: queue Docent's documentation so a new user can ask about Docent at once."""
    settings = services.settings
    marker = settings.data_dir / ".own-docs-ingested"
    if not settings.ingest_own_docs or marker.exists():
        return 0
    queued = 0
    for path in own_docs():
        result = services.ingestor.receive(
            settings.default_tenant, settings.help_collection, path.name, path.read_bytes()
        )
        queued += 0 if result.duplicate else 1
    marker.write_text("done\n")
    return queued
