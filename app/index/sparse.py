"""BM25 sparse vectors without a model: Qdrant Edge's hashed-token Bm25 (English stemming and
stop words). Document vectors carry term frequencies; the index applies IDF at query time."""

from __future__ import annotations

from qdrant_edge import Bm25

from app.index import SparseVector


class Bm25Encoder:
    def __init__(self) -> None:
        self._bm25 = Bm25()

    def document(self, text: str) -> SparseVector:
        v = self._bm25.embed_document(text)
        return SparseVector(list(v.indices), list(v.values))

    def query(self, text: str) -> SparseVector:
        v = self._bm25.embed_query(text)
        return SparseVector(list(v.indices), list(v.values))
