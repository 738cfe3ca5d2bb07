"""Search: hybrid retrieval, limited to the tenant and to each document's live version."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import select

from app.db import Database
from app.db.tables import Document
from app.embeddings import Embedder
from app.index import IndexHit, SearchMode, SparseVector, VectorIndex, scope
from app.models import ChunkHit


class QueryEncoder(Protocol):
    """What search needs from the BM25 encoder (see app/index/sparse.py)."""

    def query(self, text: str) -> SparseVector: ...


@dataclass
class Retriever:
    db: Database
    index: VectorIndex
    embedder: Embedder
    sparse: QueryEncoder

    def search(
        self,
        tenant: str,
        query: str,
        top_k: int,
        collection: str | None = None,
        mode: SearchMode = "hybrid",
        vector: list[float] | None = None,
    ) -> list[ChunkHit]:
        """``vector``: the query's embedding, when the caller already has it."""
        dense = None
        if mode != "sparse":
            dense = vector if vector is not None else self.embedder.embed_query(query)
        sparse = self.sparse.query(query) if mode != "dense" else None
        where = scope(tenant, collection=collection)
        limit = top_k * 2 + 4
        for _ in range(3):
            raw = self.index.search(dense, sparse, where, limit, mode)
            hits = self._live_only(tenant, raw)
            # Points of a version being replaced are dropped; widen the net if too many were.
            if len(hits) >= top_k or len(raw) < limit:
                break
            limit *= 4
        # Fused (RRF) scores tie often: a chunk first by meaning and third by words scores the
        # same as one third and first. The index orders ties by point id, which is random, so
        # the same question could get its sources in a different order on another day (and
        # the evals would move with it). Ties go in document order instead.
        hits.sort(key=lambda h: (-h.score, h.title, h.start, h.chunk_id))
        return hits[:top_k]

    def _live_only(self, tenant: str, raw: list[IndexHit]) -> list[ChunkHit]:
        doc_ids = {str(h.payload.get("document_id")) for h in raw}
        if not doc_ids:
            return []
        with self.db.session() as s:
            live = {
                row.id: (row.live_version, row.title)
                for row in s.execute(
                    select(Document.id, Document.live_version, Document.title).where(
                        Document.tenant == tenant, Document.id.in_(doc_ids)
                    )
                )
            }
        hits: list[ChunkHit] = []
        for h in raw:
            p = h.payload
            doc = live.get(str(p.get("document_id")))
            if doc is None or doc[0] != p.get("version"):
                continue
            hits.append(
                ChunkHit(
                    chunk_id=h.id,
                    document_id=str(p["document_id"]),
                    title=doc[1],
                    collection=str(p.get("collection", "")),
                    version=int(p["version"]),
                    page=p.get("page"),
                    start=int(p["start"]),
                    end=int(p["end"]),
                    text=str(p.get("text", "")),
                    score=h.score,
                )
            )
        return hits


def timed_search(
    retriever: Retriever,
    tenant: str,
    query: str,
    top_k: int,
    collection: str | None,
    mode: SearchMode,
) -> tuple[list[ChunkHit], float]:
    started = time.perf_counter()
    hits = retriever.search(tenant, query, top_k, collection, mode)
    return hits, (time.perf_counter() - started) * 1000
