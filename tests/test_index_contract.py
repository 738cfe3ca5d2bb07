"""One contract, two adapters: every test here runs against Qdrant Edge (on disk, under pytest's
tmp_path_factory) and against qdrant-client's in-process server mode. Dense vectors come from
HashEmbedder, sparse vectors from Bm25Encoder, over a small corpus of distinct documents.

Each adapter is opened once for the module and every test gets fresh tenant names (fixture ``t``),
so tests never see each other's points -- which is itself the isolation being tested. The Edge
tests at the end (reopen, Busy) open shards of their own in tmp_path."""

from __future__ import annotations

import math
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app.embeddings import HashEmbedder
from app.errors import Busy
from app.index import IndexPoint, Scope, SparseVector, VectorIndex, scope
from app.index.edge import EdgeIndex
from app.index.server import QdrantServerIndex
from app.index.sparse import Bm25Encoder
from ingest.chunk import chunk_id

DIMS = 384
MODES = ["dense", "sparse", "hybrid"]

# qdrant-client's local mode warns that payload indexes are a no-op there; that is expected.
pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")

# 30 small documents with distinct vocabulary: (document_id, text)
CORPUS: list[tuple[str, str]] = [
    ("volcano", "Volcanoes erupt molten basalt lava and ash over Iceland."),
    ("glacier", "Glaciers carve fjords as compacted ice slowly creeps downhill."),
    ("sourdough", "Sourdough bread rises with wild yeast and a lactobacillus starter."),
    ("espresso", "Espresso machines force pressurised hot water through finely ground coffee."),
    ("chess", "Chess openings such as the Sicilian defence shape the middlegame."),
    ("violin", "A violin bow strung with horsehair excites the vibrating strings."),
    ("photosynthesis", "Photosynthesis in chloroplasts converts sunlight into glucose."),
    ("mitochondria", "Mitochondria produce adenosine triphosphate through cellular respiration."),
    ("tax", "Quarterly tax returns must be filed before the fiscal deadline."),
    ("payroll", "Payroll software calculates salaries, pensions and withholding."),
    ("kubernetes", "Kubernetes schedules containers into pods across cluster nodes."),
    ("postgres", "PostgreSQL vacuum reclaims storage occupied by dead tuples."),
    ("sailing", "Sailors trim the jib and mainsail when tacking upwind."),
    ("beekeeping", "Beekeepers harvest honeycomb from wooden hives every summer."),
    ("astronomy", "Telescopes reveal distant galaxies, nebulae and quasars."),
    ("origami", "Origami artists fold paper cranes without scissors or glue."),
    ("marathon", "Marathon runners train endurance with long weekend mileage."),
    ("vaccines", "Vaccines train the immune system to recognise antigens."),
    ("recycling", "Recycling plants sort aluminium cans from plastic bottles."),
    ("tides", "Lunar gravity causes ocean tides to ebb and flow twice daily."),
    ("pottery", "Potters shape clay on a wheel and fire it in a kiln."),
    ("cheese", "Cheesemakers age cheddar wheels in cool humid caves."),
    ("railway", "Steam locomotives hauled freight wagons along narrow gauge railways."),
    ("insurance", "Insurance premiums depend on the deductible and claims history."),
    ("typography", "Typographers adjust kerning and leading between serif glyphs."),
    ("knitting", "Knitting needles loop woollen yarn into purl and stitch rows."),
    ("earthquake", "Seismographs record earthquake tremors along tectonic faults."),
    ("perfume", "Perfumers blend bergamot, musk and sandalwood essences."),
    ("drones", "Quadcopter drones stabilise flight with gyroscopes and propellers."),
    ("lighthouse", "Lighthouse keepers polished the Fresnel lens every evening."),
]

# query -> document_id it must find first
QUERIES = {
    "molten basalt lava": "volcano",
    "wild yeast sourdough starter": "sourdough",
    "kubernetes pods containers": "kubernetes",
    "honeycomb hives beekeepers": "beekeeping",
    "fresnel lens lighthouse keepers": "lighthouse",
    "seismographs tectonic faults": "earthquake",
}


@pytest.fixture(scope="module")
def embedder() -> HashEmbedder:
    return HashEmbedder()


@pytest.fixture(scope="module")
def bm25() -> Bm25Encoder:
    return Bm25Encoder()


@pytest.fixture(scope="module", params=["edge", "server"])
def index(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """One index per adapter for the module (creating an Edge shard fsyncs, so it is not free);
    every test works in tenants of its own, see ``t``."""
    if request.param == "edge":
        idx: Any = EdgeIndex.open(tmp_path_factory.mktemp("edge") / "shard", DIMS)
    else:
        idx = QdrantServerIndex.connect(":memory:", None, f"test-{uuid.uuid4().hex}", DIMS)
    try:
        yield idx
    finally:
        idx.close()


@dataclass(frozen=True)
class Tenants:
    A: str
    B: str
    C: str  # never given any points


@pytest.fixture
def t() -> Tenants:
    """Fresh tenant names for each test, so tests sharing an index never see each other."""
    suffix = uuid.uuid4().hex[:10]
    return Tenants(f"A-{suffix}", f"B-{suffix}", f"C-{suffix}")


def make_point(
    embedder: HashEmbedder,
    bm25: Bm25Encoder,
    tenant: str,
    document_id: str,
    text: str,
    *,
    collection: str = "default",
    version: int = 1,
    n: int = 0,
) -> IndexPoint:
    return IndexPoint(
        id=chunk_id(tenant, document_id, version, n),
        dense=embedder.embed_query(text),
        sparse=bm25.document(text),
        payload={
            "tenant": tenant,
            "collection": collection,
            "document_id": document_id,
            "version": version,
            "n": n,
            "text": text,
        },
    )


def corpus_points(embedder: HashEmbedder, bm25: Bm25Encoder, tenant: str) -> list[IndexPoint]:
    return [make_point(embedder, bm25, tenant, doc, text) for doc, text in CORPUS]


@pytest.fixture
def two_tenants(
    t: Tenants, index: VectorIndex, embedder: HashEmbedder, bm25: Bm25Encoder
) -> VectorIndex:
    """Tenants A and B each hold the whole corpus (same document ids, different point ids)."""
    index.upsert(corpus_points(embedder, bm25, t.A))
    index.upsert(corpus_points(embedder, bm25, t.B))
    return index


def search(
    index: VectorIndex,
    embedder: HashEmbedder,
    bm25: Bm25Encoder,
    query: str,
    where: Scope,
    mode: str,
    limit: int = 5,
) -> list[Any]:
    return index.search(
        embedder.embed_query(query),
        bm25.query(query),
        where,
        limit,
        mode=mode,  # type: ignore[arg-type]
    )


# --- basics ---------------------------------------------------------------------------------


def test_upsert_then_count(
    t: Tenants, index: VectorIndex, embedder: HashEmbedder, bm25: Bm25Encoder
) -> None:
    assert index.count(scope(t.A)) == 0
    index.upsert(corpus_points(embedder, bm25, t.A))
    assert index.count(scope(t.A)) == len(CORPUS)
    assert index.count(scope(t.A, document_id="volcano")) == 1
    assert index.count(scope(t.A, document_id="no-such-doc")) == 0


def test_upsert_empty_list_is_a_no_op(t: Tenants, index: VectorIndex) -> None:
    index.upsert([])
    assert index.count(scope(t.A)) == 0


@pytest.mark.parametrize("mode", MODES)
def test_search_finds_expected_top_hit(
    t: Tenants, two_tenants: VectorIndex, embedder, bm25, mode
) -> None:
    for query, expected in QUERIES.items():
        hits = search(two_tenants, embedder, bm25, query, scope(t.A), mode)
        assert hits, f"{mode}: no hits for {query!r}"
        assert hits[0].payload["document_id"] == expected, (mode, query, hits[0].payload)
        assert hits[0].id == chunk_id(t.A, expected, 1, 0)
        assert len(hits) <= 5
        assert len({h.id for h in hits}) == len(hits), "duplicate hits"


@pytest.mark.parametrize("mode", MODES)
def test_search_respects_limit_and_orders_by_score(
    t: Tenants, two_tenants, embedder, bm25, mode
) -> None:
    hits = search(two_tenants, embedder, bm25, "molten basalt lava", scope(t.A), mode, limit=3)
    assert 0 < len(hits) <= 3
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)


# --- tenant isolation ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_search_never_returns_other_tenant(
    t: Tenants, index: VectorIndex, embedder, bm25, mode
) -> None:
    index.upsert(corpus_points(embedder, bm25, t.A))
    index.upsert(corpus_points(embedder, bm25, t.B))
    secret = "Zebrafish quokka xylophone confidential merger memorandum."
    index.upsert([make_point(embedder, bm25, t.B, "secret", secret)])
    a_ids = {chunk_id(t.A, doc, 1, 0) for doc, _ in CORPUS}

    for query in [secret, *QUERIES]:
        hits = search(index, embedder, bm25, query, scope(t.A), mode, limit=50)
        for h in hits:
            assert h.payload["tenant"] == t.A, (mode, query, h.payload)
            assert h.id in a_ids
        assert all(h.payload["document_id"] != "secret" for h in hits)

    # and tenant B does see its own document
    hits = search(index, embedder, bm25, secret, scope(t.B), mode)
    assert hits[0].payload["document_id"] == "secret"
    assert hits[0].payload["tenant"] == t.B


@pytest.mark.parametrize("mode", MODES)
def test_search_for_tenant_without_points_is_empty(
    t: Tenants, two_tenants, embedder, bm25, mode
) -> None:
    assert search(two_tenants, embedder, bm25, "molten basalt lava", scope(t.C), mode) == []


def test_count_and_ids_are_scoped_by_tenant(t: Tenants, two_tenants: VectorIndex) -> None:
    a_ids = {chunk_id(t.A, doc, 1, 0) for doc, _ in CORPUS}
    b_ids = {chunk_id(t.B, doc, 1, 0) for doc, _ in CORPUS}
    assert two_tenants.count(scope(t.A)) == len(CORPUS)
    assert two_tenants.count(scope(t.B)) == len(CORPUS)
    assert two_tenants.ids(scope(t.A)) == a_ids
    assert two_tenants.ids(scope(t.B)) == b_ids
    assert two_tenants.ids(scope(t.A, document_id="tides")) == {chunk_id(t.A, "tides", 1, 0)}
    assert two_tenants.ids(scope(t.C)) == set()
    assert two_tenants.count(scope(t.C)) == 0


def test_delete_document_leaves_other_tenant_same_document(
    t: Tenants, two_tenants: VectorIndex
) -> None:
    two_tenants.delete(scope(t.A, document_id="volcano"))
    assert two_tenants.count(scope(t.A, document_id="volcano")) == 0
    assert two_tenants.count(scope(t.A)) == len(CORPUS) - 1
    # tenant B's point with the very same document_id is untouched
    assert two_tenants.ids(scope(t.B, document_id="volcano")) == {chunk_id(t.B, "volcano", 1, 0)}
    assert two_tenants.count(scope(t.B)) == len(CORPUS)
    (stored,) = two_tenants.retrieve([chunk_id(t.B, "volcano", 1, 0)])
    assert stored.payload["tenant"] == t.B


def test_delete_whole_tenant_leaves_other_tenant(t: Tenants, two_tenants: VectorIndex) -> None:
    two_tenants.delete(scope(t.A))
    assert two_tenants.count(scope(t.A)) == 0
    assert two_tenants.ids(scope(t.A)) == set()
    assert two_tenants.count(scope(t.B)) == len(CORPUS)


def test_delete_for_unknown_tenant_touches_nothing(t: Tenants, two_tenants: VectorIndex) -> None:
    two_tenants.delete(scope(t.C))
    two_tenants.delete(scope(t.C, document_id="volcano"))
    assert two_tenants.count(scope(t.A)) == len(CORPUS)
    assert two_tenants.count(scope(t.B)) == len(CORPUS)


def test_scope_requires_tenant() -> None:
    with pytest.raises(ValueError):
        Scope("")
    with pytest.raises(ValueError):
        scope("")
    with pytest.raises(ValueError):
        scope("", document_id="volcano")


# --- narrower filters ------------------------------------------------------------------------


@pytest.fixture
def collections_and_versions(
    t: Tenants, index: VectorIndex, embedder: HashEmbedder, bm25: Bm25Encoder
) -> VectorIndex:
    """Tenant A: 'manuals' holds lava v1 and v2; 'notes' holds a lava note. Tenant B mirrors."""
    points = []
    for tenant in (t.A, t.B):
        points += [
            make_point(
                embedder,
                bm25,
                tenant,
                "lava-doc",
                "Molten basalt lava, first edition.",
                collection="manuals",
                version=1,
            ),
            make_point(
                embedder,
                bm25,
                tenant,
                "lava-doc",
                "Molten basalt lava, second edition.",
                collection="manuals",
                version=2,
            ),
            make_point(
                embedder,
                bm25,
                tenant,
                "lava-note",
                "Molten basalt lava field notes.",
                collection="notes",
                version=1,
            ),
        ]
    index.upsert(points)
    return index


@pytest.mark.parametrize("mode", MODES)
def test_collection_filter(t: Tenants, collections_and_versions, embedder, bm25, mode) -> None:
    idx = collections_and_versions
    hits = search(idx, embedder, bm25, "molten basalt lava", scope(t.A, collection="notes"), mode)
    assert [h.payload["document_id"] for h in hits] == ["lava-note"]
    assert hits[0].payload["tenant"] == t.A
    hits = search(idx, embedder, bm25, "molten basalt lava", scope(t.A, collection="manuals"), mode)
    assert {(h.payload["document_id"], h.payload["version"]) for h in hits} == {
        ("lava-doc", 1),
        ("lava-doc", 2),
    }
    assert all(h.payload["tenant"] == t.A for h in hits)
    assert idx.count(scope(t.A, collection="manuals")) == 2
    assert idx.count(scope(t.A, collection="missing")) == 0


@pytest.mark.parametrize("mode", MODES)
def test_version_filter_and_exclude_version(
    t: Tenants, collections_and_versions, embedder, bm25, mode
):
    idx = collections_and_versions
    q = "molten basalt lava"
    hits = search(idx, embedder, bm25, q, scope(t.A, document_id="lava-doc", version=2), mode)
    assert [(h.payload["version"], h.payload["tenant"]) for h in hits] == [(2, t.A)]
    hits = search(
        idx, embedder, bm25, q, scope(t.A, document_id="lava-doc", exclude_version=2), mode
    )
    assert [(h.payload["version"], h.payload["tenant"]) for h in hits] == [(1, t.A)]
    assert idx.count(scope(t.A, version=1)) == 2
    assert idx.count(scope(t.A, exclude_version=1)) == 1
    assert idx.ids(scope(t.A, document_id="lava-doc", exclude_version=1)) == {
        chunk_id(t.A, "lava-doc", 2, 0)
    }


def test_delete_old_versions_keeps_current(
    t: Tenants, collections_and_versions: VectorIndex
) -> None:
    idx = collections_and_versions
    idx.delete(scope(t.A, document_id="lava-doc", exclude_version=2))
    assert idx.ids(scope(t.A, document_id="lava-doc")) == {chunk_id(t.A, "lava-doc", 2, 0)}
    assert idx.count(scope(t.A)) == 2
    # the other tenant's old version is still there
    assert idx.count(scope(t.B, document_id="lava-doc")) == 2


def test_delete_by_document(t: Tenants, collections_and_versions: VectorIndex) -> None:
    idx = collections_and_versions
    idx.delete(scope(t.A, document_id="lava-doc"))
    assert idx.ids(scope(t.A)) == {chunk_id(t.A, "lava-note", 1, 0)}
    assert idx.count(scope(t.B)) == 3


def test_delete_by_collection(t: Tenants, collections_and_versions: VectorIndex) -> None:
    idx = collections_and_versions
    idx.delete(scope(t.A, collection="manuals"))
    assert idx.ids(scope(t.A)) == {chunk_id(t.A, "lava-note", 1, 0)}
    assert idx.count(scope(t.B, collection="manuals")) == 2


# --- retrieve, ids, upsert semantics ---------------------------------------------------------


def test_retrieve_with_and_without_dense(t: Tenants, two_tenants: VectorIndex, embedder) -> None:
    pid = chunk_id(t.A, "origami", 1, 0)
    text = dict(CORPUS)["origami"]
    (plain,) = two_tenants.retrieve([pid])
    assert plain.id == pid
    assert plain.dense is None
    assert plain.payload["text"] == text
    assert plain.payload["tenant"] == t.A
    assert plain.payload["version"] == 1

    (full,) = two_tenants.retrieve([pid], with_dense=True)
    assert full.id == pid
    assert full.payload == plain.payload
    assert full.dense is not None
    expected = embedder.embed_query(text)
    assert len(full.dense) == DIMS
    # cosine collections normalise; HashEmbedder vectors are already unit length
    assert all(math.isclose(a, b, abs_tol=1e-5) for a, b in zip(full.dense, expected, strict=True))


def test_retrieve_several_and_missing_ids(t: Tenants, two_tenants: VectorIndex) -> None:
    wanted = [chunk_id(t.A, "chess", 1, 0), chunk_id(t.B, "chess", 1, 0)]
    missing = str(uuid.uuid4())
    got = two_tenants.retrieve([*wanted, missing])
    assert {p.id for p in got} == set(wanted)
    assert two_tenants.retrieve([]) == []


def test_ids_pages_through_more_than_1000_points(t: Tenants, index: VectorIndex) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    n = 1234
    vectors = rng.normal(size=(n, DIMS)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    expected: set[str] = set()
    points = []
    for i in range(n):
        pid = chunk_id(t.A, f"doc{i % 7}", 1, i)
        expected.add(pid)
        points.append(
            IndexPoint(
                id=pid,
                dense=vectors[i].tolist(),
                sparse=SparseVector([i % 97 + 1], [1.0]),
                payload={
                    "tenant": t.A,
                    "collection": "bulk",
                    "document_id": f"doc{i % 7}",
                    "version": 1,
                },
            )
        )
    # a few points of another tenant must not leak into the listing
    other = [
        IndexPoint(
            id=chunk_id(t.B, "doc0", 1, i),
            dense=vectors[i].tolist(),
            sparse=SparseVector([1], [1.0]),
            payload={"tenant": t.B, "collection": "bulk", "document_id": "doc0", "version": 1},
        )
        for i in range(5)
    ]
    index.upsert(points[:600])
    index.upsert(points[600:] + other)
    got = index.ids(scope(t.A))
    assert len(got) == n
    assert got == expected
    assert index.count(scope(t.A)) == n
    assert index.ids(scope(t.B)) == {p.id for p in other}
    doc0 = {p.id for p in points if p.payload["document_id"] == "doc0"}
    assert index.ids(scope(t.A, document_id="doc0")) == doc0


def test_upsert_same_id_replaces(t: Tenants, index: VectorIndex, embedder, bm25) -> None:
    first = make_point(embedder, bm25, t.A, "volcano", "Volcanoes erupt molten basalt lava.")
    index.upsert([first])
    second = make_point(embedder, bm25, t.A, "volcano", "Glaciers carve fjords slowly.")
    second.payload["collection"] = "renamed"
    assert second.id == first.id
    index.upsert([second])
    assert index.count(scope(t.A)) == 1
    assert index.ids(scope(t.A)) == {first.id}
    (stored,) = index.retrieve([first.id])
    assert stored.payload["text"] == "Glaciers carve fjords slowly."
    assert stored.payload["collection"] == "renamed"
    assert index.count(scope(t.A, collection="default")) == 0
    # the vectors were replaced too: the old text no longer matches lexically
    hits = index.search(None, bm25.query("basalt lava"), scope(t.A), 5, mode="sparse")
    assert hits == []
    hits = index.search(None, bm25.query("glaciers fjords"), scope(t.A), 5, mode="sparse")
    assert [h.id for h in hits] == [first.id]


def test_hybrid_with_stop_word_query_falls_back_to_dense(
    t: Tenants, two_tenants, embedder, bm25
) -> None:
    query = "the of and to is a"
    sparse = bm25.query(query)
    assert sparse.indices == [], "precondition: a query of stop words has no BM25 terms"
    hits = two_tenants.search(embedder.embed_query(query), sparse, scope(t.A), 5, mode="hybrid")
    dense_hits = two_tenants.search(embedder.embed_query(query), None, scope(t.A), 5, mode="dense")
    assert hits, "hybrid search with an empty sparse vector returned nothing"
    assert [h.id for h in hits] == [h.id for h in dense_hits]
    assert all(h.payload["tenant"] == t.A for h in hits)


def test_hybrid_with_empty_sparse_vector_object(t: Tenants, two_tenants, embedder) -> None:
    hits = two_tenants.search(
        embedder.embed_query("molten basalt lava"), SparseVector([], []), scope(t.A), 3
    )
    assert hits and hits[0].payload["document_id"] == "volcano"


def test_sparse_mode_without_terms_returns_nothing(t: Tenants, two_tenants, embedder) -> None:
    hits = two_tenants.search(
        embedder.embed_query("molten basalt lava"),
        SparseVector([], []),
        scope(t.A),
        3,
        mode="sparse",
    )
    assert hits == []


def test_hybrid_without_dense_uses_sparse(t: Tenants, two_tenants, bm25) -> None:
    hits = two_tenants.search(None, bm25.query("honeycomb hives"), scope(t.A), 3, mode="hybrid")
    assert hits and hits[0].payload["document_id"] == "beekeeping"
    assert all(h.payload["tenant"] == t.A for h in hits)


# --- Qdrant Edge specifics ---------------------------------------------------------------------


def test_edge_reopen_keeps_points(t: Tenants, tmp_path: Path, embedder, bm25) -> None:
    path = tmp_path / "shard"
    idx = EdgeIndex.open(path, DIMS)
    idx.upsert(corpus_points(embedder, bm25, t.A))
    idx.delete(scope(t.A, document_id="chess"))
    idx.close()

    reopened = EdgeIndex.open(path, DIMS)
    try:
        assert reopened.count(scope(t.A)) == len(CORPUS) - 1
        assert chunk_id(t.A, "chess", 1, 0) not in reopened.ids(scope(t.A))
        hits = search(reopened, embedder, bm25, "molten basalt lava", scope(t.A), "hybrid")
        assert hits[0].payload["document_id"] == "volcano"
        # filters still work after reload (payload indexes survive)
        assert reopened.count(scope(t.A, document_id="volcano")) == 1
        assert reopened.count(scope(t.B)) == 0
    finally:
        reopened.close()


def test_edge_second_open_in_process_is_busy(tmp_path: Path) -> None:
    path = tmp_path / "shard"
    idx = EdgeIndex.open(path, DIMS)
    try:
        with pytest.raises(Busy) as info:
            EdgeIndex.open(path, DIMS)
        assert str(path) in info.value.message
    finally:
        idx.close()


def test_edge_second_process_gets_busy(tmp_path: Path) -> None:
    path = tmp_path / "shard"
    idx = EdgeIndex.open(path, DIMS)
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from app.errors import Busy\n"
        "from app.index.edge import EdgeIndex\n"
        "try:\n"
        f"    EdgeIndex.open(Path({str(path)!r}), {DIMS})\n"
        "except Busy:\n"
        "    print('BUSY')\n"
        "    sys.exit(3)\n"
        "print('OPENED')\n"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", script],
            cwd=Path(__file__).resolve().parent.parent,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        idx.close()
    assert proc.returncode == 3, (proc.stdout, proc.stderr[-2000:])
    assert "BUSY" in proc.stdout


def test_edge_open_after_other_process_released(tmp_path: Path) -> None:
    """Once the holder closes the shard, another open succeeds."""
    path = tmp_path / "shard"
    EdgeIndex.open(path, DIMS).close()
    again = EdgeIndex.open(path, DIMS)
    again.close()


def test_optimize_keeps_results(t: Tenants, two_tenants: VectorIndex, embedder, bm25) -> None:
    def top(query: str) -> str:
        return search(two_tenants, embedder, bm25, query, scope(t.A), "hybrid")[0].id

    before = {q: top(q) for q in QUERIES}
    two_tenants.optimize()
    two_tenants.optimize()  # a second call with nothing new to index is harmless
    after = {q: top(q) for q in QUERIES}
    assert after == before
