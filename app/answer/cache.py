"""The answer cache: complete, validated answers served again to the same question.

Two layers that share one SQL row per entry:

- exact: ``sha256(tenant | normalised question | partition)`` in SQL. It needs neither the
  embedder nor the index, so it keeps the fallback alive when either is down (R8).
- semantic: the question's vector in a Qdrant collection beside the documents, searched with
  a hard tenant filter (the same ``scope`` function as document search) inside the entry's
  partition. A hit must pass the near-miss guard: questions that differ in a number, a name or
  a negation never share an answer.

The partition holds what must match exactly: collection scope, prompt version, model tier and
risk tier. An entry records the versions of the documents it cites; when one of them changes
or is deleted, the entry dies at its next lookup. Ordinary hits need ``threshold``; the looser
``fallback_threshold`` is used only when every provider has failed, and such answers are
always labelled with their age.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import delete, select

from app.answer.nearmiss import near_miss, normalise_question
from app.db import Database
from app.db.tables import CacheEntry, Document, utcnow
from app.embeddings import Embedder
from app.index import IndexPoint, SparseVector, VectorIndex, scope

log = logging.getLogger(__name__)


def partition(collection: str | None, prompt_version: str, tier: str, risk: str) -> str:
    return f"{collection or '*'}|{prompt_version}|{tier}|{risk}"


def exact_key(tenant: str, question: str, part: str) -> str:
    raw = f"{tenant}\x1f{normalise_question(question)}\x1f{part}"
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass
class CachedAnswer:
    entry_id: str
    answer_id: str
    question: str
    text: str
    sources: list[dict[str, Any]]
    citations: list[dict[str, Any]]
    grounding: list[dict[str, Any]]
    model: str
    created_at: datetime
    match: Literal["exact", "semantic"]
    similarity: float
    curated: bool

    @property
    def age_s(self) -> float:
        return max(0.0, (utcnow() - self.created_at).total_seconds())


class AnswerCache:
    def __init__(
        self,
        db: Database,
        index: VectorIndex | None,
        embedder: Embedder,
        threshold: float = 0.95,
        fallback_threshold: float = 0.94,
    ) -> None:
        self._db = db
        self._index = index
        self._embedder = embedder
        self.threshold = threshold
        self.fallback_threshold = min(fallback_threshold, threshold)

    # --- lookup ------------------------------------------------------------------------

    def lookup(
        self,
        tenant: str,
        question: str,
        part: str,
        *,
        fallback: bool = False,
        min_similarity: float | None = None,
        vector: list[float] | None = None,
    ) -> CachedAnswer | None:
        """The best live entry for this question, or None. ``min_similarity`` can only raise
        the threshold (R7)."""
        threshold = self.fallback_threshold if fallback else self.threshold
        if min_similarity is not None:
            threshold = max(threshold, min_similarity)
        exact = self._exact(tenant, question, part)
        if exact is not None:
            return exact
        if self._index is None:
            return None
        try:
            vec = vector if vector is not None else self._embedder.embed_query(question)
            hits = self._index.search(vec, None, scope(tenant, collection=part), 5, "dense")
        except Exception as exc:  # the exact layer above still works without these (R8)
            log.warning("semantic cache unavailable: %s", exc)
            return None
        for hit in hits:
            if hit.score < threshold:
                break
            entry = self._entry(tenant, hit.id)
            if entry is None:
                continue
            reason = near_miss(entry.question, question)
            if reason:
                log.info("cache near miss refused (%s): %r vs %r", reason, entry.question, question)
                continue
            found = self._alive(entry, "semantic", float(hit.score))
            if found is not None:
                return found
        return None

    def lookup_exact(self, tenant: str, question: str, part: str) -> CachedAnswer | None:
        """SQL only: works when the embedder or the index is down."""
        return self._exact(tenant, question, part)

    def _exact(self, tenant: str, question: str, part: str) -> CachedAnswer | None:
        key = exact_key(tenant, question, part)
        with self._db.session() as s:
            rows = list(
                s.scalars(
                    select(CacheEntry)
                    .where(CacheEntry.tenant == tenant, CacheEntry.key == key)
                    .order_by(CacheEntry.created_at.desc())
                )
            )
        for row in rows:
            found = self._alive(row, "exact", 1.0)
            if found is not None:
                return found
        return None

    def _entry(self, tenant: str, entry_id: str) -> CacheEntry | None:
        with self._db.session() as s:
            row = s.get(CacheEntry, entry_id)
            return row if row is not None and row.tenant == tenant else None

    def _alive(
        self, row: CacheEntry, match: Literal["exact", "semantic"], similarity: float
    ) -> CachedAnswer | None:
        cited: dict[str, int] = json.loads(row.cited_versions)
        with self._db.session() as s:
            rows = s.execute(
                select(Document.id, Document.live_version).where(
                    Document.tenant == row.tenant, Document.id.in_(list(cited))
                )
            )
            live = {doc_id: version for doc_id, version in rows}
            if any(live.get(doc) != version for doc, version in cited.items()):
                s.execute(delete(CacheEntry).where(CacheEntry.id == row.id))
                self._forget([row.id])
                return None
            fresh = s.get(CacheEntry, row.id)
            if fresh is not None:
                fresh.hits += 1
        return CachedAnswer(
            entry_id=row.id,
            answer_id=row.answer_id,
            question=row.question,
            text=row.text,
            sources=json.loads(row.sources),
            citations=json.loads(row.citations),
            grounding=json.loads(row.grounding),
            model=row.model,
            created_at=row.created_at,
            match=match,
            similarity=round(similarity, 4),
            curated=row.curated,
        )

    # --- store -------------------------------------------------------------------------

    def store(
        self,
        *,
        tenant: str,
        question: str,
        part: str,
        answer_id: str,
        text: str,
        sources: list[dict[str, Any]],
        citations: list[dict[str, Any]],
        grounding: list[dict[str, Any]],
        risk: str,
        model: str,
        vector: list[float] | None = None,
        curated: bool = False,
    ) -> str:
        """Keep a validated answer; the caller guarantees it is complete and validated."""
        cited_docs = {str(c["document_id"]) for c in citations}
        versions = {
            str(src["document_id"]): int(src["version"])
            for src in sources
            if str(src["document_id"]) in cited_docs
        }
        entry_id = str(uuid.uuid4())
        with self._db.session() as s:
            s.add(
                CacheEntry(
                    id=entry_id,
                    tenant=tenant,
                    key=exact_key(tenant, question, part),
                    partition=part,
                    question=question,
                    answer_id=answer_id,
                    text=text,
                    sources=json.dumps(sources),
                    citations=json.dumps(citations),
                    grounding=json.dumps(grounding),
                    cited_versions=json.dumps(versions),
                    risk=risk,
                    model=model,
                    curated=curated,
                )
            )
        if self._index is not None:
            try:
                vec = vector if vector is not None else self._embedder.embed_query(question)
                self._index.upsert(
                    [
                        IndexPoint(
                            entry_id,
                            vec,
                            SparseVector([], []),
                            {"tenant": tenant, "collection": part, "document_id": entry_id},
                        )
                    ]
                )
            except Exception as exc:  # the exact layer still serves it
                log.warning("semantic cache write failed: %s", exc)
        return entry_id

    def invalidate_document(self, tenant: str, document_id: str) -> int:
        """Drop entries that cite a document (it changed or was deleted)."""
        with self._db.session() as s:
            ids = [
                row.id
                for row in s.scalars(select(CacheEntry).where(CacheEntry.tenant == tenant))
                if document_id in json.loads(row.cited_versions)
            ]
            if ids:
                s.execute(delete(CacheEntry).where(CacheEntry.id.in_(ids)))
        self._forget(ids)
        return len(ids)

    def _forget(self, ids: list[str]) -> None:
        if not ids or self._index is None:
            return
        try:
            for entry_id in ids:
                for point in self._index.retrieve([entry_id]):
                    tenant = str(point.payload.get("tenant", ""))
                    if tenant:
                        part = str(point.payload.get("collection", ""))
                        self._index.delete(scope(tenant, collection=part, document_id=entry_id))
        except Exception as exc:
            log.warning("semantic cache delete failed: %s", exc)
