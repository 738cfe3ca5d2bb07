"""Qdrant server adapter through qdrant-client (production). Tests run the same contract
against qdrant-client's in-process mode (``url=":memory:"``), which speaks the same API."""

from __future__ import annotations

import uuid
from typing import Any

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from app.errors import Unavailable
from app.index import DENSE, SPARSE, IndexHit, IndexPoint, Scope, SearchMode, SparseVector
from app.index import StoredPoint as Stored


def _filter(where: Scope) -> models.Filter:
    must: list[Any] = []
    must_not: list[Any] = []
    for key, value, negate in where.conditions():
        cond = models.FieldCondition(key=key, match=models.MatchValue(value=value))
        (must_not if negate else must).append(cond)
    return models.Filter(must=must, must_not=must_not or None)


class QdrantServerIndex:
    def __init__(
        self,
        client: QdrantClient,
        collection: str,
        dimensions: int,
        rrf_k: int = 60,
        prefetch_limit: int = 50,
    ) -> None:
        self._client = client
        self._collection = collection
        self._rrf_k = rrf_k
        self._prefetch = prefetch_limit
        try:
            if not client.collection_exists(collection):
                client.create_collection(
                    collection,
                    vectors_config={
                        DENSE: models.VectorParams(size=dimensions, distance=models.Distance.COSINE)
                    },
                    sparse_vectors_config={
                        SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)
                    },
                )
                client.create_payload_index(
                    collection,
                    "tenant",
                    models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True),
                )
                for key in ("collection", "document_id"):
                    client.create_payload_index(collection, key, models.PayloadSchemaType.KEYWORD)
                client.create_payload_index(collection, "version", models.PayloadSchemaType.INTEGER)
        except (ResponseHandlingException, UnexpectedResponse) as exc:
            raise Unavailable(
                f"The Qdrant server could not be reached or refused the request ({exc}). "
                "Check DOCENT_QDRANT_URL and that the server is running."
            ) from exc

    @classmethod
    def connect(
        cls,
        url: str,
        api_key: str | None,
        collection: str,
        dimensions: int,
        rrf_k: int = 60,
        prefetch_limit: int = 50,
    ) -> QdrantServerIndex:
        if url == ":memory:":
            client = QdrantClient(location=":memory:")
        else:
            client = QdrantClient(url=url, api_key=api_key, timeout=10)
        return cls(client, collection, dimensions, rrf_k, prefetch_limit)

    def upsert(self, points: list[IndexPoint]) -> None:
        if not points:
            return
        self._client.upsert(
            self._collection,
            points=[
                models.PointStruct(
                    id=p.id,
                    vector={
                        DENSE: p.dense,
                        SPARSE: models.SparseVector(
                            indices=p.sparse.indices, values=p.sparse.values
                        ),
                    },
                    payload=p.payload,
                )
                for p in points
            ],
            wait=True,
        )

    def delete(self, where: Scope) -> None:
        self._client.delete(
            self._collection,
            points_selector=models.FilterSelector(filter=_filter(where)),
            wait=True,
        )

    def search(
        self,
        dense: list[float] | None,
        sparse: SparseVector | None,
        where: Scope,
        limit: int,
        mode: SearchMode = "hybrid",
    ) -> list[IndexHit]:
        flt = _filter(where)
        sparse_q = (
            models.SparseVector(indices=sparse.indices, values=sparse.values)
            if sparse is not None and sparse.indices
            else None
        )
        if mode == "dense" or (mode == "hybrid" and sparse_q is None):
            if dense is None:
                return []
            result = self._client.query_points(
                self._collection,
                query=dense,
                using=DENSE,
                query_filter=flt,
                limit=limit,
                with_payload=True,
            )
        elif mode == "sparse" or dense is None:
            if sparse_q is None:
                return []
            result = self._client.query_points(
                self._collection,
                query=sparse_q,
                using=SPARSE,
                query_filter=flt,
                limit=limit,
                with_payload=True,
            )
        else:
            fetch = max(self._prefetch, limit)
            result = self._client.query_points(
                self._collection,
                prefetch=[
                    models.Prefetch(query=dense, using=DENSE, filter=flt, limit=fetch),
                    models.Prefetch(query=sparse_q, using=SPARSE, filter=flt, limit=fetch),
                ],
                query=models.RrfQuery(rrf=models.Rrf(k=self._rrf_k)),
                query_filter=flt,
                limit=limit,
                with_payload=True,
            )
        return [
            IndexHit(id=str(p.id), score=float(p.score), payload=dict(p.payload or {}))
            for p in result.points
        ]

    def retrieve(self, ids: list[str], with_dense: bool = False) -> list[Stored]:
        if not ids:
            return []
        records = self._client.retrieve(
            self._collection,
            ids=[str(uuid.UUID(i)) for i in ids],
            with_payload=True,
            with_vectors=[DENSE] if with_dense else False,
        )
        out = []
        for r in records:
            dense = None
            if with_dense and isinstance(r.vector, dict):
                value = r.vector.get(DENSE)
                dense = (
                    [float(x) for x in value if isinstance(x, (int, float))]
                    if isinstance(value, list)
                    else None
                )
            out.append(Stored(id=str(r.id), payload=dict(r.payload or {}), dense=dense))
        return out

    def ids(self, where: Scope) -> set[str]:
        found: set[str] = set()
        offset: Any = None
        while True:
            records, offset = self._client.scroll(
                self._collection,
                scroll_filter=_filter(where),
                limit=1000,
                offset=offset,
                with_payload=False,
                with_vectors=False,
            )
            found.update(str(r.id) for r in records)
            if offset is None:
                return found

    def count(self, where: Scope) -> int:
        return int(
            self._client.count(self._collection, count_filter=_filter(where), exact=True).count
        )

    def optimize(self) -> None:
        """The server's own optimizers index new points in the background."""

    def close(self) -> None:
        self._client.close()
