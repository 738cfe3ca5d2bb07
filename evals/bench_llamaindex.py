"""Docent against LlamaIndex's default pipeline: ingestion throughput and search latency.

Run from the repository root (needs the ``bench`` extra: llama-index-vector-stores-qdrant)::

    python -m evals.bench_llamaindex [--quick] [--out evals/results/llamaindex.json]

Both sides use the same embedder instance (all-MiniLM-L6-v2 on ONNX Runtime, Docent's
``services.embedder``); LlamaIndex reaches it through ``DocentEmbedding``, a ``BaseEmbedding``
that calls ``embed_documents`` with LlamaIndex's default ``embed_batch_size`` (10). Docent's
ONNX runtime embeds one passage per model call whatever the batch (padding costs it more than
batching saves), so the batch size changes how texts are grouped into calls, not the model work.
LlamaIndex's global ``Settings`` are never assigned: the embed model is passed explicitly and no
LLM is needed, and the run records that ``Settings`` never resolved an LLM or embed model (it
would default to OpenAI). Everything runs offline.

1. Ingestion: N SciFact abstracts written as .txt files ("title\\n\\ntext"), fed in blocks; in
   each block four steps run in rotating order, so a noisy machine slows each alike:
   a. Docent: ``Services.build`` (Qdrant Edge on disk, SQLite), ``ingestor.receive`` for each
      file, then ``run_pending`` (parse, chunk to ``chunk_tokens`` = 200 MiniLM word pieces with
      30 overlapping, embed one call per document, BM25 sparse vectors, upsert, job state).
   b. LlamaIndex's default: ``SimpleDirectoryReader(input_files=...).load_data()``, then
      ``VectorStoreIndex.from_documents`` into a ``QdrantVectorStore`` on qdrant-client's local
      mode with ``path=`` (on disk, as Docent persists too; ``:memory:`` is the other local mode
      and is compared below). Default transformations: ``SentenceSplitter`` with 1024 tiktoken
      (cl100k) tokens and 200 overlap, which leaves each abstract whole, while MiniLM reads at
      most 256 word pieces: the tail of a long chunk is embedded by nobody (see
      ``chunks_truncated_by_model``). LlamaIndex embeds the node text with its metadata
      ("file_path: ...\\n\\n" + text) and stores the whole node as JSON (``_node_content``) plus
      flat metadata in each Qdrant payload; dense vectors only, no BM25.
   c. The embedding-only floors: each side's exact embedded texts, embedded by the same
      embedder in batches (Docent's ``embedding_batch_size``; LlamaIndex's 10), nothing else.
   The sides chunk differently, so chunks/s alone misleads: the figures include docs/s,
   characters embedded and model word pieces read (capped at 256 a text) per second. Then the
   LlamaIndex nodes, with their vectors, are written once more into a fresh ``path=`` store and
   a ``:memory:`` store (median of 3), to show what the on-disk local mode costs.
2. Search on synthetic points (``make_synthetic``: seeded random unit 384-d vectors, BM25 of
   SciFact abstracts), top 10, SciFact claims embedded once as queries:
   Docent ``EdgeIndex.search`` (tenant filter, dense-only and hybrid RRF, its default), before
   and after ``optimize()`` (HNSW; the app runs it when its queue drains); LlamaIndex's default
   retriever, ``index.as_retriever(similarity_top_k=10).retrieve(QueryBundle(query_str,
   embedding=...))`` over ``QdrantVectorStore`` on ``QdrantClient(":memory:")`` with nodes
   inserted with their vectors (nothing embedded; qdrant-client's local mode is exact brute
   force in numpy); numpy brute force dense and ``NumpyHybrid``. Queries rotate through the
   variants one query at a time, with NumPy's BLAS on one thread (threadpoolctl, if installed:
   OpenBLAS threads woken after each turn of the others cost milliseconds at 10k points; this
   touches the numpy floors and qdrant-client's local mode alike). Recall@10 is against the
   exact numpy dense top 10; hybrid agreement is the share of the top 10 whose exact RRF score
   (NumpyHybrid's) reaches the exact 10th best, as dense-only and BM25-only candidates of equal
   rank tie. Beyond 5,183 points the abstracts repeat with a "(copy k)" suffix, so BM25
   scores of the copies nearly tie and hybrid agreement drops for reasons of order alone.
   Uniformly random vectors are HNSW's worst case, so Docent's dense recall after optimize() is
   low here (docs/benchmarks.md: 1.000 on 5,183 real MiniLM vectors).
3. Memory: VmRSS / VmHWM of this one process, which holds both systems: only deltas across a
   load say something about one of them.

The default run takes about 11 minutes on 2 cores (ingestion ~6, search ~5, of which Edge's
optimize() at 100k points ~1.5); --quick about 2.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from llama_index.core import Settings as LlamaSettings
from llama_index.core.embeddings import BaseEmbedding
from pydantic import PrivateAttr

from app.index import scope
from evals.bench_foundation import (
    DEFAULT_DATA,
    DIMS,
    LIMIT,
    TENANT,
    UPSERT_BATCH,
    NumpyHybrid,
    embed_timed,
    latency,
    load_corpus,
    load_index,
    load_queries,
    log,
    machine,
    make_synthetic,
    memory_mb,
)

DEFAULT_OUT = Path("evals/results/llamaindex.json")
MODEL_CACHE = Path(__file__).resolve().parent.parent / ".cache" / "models"
COLLECTION = "c"
INSERT_BATCH = 2048  # VectorStoreIndex's default insert_batch_size
MEMORY_STEPS = ("before", "after_docent_load", "after_llamaindex_load")
EXTRA_PACKAGES = ("llama-index-vector-stores-qdrant", "llama-index-readers-file", "tiktoken")


class DocentEmbedding(BaseEmbedding):
    """LlamaIndex's embedding seam around a Docent embedder, recording what it is asked."""

    _embedder: Any = PrivateAttr()
    _texts: list[str] = PrivateAttr()
    _queries: int = PrivateAttr(default=0)

    def __init__(self, embedder: Any, **kwargs: Any) -> None:
        super().__init__(model_name=embedder.name, **kwargs)
        self._embedder = embedder
        self._texts = []

    @classmethod
    def class_name(cls) -> str:
        return "DocentEmbedding"

    @property
    def texts(self) -> list[str]:
        return self._texts

    @property
    def queries(self) -> int:
        return self._queries

    def _get_query_embedding(self, query: str) -> list[float]:
        self._queries += 1
        vector: list[float] = self._embedder.embed_query(query)
        return vector

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embeddings([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        self._texts.extend(texts)
        vectors: list[list[float]] = self._embedder.embed_documents(texts)
        return vectors


def llamaindex_defaults_resolved() -> dict[str, bool]:
    """Whether LlamaIndex's lazy global defaults (OpenAI, unless configured) were built."""
    return {
        "llm": LlamaSettings._llm is not None,
        "embed_model": LlamaSettings._embed_model is not None,
    }


def qdrant_store(location: str | Path, name: str) -> tuple[Any, Any]:
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    client = (
        QdrantClient(location=":memory:")
        if location == ":memory:"
        else QdrantClient(path=str(location))
    )
    return client, QdrantVectorStore(client=client, collection_name=name)


def timings(ms: Sequence[float]) -> dict[str, float]:
    return {**latency(ms), "p95_ms": round(float(np.percentile(ms, 95)), 3)}


def rate(count: float, seconds: float) -> float:
    return round(count / seconds, 2) if seconds > 0 else float("nan")


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


def read_tokens(embedder: Any, texts: Sequence[str]) -> dict[str, int]:
    """Word pieces as the embedder counts them, and how many of them the model reads."""
    from app import minilm

    count = embedder.tokenizer()
    cap = minilm.MAX_TOKENS if embedder.name == minilm.NAME else None
    total = read = truncated = 0
    for text in texts:
        n = len(count(text)) + (2 if cap else 0)  # [CLS] and [SEP]
        total += n
        read += min(n, cap) if cap else n
        truncated += bool(cap and n > cap)
    return {"tokens": total, "tokens_read_by_model": read, "chunks_truncated_by_model": truncated}


# --- 1. ingestion ---------------------------------------------------------------------------


def bench_ingestion(
    corpus: list[dict[str, str]],
    n_docs: int,
    block_docs: int,
    settings: Any,
    embedder: Any,
    work: Path,
) -> dict[str, Any]:
    from llama_index.core import SimpleDirectoryReader, StorageContext, VectorStoreIndex
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.core.schema import MetadataMode
    from sqlalchemy import func, select

    from app.db.tables import Chunk
    from app.services import Services
    from ingest.chunk import split
    from ingest.parse import parse_bytes

    src = work / "files"
    src.mkdir(parents=True)
    paths = []
    for doc in corpus[:n_docs]:
        path = src / f"scifact-{doc['_id']}.txt"
        path.write_text(f"{doc['title']}\n\n{doc['text']}\n", encoding="utf-8")
        paths.append(path)
    blocks = [paths[lo : lo + block_docs] for lo in range(0, len(paths), block_docs)]

    services = Services.build(settings, embedder)
    embed_model = DocentEmbedding(embedder)
    li_client, li_store = qdrant_store(work / "llamaindex-qdrant", COLLECTION)
    storage = StorageContext.from_defaults(vector_store=li_store)

    # Each side's embedded texts, cut as its pipeline will cut them, for the floors.
    docent_texts: list[list[str]] = []
    li_texts: list[list[str]] = []
    for block in blocks:
        texts: list[str] = []
        for path in block:
            _, parsed = parse_bytes(path.name, path.read_bytes())
            tokens = embedder.tokenizer()
            drafts = split(parsed, settings.chunk_tokens, settings.chunk_overlap_tokens, tokens)
            texts.extend(c.text for c in drafts)
        docent_texts.append(texts)
        nodes = SentenceSplitter()(SimpleDirectoryReader(input_files=block).load_data())
        li_texts.append([n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes])

    wall = dict.fromkeys(("docent", "llamaindex", "docent_floor", "llamaindex_floor"), 0.0)
    cpu = dict(wall)
    li_vectors: list[np.ndarray] = []

    def timed(name: str, work_fn: Callable[[], None]) -> None:
        w, c = time.perf_counter(), time.process_time()
        work_fn()
        wall[name] += time.perf_counter() - w
        cpu[name] += time.process_time() - c

    def docent(block: list[Path]) -> None:
        for path in block:
            services.ingestor.receive(TENANT, COLLECTION, path.name, path.read_bytes())
        services.ingestor.run_pending()

    def llamaindex(block: list[Path]) -> None:
        docs = SimpleDirectoryReader(input_files=block).load_data()
        VectorStoreIndex.from_documents(docs, storage_context=storage, embed_model=embed_model)

    def floor(texts: list[str], batch: int, keep: bool) -> None:
        _, _, vectors = embed_timed(embedder, texts, batch)
        if keep:
            li_vectors.append(vectors)

    with warnings.catch_warnings():
        # "Payload indexes have no effect in the local Qdrant": LlamaIndex indexes doc_id.
        warnings.filterwarnings("ignore", message="Payload indexes", category=UserWarning)
        for b, block in enumerate(blocks):
            steps: list[tuple[str, Callable[[], None]]] = [
                ("docent", functools.partial(docent, block)),
                ("llamaindex", functools.partial(llamaindex, block)),
                (
                    "docent_floor",
                    functools.partial(floor, docent_texts[b], settings.embedding_batch_size, False),
                ),
                (
                    "llamaindex_floor",
                    functools.partial(floor, li_texts[b], embed_model.embed_batch_size, True),
                ),
            ]
            k = b % len(steps)
            for name, fn in steps[k:] + steps[:k]:
                timed(name, fn)
            log(
                f"ingestion: block {b + 1}/{len(blocks)}; "
                + ", ".join(f"{k} {v:.0f}s" for k, v in wall.items())
                + f" (load {os.getloadavg()[0]:.1f})"
            )

    with services.db.session() as s:
        sql_chunks = int(s.scalar(select(func.count()).select_from(Chunk)) or 0)
    edge_points = services.index.count(scope(TENANT))
    services.close()
    li_points = li_client.count(COLLECTION, exact=True).count
    li_client.close()
    flat_docent = [t for block in docent_texts for t in block]
    flat_li = [t for block in li_texts for t in block]

    def side(name: str, texts: list[str], chunks: int, batch: int) -> dict[str, Any]:
        toks = read_tokens(embedder, texts)
        chars = sum(len(t) for t in texts)
        secs, floor_secs = wall[name], wall[f"{name}_floor"]
        return {
            "chunks": chunks,
            "chunks_per_doc_mean": round(chunks / max(1, n_docs), 2),
            "chars_embedded": chars,
            **toks,
            "seconds": round(secs, 2),
            "cpu_seconds": round(cpu[name], 2),
            "docs_per_s": rate(n_docs, secs),
            "chunks_per_s": rate(chunks, secs),
            "chars_per_s": rate(chars, secs),
            "tokens_read_per_s": rate(toks["tokens_read_by_model"], secs),
            "floor": {
                "batch_size": batch,
                "seconds": round(floor_secs, 2),
                "cpu_seconds": round(cpu[f"{name}_floor"], 2),
                "chunks_per_s": rate(len(texts), floor_secs),
            },
            "ratio_to_floor": ratio(floor_secs, secs),
            "ratio_to_floor_by_cpu_time": ratio(cpu[f"{name}_floor"], cpu[name]),
        }

    d = side("docent", flat_docent, sql_chunks, settings.embedding_batch_size)
    d |= {"edge_points": edge_points, "chunk_tokens": settings.chunk_tokens}
    d["chunk_overlap_tokens"] = settings.chunk_overlap_tokens
    li = side("llamaindex", flat_li, len(embed_model.texts), embed_model.embed_batch_size)
    li |= {
        "qdrant_points": li_points,
        "qdrant_mode": "local, path= (on disk)",
        "floor_texts_match_embedded": embed_model.texts == flat_li,
        "node_parser": "SentenceSplitter(chunk_size=1024, chunk_overlap=200), tiktoken",
    }
    result: dict[str, Any] = {
        "docs": n_docs,
        "blocks": len(blocks),
        "block_docs": block_docs,
        "docent": d,
        "llamaindex": li,
        "ratios_docent_to_llamaindex": {
            k: ratio(d[k], li[k])
            for k in ("docs_per_s", "chunks_per_s", "chars_per_s", "tokens_read_per_s")
        },
        "llamaindex_store_write": store_write(flat_li, np.concatenate(li_vectors), blocks, work),
        "llamaindex_global_defaults_resolved": llamaindex_defaults_resolved(),
    }
    log(
        f"ingestion: docent {d['docs_per_s']} docs/s, {d['chunks_per_s']} chunks/s "
        f"({d['ratio_to_floor']} of its floor); llamaindex {li['docs_per_s']} docs/s, "
        f"{li['chunks_per_s']} chunks/s ({li['ratio_to_floor']} of its floor)"
    )
    return result


def store_write(texts: list[str], vectors: np.ndarray, blocks: list[list[Path]], work: Path) -> Any:
    """The LlamaIndex nodes with their vectors written to a fresh local store, on disk
    (``path=``) and in memory, alternately, three times each: seconds, median."""
    from llama_index.core import SimpleDirectoryReader
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.core.schema import MetadataMode

    nodes = []
    for block in blocks:
        nodes.extend(SentenceSplitter()(SimpleDirectoryReader(input_files=block).load_data()))
    if [n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes] != texts:
        return {"error": "the nodes cut again differ from the embedded texts"}
    for node, vector in zip(nodes, vectors.tolist(), strict=True):
        node.embedding = vector
    secs: dict[str, list[float]] = {"path": [], "memory": []}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Payload indexes", category=UserWarning)
        for rep in range(3):
            for mode in ("path", "memory") if rep % 2 == 0 else ("memory", "path"):
                where = work / f"store-{mode}-{rep}" if mode == "path" else ":memory:"
                client, store = qdrant_store(where, f"w{rep}")
                started = time.perf_counter()
                store.add(nodes)
                secs[mode].append(time.perf_counter() - started)
                client.close()
    out = {f"{m}_s": round(statistics.median(v), 3) for m, v in secs.items()}
    return {"nodes": len(nodes), **out, "path_over_memory": ratio(out["path_s"], out["memory_s"])}


# --- 2. search latency --------------------------------------------------------------------------


def rotate_queries(
    variants: dict[str, Callable[[int], list[int]]], n: int, warmup: int
) -> tuple[dict[str, list[float]], dict[str, list[list[int]]]]:
    """Each query through every variant, the order rotating with the query."""
    names = list(variants)
    for i in range(warmup):
        for name in names:
            variants[name](i)
    ms: dict[str, list[float]] = {k: [] for k in names}
    found: dict[str, list[list[int]]] = {k: [] for k in names}
    for i in range(n):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            started = time.perf_counter()
            hits = variants[name](i)
            ms[name].append((time.perf_counter() - started) * 1000)
            found[name].append(hits)
    return ms, found


def recall(found: list[list[int]], exact: list[list[int]]) -> float:
    return round(
        statistics.fmean(len(set(a) & set(b)) / LIMIT for a, b in zip(found, exact, strict=True)), 3
    )


def rrf_scores(floor: NumpyHybrid, dense: np.ndarray, sparse: Any) -> dict[int, float]:
    """The fused score of every candidate, as ``NumpyHybrid.search`` ranks them."""
    rankings = [floor._top(floor.dense @ dense, floor.prefetch)]
    scores = floor.sparse_scores(sparse)
    if scores is not None:
        hit = np.flatnonzero(scores > 0)
        rankings.append(hit[floor._top(scores[hit], floor.prefetch)])
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, i in enumerate(ranking.tolist(), start=1):
            fused[i] = fused.get(i, 0.0) + 1.0 / (floor.rrf_k + rank)
    return fused


def hybrid_agreement(found: list[list[int]], fused: list[dict[int, float]]) -> float:
    """Share of the top 10 whose exact fused score reaches the exact 10th best. Tie-aware:
    with random dense vectors the dense and BM25 candidates barely meet, so a dense-only and
    a BM25-only candidate of the same rank tie exactly and either may come first."""
    shares = []
    for hits, scores in zip(found, fused, strict=True):
        kth = sorted(scores.values(), reverse=True)[:LIMIT][-1]
        shares.append(sum(scores.get(h, 0.0) >= kth - 1e-12 for h in hits) / LIMIT)
    return round(statistics.fmean(shares), 3)


def search_round(
    variants: dict[str, Callable[[int], list[int]]],
    n_queries: int,
    fused: list[dict[int, float]],
) -> dict[str, dict[str, Any]]:
    with blas_threads(1):
        ms, found = rotate_queries(variants, n_queries, 5)
    out: dict[str, dict[str, Any]] = {}
    for name in variants:
        out[name] = timings(ms[name])
        if "hybrid" in name:
            out[name]["agreement_at_10_with_exact_hybrid"] = hybrid_agreement(found[name], fused)
        else:
            out[name]["recall_at_10_vs_exact_dense"] = recall(found[name], found["numpy_dense"])
    return out


def blas_threads(n: int) -> Any:
    """NumPy's BLAS (used by the floors and by qdrant-client's local mode) on ``n`` threads:
    OpenBLAS threads woken after an idle spell cost milliseconds, and the variants take turns."""
    try:
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(n, user_api="blas")


def load_llamaindex(syn: Any, n: int, embed_model: DocentEmbedding) -> tuple[Any, Any, float]:
    """A VectorStoreIndex on qdrant-client ``:memory:``, fed TextNodes that carry their
    vectors and Docent's payload fields as metadata, in VectorStoreIndex's insert batches."""
    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.core.schema import TextNode

    client, store = qdrant_store(":memory:", COLLECTION)
    started = time.perf_counter()
    storage = StorageContext.from_defaults(vector_store=store)
    index = VectorStoreIndex(nodes=[], storage_context=storage, embed_model=embed_model)
    for lo in range(0, n, INSERT_BATCH):
        nodes = []
        for p in syn.points(lo, min(n, lo + INSERT_BATCH)):
            meta = {k: v for k, v in p.payload.items() if k != "text"}
            nodes.append(
                TextNode(id_=p.id, text=p.payload["text"], metadata=meta, embedding=p.dense)
            )
        index.insert_nodes(nodes)
    return client, index, time.perf_counter() - started


@dataclass
class Queries:
    """SciFact claims embedded once: dense (as lists and as a matrix) and BM25."""

    texts: list[str]
    dense: list[list[float]]
    matrix: np.ndarray
    sparse: list[Any]


def to_ints(ids: Iterable[str]) -> list[int]:
    return [uuid.UUID(i).int - 1 for i in ids]


def search_variants(
    label: str, index: Any, retriever: Any, floor: NumpyHybrid, q: Queries
) -> dict[str, Callable[[int], list[int]]]:
    """One search per variant for query ``i``, as synthetic point numbers."""
    from llama_index.core.schema import QueryBundle

    where = scope(TENANT)

    def docent(mode: str, i: int) -> list[int]:
        sparse = q.sparse[i] if mode == "hybrid" else None
        return to_ints(h.id for h in index.search(q.dense[i], sparse, where, LIMIT, mode))

    def llamaindex(i: int) -> list[int]:
        bundle = QueryBundle(query_str=q.texts[i], embedding=q.dense[i])
        return to_ints(r.node.node_id for r in retriever.retrieve(bundle))

    return {
        f"docent_dense_{label}": functools.partial(docent, "dense"),
        f"docent_hybrid_{label}": functools.partial(docent, "hybrid"),
        "llamaindex_dense": llamaindex,
        "numpy_dense": lambda i: floor._top(floor.dense @ q.matrix[i], LIMIT).tolist(),
        "numpy_hybrid": lambda i: floor.search(q.matrix[i], q.sparse[i], LIMIT),
    }


def search_size(
    syn: Any, n: int, q: Queries, embed_model: DocentEmbedding, optimize: bool, work: Path
) -> dict[str, Any]:
    from app.index.edge import EdgeIndex

    mem: dict[str, Any] = {"before": memory_mb()}
    floor = NumpyHybrid(syn, n)
    index = EdgeIndex.open(work / f"edge-{n}", DIMS)
    edge_s = load_index(index, syn, 0, n)
    mem["after_docent_load"] = memory_mb()
    with warnings.catch_warnings():
        # "Local mode is not recommended for collections with more than 20,000 points".
        warnings.filterwarnings("ignore", message="Local mode", category=UserWarning)
        client, li_index, li_s = load_llamaindex(syn, n, embed_model)
        mem["after_llamaindex_load"] = memory_mb()
        retriever = li_index.as_retriever(similarity_top_k=LIMIT)
        log(f"search {n}: loaded docent {edge_s:.1f}s, llamaindex {li_s:.1f}s")
        fused = [rrf_scores(floor, q.matrix[i], q.sparse[i]) for i in range(len(q.texts))]
        rounds = {
            "before_optimize": search_round(
                search_variants("full_scan", index, retriever, floor, q), len(q.texts), fused
            )
        }
        opt_s = None
        if optimize:
            started = time.perf_counter()
            index.optimize()
            opt_s = round(time.perf_counter() - started, 1)
            mem["after_docent_optimize"] = memory_mb()
            rounds["after_optimize"] = search_round(
                search_variants("optimized", index, retriever, floor, q), len(q.texts), fused
            )
    label = "optimized" if optimize else "full_scan"
    info = index._shard.info()
    head = rounds["after_optimize" if optimize else "before_optimize"]
    p50 = {k.replace(f"_{label}", ""): float(v["p50_ms"]) for k, v in head.items()}
    entry = {
        "points": n,
        "load_s": {"docent_edge": round(edge_s, 2), "llamaindex": round(li_s, 2)},
        "load_points_per_s": {"docent_edge": rate(n, edge_s), "llamaindex": rate(n, li_s)},
        "docent_optimize_s": opt_s,
        "docent_segments": info.segments_count,
        "docent_hnsw_indexed_vectors": info.indexed_vectors_count,
        "blas_threads_during_search": 1 if importlib.util.find_spec("threadpoolctl") else None,
        "docent_edge_points": index.count(scope(TENANT)),
        "llamaindex_qdrant_points": client.count(COLLECTION, exact=True).count,
        "llamaindex_query_embeddings_computed": embed_model.queries,
        "memory_mb": mem,
        **rounds,
        "ratios_p50": {
            "state": f"docent {label}",
            "llamaindex_dense_over_docent_dense": ratio(
                p50["llamaindex_dense"], p50["docent_dense"]
            ),
            "llamaindex_dense_over_docent_hybrid": ratio(
                p50["llamaindex_dense"], p50["docent_hybrid"]
            ),
            "docent_dense_over_numpy_dense": ratio(p50["docent_dense"], p50["numpy_dense"]),
            "docent_hybrid_over_numpy_hybrid": ratio(p50["docent_hybrid"], p50["numpy_hybrid"]),
            "llamaindex_dense_over_numpy_dense": ratio(p50["llamaindex_dense"], p50["numpy_dense"]),
        },
    }
    log(f"search {n}: p50 ms {p50}")
    index.close()
    client.close()
    shutil.rmtree(work / f"edge-{n}", ignore_errors=True)
    return entry


def bench_search(
    corpus: list[dict[str, str]],
    query_texts: list[str],
    embedder: Any,
    sizes: list[int],
    n_queries: int,
    optimize: bool,
    seed: int,
    work: Path,
) -> dict[str, Any]:
    from app.embeddings import embed_queries
    from app.index.sparse import Bm25Encoder

    texts = query_texts[:n_queries]
    dense = embed_queries(embedder, texts)
    bm25 = Bm25Encoder()
    q = Queries(texts, dense, np.asarray(dense, np.float32), [bm25.query(t) for t in texts])
    started = time.perf_counter()
    syn = make_synthetic(corpus, max(sizes), seed)
    log(f"search: {max(sizes)} synthetic points in {time.perf_counter() - started:.1f}s")
    embed_model = DocentEmbedding(embedder)
    per_size = {str(n): search_size(syn, n, q, embed_model, optimize, work) for n in sizes}
    return {
        "queries": len(texts),
        "limit": LIMIT,
        "upsert_batch": {"docent": UPSERT_BATCH, "llamaindex": INSERT_BATCH},
        "per_size": per_size,
    }


# --- report -------------------------------------------------------------------------------------


def summary_rows(results: dict[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    ing = results.get("ingestion")
    if ing:
        rows.append((f"ingestion, {ing['docs']} SciFact abstracts", ""))
        for name in ("docent", "llamaindex"):
            s = ing[name]
            rows.append(
                (
                    f"  {name}",
                    f"{s['docs_per_s']} docs/s, {s['chunks_per_s']} chunks/s ({s['chunks']} "
                    f"chunks, {s['chars_embedded']:,} chars, {s['tokens_read_by_model']:,} "
                    f"tokens read, {s['chunks_truncated_by_model']} truncated)",
                )
            )
            rows.append(
                (
                    f"  {name} embedding-only floor",
                    f"{s['floor']['chunks_per_s']} chunks/s; pipeline = {s['ratio_to_floor']} "
                    f"of floor ({s['ratio_to_floor_by_cpu_time']} by CPU time)",
                )
            )
        r = ing["ratios_docent_to_llamaindex"]
        rows.append(
            (
                "  docent / llamaindex",
                f"docs/s {r['docs_per_s']}, chunks/s {r['chunks_per_s']}, "
                f"tokens read/s {r['tokens_read_per_s']}",
            )
        )
        w = ing["llamaindex_store_write"]
        if "path_s" in w:
            rows.append(
                (
                    f"  llamaindex store.add of {w['nodes']} nodes",
                    f"path= {w['path_s']}s, :memory: {w['memory_s']}s ({w['path_over_memory']}x)",
                )
            )
    for n, e in results.get("search", {}).get("per_size", {}).items():
        rows.append((f"search, {int(n):,} points (p50 / p95 ms, agreement@10)", ""))
        rows.append(
            (
                "  load",
                f"docent {e['load_s']['docent_edge']}s, llamaindex {e['load_s']['llamaindex']}s"
                + (
                    f", docent optimize() {e['docent_optimize_s']}s"
                    if e["docent_optimize_s"]
                    else ""
                ),
            )
        )
        for rnd in ("before_optimize", "after_optimize"):
            for name, f in e.get(rnd, {}).items():
                if name.startswith("docent") or rnd == "before_optimize":
                    agree = f.get(
                        "recall_at_10_vs_exact_dense", f.get("agreement_at_10_with_exact_hybrid")
                    )
                    rows.append((f"  {name}", f"{f['p50_ms']} / {f['p95_ms']}, {agree}"))
        r = e["ratios_p50"]
        rows.append(
            (
                f"  p50 ratios ({r['state']})",
                f"llamaindex/docent dense {r['llamaindex_dense_over_docent_dense']}, "
                f"llamaindex/docent hybrid {r['llamaindex_dense_over_docent_hybrid']}, "
                f"docent dense/numpy {r['docent_dense_over_numpy_dense']}, "
                f"llamaindex/numpy {r['llamaindex_dense_over_numpy_dense']}",
            )
        )
        rss = [e["memory_mb"][k]["VmRSS"] for k in MEMORY_STEPS]
        rows.append(
            (
                "  VmRSS growth while loading",
                f"docent {rss[1] - rss[0]:.0f} MiB, llamaindex {rss[2] - rss[1]:.0f} MiB",
            )
        )
    mem = results["meta"].get("memory_mb_at_end", {})
    rows.append(
        ("memory (whole process)", f"VmRSS {mem.get('VmRSS')} MiB, VmHWM {mem.get('VmHWM')} MiB")
    )
    return rows


def print_table(rows: list[tuple[str, str]]) -> None:
    width = max(len(a) for a, _ in rows)
    print()
    for a, b in rows:
        print(f"{a:<{width}}  {b}")
    print(flush=True)


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m evals.bench_llamaindex",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="200 documents, 10k points, 100 queries")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="SciFact (BEIR layout)")
    p.add_argument("--docs", type=int, help="documents to ingest (default 1000; quick 200)")
    p.add_argument("--block-docs", type=int, help="documents per block (default 50; quick 25)")
    p.add_argument(
        "--sizes", help="comma-separated point counts (default 10000,100000; quick 10000)"
    )
    p.add_argument(
        "--queries", type=int, help="queries per latency figure (default 200; quick 100)"
    )
    p.add_argument(
        "--embedder",
        choices=("minilm", "hash"),
        default="minilm",
        help="'hash' is Docent's instant test embedder, for smoke tests only",
    )
    p.add_argument("--model-cache", type=Path, default=MODEL_CACHE, help="exported ONNX model")
    p.add_argument("--no-optimize", action="store_true", help="skip EdgeIndex.optimize()")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip", default="", help="comma-separated: ingestion,search")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    args = parse_args(argv)
    docs = args.docs or (200 if args.quick else 1000)
    block_docs = args.block_docs or (25 if args.quick else 50)
    sizes = (
        [int(s) for s in args.sizes.split(",")]
        if args.sizes
        else [10_000]
        if args.quick
        else [10_000, 100_000]
    )
    n_queries = args.queries or (100 if args.quick else 200)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}

    from app.embeddings import build_embedder
    from app.settings import Settings

    meta = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m evals.bench_llamaindex "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "quick": args.quick,
        "machine": machine(),
    }
    for name in EXTRA_PACKAGES:
        try:
            meta["machine"]["packages"][name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            meta["machine"]["packages"][name] = "missing"
    began = time.perf_counter()
    results: dict[str, Any] = {"meta": meta}
    corpus = load_corpus(args.data)
    query_texts = list(load_queries(args.data).values())
    tmp = Path(tempfile.mkdtemp(prefix="docent-bench-llamaindex-"))
    try:
        settings = Settings(
            _env_file=None,
            data_dir=tmp / "data",
            embedder=args.embedder,
            ingest_own_docs=False,
            model_cache=args.model_cache,
        )
        started = time.perf_counter()
        embedder = build_embedder(settings)
        embedder.embed_documents(["warm-up"] * 4)
        meta["embedder"] = {
            "name": embedder.name,
            "load_s": round(time.perf_counter() - started, 2),
        }
        meta["memory_mb_after_model"] = memory_mb()
        log(f"embedder {embedder.name} ready; {len(corpus)} abstracts, {len(query_texts)} queries")
        if "ingestion" not in skip:
            load0 = os.getloadavg()
            results["ingestion"] = bench_ingestion(
                corpus, docs, block_docs, settings, embedder, tmp
            )
            results["ingestion"]["load_avg"] = [load0, os.getloadavg()]
            meta["memory_mb_after_ingestion"] = memory_mb()
        if "search" not in skip:
            load0 = os.getloadavg()
            results["search"] = bench_search(
                corpus,
                query_texts,
                embedder,
                sizes,
                n_queries,
                not args.no_optimize,
                args.seed,
                tmp,
            )
            results["search"]["load_avg"] = [load0, os.getloadavg()]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    meta["memory_mb_at_end"] = memory_mb()
    meta["llamaindex_global_defaults_resolved"] = llamaindex_defaults_resolved()
    meta["wall_s"] = round(time.perf_counter() - began, 1)
    rows = summary_rows(results)
    results["summary"] = [{"figure": a, "value": b} for a, b in rows]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    print_table(rows)
    log(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
