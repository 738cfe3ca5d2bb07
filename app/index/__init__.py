"""The vector index: one small protocol, two adapters (Qdrant Edge, Qdrant server).

Every query and delete takes a ``Scope``, and ``Scope`` cannot be built without a tenant: the
adapters turn it into a filter whose ``must`` always holds ``tenant == scope.tenant``, with the
narrower conditions nested inside that same ``must``. This is the one place tenant isolation
is decided for the index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

DENSE = "dense"
SPARSE = "bm25"

SearchMode = Literal["hybrid", "dense", "sparse"]


@dataclass(frozen=True)
class SparseVector:
    indices: list[int]
    values: list[float]


@dataclass(frozen=True)
class Scope:
    """Which points an operation may touch. The tenant is mandatory."""

    tenant: str
    collection: str | None = None
    document_id: str | None = None
    version: int | None = None
    exclude_version: int | None = None

    def __post_init__(self) -> None:
        if not self.tenant:
            raise ValueError("an index scope needs a tenant")

    def conditions(self) -> list[tuple[str, str | int, bool]]:
        """(payload key, value, negate) triples; the tenant condition is always first."""
        conds: list[tuple[str, str | int, bool]] = [("tenant", self.tenant, False)]
        if self.collection is not None:
            conds.append(("collection", self.collection, False))
        if self.document_id is not None:
            conds.append(("document_id", self.document_id, False))
        if self.version is not None:
            conds.append(("version", self.version, False))
        if self.exclude_version is not None:
            conds.append(("version", self.exclude_version, True))
        return conds


def scope(
    tenant: str,
    *,
    collection: str | None = None,
    document_id: str | None = None,
    version: int | None = None,
    exclude_version: int | None = None,
) -> Scope:
    """The single function that builds every index filter."""
    return Scope(tenant, collection, document_id, version, exclude_version)


@dataclass
class IndexPoint:
    id: str
    dense: list[float]
    sparse: SparseVector
    payload: dict[str, Any]


@dataclass
class IndexHit:
    id: str
    score: float
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class StoredPoint:
    id: str
    payload: dict[str, Any]
    dense: list[float] | None = None


class VectorIndex(Protocol):
    """What Docent needs from a vector store."""

    def upsert(self, points: list[IndexPoint]) -> None:
        """Insert or replace points; durable when it returns."""
        ...

    def delete(self, where: Scope) -> None: ...

    def search(
        self,
        dense: list[float] | None,
        sparse: SparseVector | None,
        where: Scope,
        limit: int,
        mode: SearchMode = "hybrid",
    ) -> list[IndexHit]:
        """Hybrid: dense and BM25 candidates fused with reciprocal rank fusion."""
        ...

    def retrieve(self, ids: list[str], with_dense: bool = False) -> list[StoredPoint]: ...

    def ids(self, where: Scope) -> set[str]: ...

    def count(self, where: Scope) -> int: ...

    def optimize(self) -> None:
        """Build search indexes (HNSW) for data added since the last call; cheap when
        there is nothing to do. A Qdrant server does this by itself."""
        ...

    def close(self) -> None: ...
