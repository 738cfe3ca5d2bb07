"""Composition root: builds every adapter from settings, once. Tests build the same graph
with other settings (hash embedder, in-memory Qdrant) instead of patching modules."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from app.answer.answer import AnswerDeps
from app.answer.retrieve import Retriever
from app.db import Database
from app.embeddings import Embedder, build_embedder
from app.errors import Unavailable
from app.index import VectorIndex
from app.index.sparse import Bm25Encoder
from app.providers.offline import OfflineProvider
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


@dataclass
class Services:
    settings: Settings
    db: Database
    index: VectorIndex
    embedder: Embedder
    ingestor: Ingestor
    retriever: Retriever
    answers: AnswerDeps

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
        provider = OfflineProvider(
            embedder,
            settings.answer_min_similarity,
            settings.answer_max_sentences,
            pace_ms=settings.offline_pace_ms,
        )
        answers = AnswerDeps(retriever, provider, settings.answer_sources)
        return cls(settings, db, index, embedder, ingestor, retriever, answers)

    def recover(self) -> None:
        """After an unclean stop: repair the index from SQL, then finish interrupted jobs."""
        fixed = self.ingestor.reconcile()
        if any(fixed.values()):
            log.info("reconciled index after restart: %s", fixed)
        pending = self.ingestor.run_pending()
        if pending:
            log.info("resumed %d interrupted ingestion jobs", pending)

    def close(self) -> None:
        self.index.close()
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
