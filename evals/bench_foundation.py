"""Foundation benchmark: ingestion throughput, search latency and retrieval quality.

Run from the repository root::

    python -m evals.bench_foundation [--quick] [--out evals/results/foundation.json]

Sections
  1. Ingestion: N SciFact abstracts as .txt files through the real pipeline (Services.build
     with the default settings: MiniLM on the default runtime, Qdrant Edge, SQLite; receive +
     run_pending), chunks/s, against the embedding-only floor: the same chunk texts embedded
     by the same embedder instance in batches of ``embedding_batch_size``. Pipeline and floor
     are interleaved in blocks of documents so a noisy, shared machine slows both alike. Also:
     the floor with one embed call per document (what the pipeline does), and the MiniLM
     runtimes side by side on a sample (ONNX float32, fastembed on the same ONNX graph,
     PyTorch float32, PyTorch bfloat16: passages/s, query latency, cosine against PyTorch float32).
  2. Search latency on synthetic points (seeded random unit dense vectors, BM25 of SciFact
     abstracts repeated with small suffixes, payloads shaped like the real ones): EdgeIndex
     before and after ``optimize()`` (which the app runs when the ingestion queue drains),
     QdrantServerIndex on qdrant-client's local mode (":memory:"), and a numpy/scipy
     brute-force floor (cosine + BM25 with IDF, RRF). Then "search incl. query embedding (no
     HTTP)" -- embed_query + BM25 query + EdgeIndex.search -- in a fresh process that loads
     the model as the app does, which also reports its resident memory.
  3. Retrieval quality: nDCG@10 on the SciFact training claims, one point per abstract
     (title + text), for dense, sparse and hybrid search through EdgeIndex; then the same
     with an HNSW index forced on those real vectors (dense recall@10 against exact search).

The SciFact files come from /work/shared/data/scifact (``--data``). Figures go to stdout and to
the JSON file named by ``--out``.
"""

from __future__ import annotations

import argparse
import functools
import gc
import hashlib
import importlib.metadata
import json
import logging
import math
import multiprocessing
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from app.index import IndexPoint, SparseVector, scope

DEFAULT_DATA = Path("/work/shared/data/scifact")
DEFAULT_OUT = Path("evals/results/foundation.json")
DIMS = 384
TENANT = "t"
COLLECTION = "c"
UPSERT_BATCH = 1000
LIMIT = 10
LOCAL_MID_SIZE = 50_000
# (runtime, precision) pairs compared in section 1; the first PyTorch float32 is the reference.
VARIANTS = (
    ("torch", "float32"),
    ("onnx", "float32"),
    ("fastembed", "float32"),
    ("torch", "bfloat16"),
)

_STARTED = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - _STARTED:7.1f}s] {msg}", flush=True)


# --- small helpers --------------------------------------------------------------------------


def memory_mb() -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of this process, in MiB."""
    out: dict[str, float] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def latency(ms: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(ms, dtype=np.float64)
    return {
        "n": len(ms),
        "p50_ms": round(float(np.percentile(arr, 50)), 3),
        "p99_ms": round(float(np.percentile(arr, 99)), 3),
        "mean_ms": round(float(arr.mean()), 3),
        "max_ms": round(float(arr.max()), 3),
    }


def load_corpus(data: Path) -> list[dict[str, str]]:
    with (data / "corpus.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_queries(data: Path) -> dict[str, str]:
    with (data / "queries.jsonl").open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return {str(r["_id"]): str(r["text"]) for r in rows}


def load_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f):
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3:
                continue
            if n == 0 and not parts[2].strip().lstrip("-").isdigit():
                continue  # the header line: query-id, corpus-id, score
            qrels.setdefault(parts[0], {})[parts[1]] = int(parts[2])
    return qrels


def ndcg_at_k(ranked: Sequence[str], relevant: set[str], k: int = 10) -> float:
    """Binary-relevance nDCG@k with the log2(rank + 1) discount."""
    dcg = sum(1.0 / math.log2(i + 2) for i, d in enumerate(ranked[:k]) if d in relevant)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(relevant), k)))
    return dcg / ideal if ideal > 0 else 0.0


def unit_ids(n: int) -> str:
    return str(uuid.UUID(int=n + 1))


def package_versions() -> dict[str, str]:
    out = {}
    for name in (
        "qdrant-edge-py",
        "qdrant-client",
        "torch",
        "sentence-transformers",
        "numpy",
        "scipy",
        "llama-index-core",
        "onnxruntime",
    ):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def machine() -> dict[str, Any]:
    cpu = "unknown"
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
        )
    except OSError:
        commit, dirty = "unknown", False
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "amx_bf16": "amx_bf16" in flags,
        "load_avg_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "git_commit": commit,
        "git_dirty": dirty,
        "packages": package_versions(),
    }


# --- 1. ingestion -----------------------------------------------------------------------------


def load_minilm(runtime: str, precision: str, cache: Path, batch: int) -> Any:
    from app import minilm

    if runtime == "fastembed":
        from app.fastembed_embedder import FastEmbedEmbedder

        return FastEmbedEmbedder("", cache, 0, batch)

    return minilm.load(runtime, cache, precision, 0, batch)


def true_token_count(text: str) -> int:
    """Word pieces in ``text`` by the model's own tokenizer, without padding or truncation."""
    from tokenizers import Tokenizer

    from app import minilm

    tok = Tokenizer.from_file(str(minilm.model_dir() / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    return len(tok.encode(text, add_special_tokens=False).ids)


def embed_timed(embedder: Any, texts: list[str], batch: int) -> tuple[float, float, np.ndarray]:
    """Wall and CPU seconds to embed ``texts`` in batches of ``batch``, and the vectors."""
    out: list[list[float]] = []
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(texts), batch):
        out.extend(embedder.embed_documents(texts[i : i + batch]))
    return time.perf_counter() - wall, time.process_time() - cpu, np.asarray(out, np.float32)


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1, norms)


def query_p50_ms(embedder: Any, queries: list[str]) -> float:
    embedder.embed_query(queries[0])
    ms = []
    for q in queries:
        started = time.perf_counter()
        embedder.embed_query(q)
        ms.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(ms), 2)


def bench_ingestion(
    corpus: list[dict[str, str]],
    query_texts: list[str],
    n_docs: int,
    block_docs: int,
    runtime: str | None,
    precision: str,
    sample: int,
    sweep: Sequence[int],
    cache: Path,
    work: Path,
) -> tuple[dict[str, Any], Any]:
    from sqlalchemy import func, select

    from app.db.tables import Chunk, Job
    from app.services import Services
    from app.settings import Settings
    from ingest.chunk import split
    from ingest.parse import parse_bytes

    docs = corpus[:n_docs]
    src = work / "files"
    src.mkdir(parents=True)
    paths = []
    for d in docs:
        path = src / f"scifact-{d['_id']}.txt"
        path.write_text(f"{d['title']}\n\n{d['text']}\n", encoding="utf-8")
        paths.append(path)

    options: dict[str, Any] = {
        "_env_file": None,
        "data_dir": work / "data",
        "embedder": "minilm",
        "ingest_own_docs": False,
        "embedding_precision": precision,
        "model_cache": cache,
    }
    if runtime:
        options["embedding_runtime"] = runtime
    settings = Settings(**options)
    started = time.perf_counter()
    services = Services.build(settings)
    build_s = time.perf_counter() - started
    embedder = services.embedder
    batch = settings.embedding_batch_size
    used = (settings.embedding_runtime, embedder.precision)
    log(
        f"ingestion: Services.build {build_s:.1f}s (includes a first-run ONNX export), "
        f"embedder {embedder.name} {used}, batch {batch}"
    )

    # The chunk-sizing token counter, before and after the model's first embedding call.
    probe = corpus[0]["text"]
    fresh = len(embedder.tokenizer()(probe))
    embedder.embed_documents([probe] * 4)  # warm-up
    counter = {
        "probe_true_tokens": true_token_count(probe),
        "counted_before_first_embed": fresh,
        "counted_after_first_embed": len(embedder.tokenizer()(probe)),
    }
    counter["ok"] = len(set(counter.values())) == 1
    if not counter["ok"]:
        log(f"ingestion: WARNING the embedder's token counter is wrong: {counter}")

    # The chunk texts exactly as the pipeline will cut them.
    started = time.perf_counter()
    per_doc: list[list[str]] = []
    for path in paths:
        _, parsed = parse_bytes(path.name, path.read_bytes())
        drafts = split(
            parsed, settings.chunk_tokens, settings.chunk_overlap_tokens, embedder.tokenizer()
        )
        per_doc.append([c.text for c in drafts])
    parse_split_s = time.perf_counter() - started
    texts = [t for doc in per_doc for t in doc]
    log(f"ingestion: {len(docs)} docs -> {len(texts)} chunks (parse+split {parse_split_s:.1f}s)")

    # Interleaved in blocks, alternating which goes first, so that the noise of a shared
    # machine falls on the pipeline and the floors alike.
    wall = {"pipeline": 0.0, "receive": 0.0, "floor": 0.0, "per_doc": 0.0}
    cpu = {"pipeline": 0.0, "floor": 0.0, "per_doc": 0.0}
    jobs = 0

    def run_floor(block_texts: list[str]) -> None:
        w, c, _ = embed_timed(embedder, block_texts, batch)
        wall["floor"] += w
        cpu["floor"] += c

    def run_per_doc(block: list[list[str]]) -> None:
        w, c = time.perf_counter(), time.process_time()
        for doc in block:
            if doc:
                embedder.embed_documents(doc)
        wall["per_doc"] += time.perf_counter() - w
        cpu["per_doc"] += time.process_time() - c

    def run_pipeline(block_paths: list[Path]) -> None:
        nonlocal jobs
        w, c = time.perf_counter(), time.process_time()
        for path in block_paths:
            services.ingestor.receive(TENANT, COLLECTION, path.name, path.read_bytes())
        wall["receive"] += time.perf_counter() - w
        jobs += services.ingestor.run_pending()
        wall["pipeline"] += time.perf_counter() - w
        cpu["pipeline"] += time.process_time() - c

    blocks = range(0, len(paths), block_docs)
    for b, lo in enumerate(blocks):
        hi = lo + block_docs
        steps: list[Callable[[], None]] = [
            functools.partial(run_floor, [t for doc in per_doc[lo:hi] for t in doc]),
            functools.partial(run_pipeline, paths[lo:hi]),
            functools.partial(run_per_doc, per_doc[lo:hi]),
        ]
        for step in steps if b % 2 == 0 else steps[::-1]:
            step()
        log(
            f"ingestion: block {b + 1}/{len(blocks)}; so far pipeline {wall['pipeline']:.0f}s, "
            f"floor {wall['floor']:.0f}s, one call per doc {wall['per_doc']:.0f}s "
            f"(load {os.getloadavg()[0]:.1f})"
        )

    with services.db.session() as s:
        sql_texts = sorted(s.scalars(select(Chunk.text)))
        statuses = {
            str(k): int(v)
            for k, v in s.execute(select(Job.status, func.count()).group_by(Job.status))
        }
    chunks = len(sql_texts)
    n_texts = len(texts)
    pipeline_rate = chunks / wall["pipeline"]
    floor = n_texts / wall["floor"]
    per_doc_rate = n_texts / wall["per_doc"]
    log(
        f"ingestion: pipeline {pipeline_rate:.1f} chunks/s, floor {floor:.1f}, one call per "
        f"document {per_doc_rate:.1f}; jobs {statuses}"
    )
    result: dict[str, Any] = {
        "docs": len(docs),
        "chunks": chunks,
        "chunks_per_doc_mean": round(chunks / max(1, len(docs)), 2),
        "chunk_texts_match_sql": sql_texts == sorted(texts),
        "job_statuses": statuses,
        "jobs_run": jobs,
        "token_counter": counter,
        "embedder": embedder.name,
        "runtime": used[0],
        "precision": used[1],
        "batch_size": batch,
        "chunk_tokens": settings.chunk_tokens,
        "blocks": len(blocks),
        "block_docs": block_docs,
        "services_build_s": round(build_s, 2),
        "parse_split_s": round(parse_split_s, 2),
        "pipeline_s": round(wall["pipeline"], 2),
        "receive_s": round(wall["receive"], 2),
        "floor_s": round(wall["floor"], 2),
        "one_call_per_doc_s": round(wall["per_doc"], 2),
        "pipeline_chunks_per_s": round(pipeline_rate, 2),
        "floor_chunks_per_s": round(floor, 2),
        "floor_one_call_per_doc_chunks_per_s": round(per_doc_rate, 2),
        "ratio_pipeline_to_floor": round(pipeline_rate / floor, 3),
        "ratio_pipeline_to_one_call_per_doc": round(pipeline_rate / per_doc_rate, 3),
        "cpu_s": {k: round(v, 2) for k, v in cpu.items()},
        "ratio_pipeline_to_floor_by_cpu_time": round(
            (chunks / cpu["pipeline"]) / (n_texts / cpu["floor"]), 3
        ),
    }

    # The runtimes side by side on a sample of the same chunk texts.
    sample_texts = texts[: min(sample, len(texts))]
    sample_queries = query_texts[:100]
    variants: dict[str, Any] = {}
    vectors: dict[str, np.ndarray] = {}
    for rt, prec in VARIANTS:
        key = f"{rt}-{prec}"
        if (rt, prec) == used:
            model = embedder
        else:
            started = time.perf_counter()
            model = load_minilm(rt, prec, cache, batch)
            log(f"ingestion: loaded MiniLM {key} in {time.perf_counter() - started:.1f}s")
            model.embed_documents(sample_texts[:batch])  # warm-up
        seconds, _, vectors[key] = embed_timed(model, sample_texts, batch)
        by_batch = {str(batch): round(len(sample_texts) / seconds, 2)}
        for size in sweep:
            if size != batch:
                secs, _, _ = embed_timed(model, sample_texts, size)
                by_batch[str(size)] = round(len(sample_texts) / secs, 2)
        variants[key] = {
            "passages_per_s": by_batch[str(batch)],
            "passages_per_s_by_batch": by_batch,
            "query_p50_ms": query_p50_ms(model, sample_queries),
            "pipeline_default": (rt, prec) == used,
        }
        if model is not embedder:
            del model
            gc.collect()
    reference = f"{VARIANTS[0][0]}-{VARIANTS[0][1]}"
    ref = unit_rows(vectors[reference])
    for key, vecs in vectors.items():
        norms = np.linalg.norm(vecs, axis=1)
        variants[key]["max_norm_deviation"] = round(float(np.abs(norms - 1).max()), 5)
        cos = np.sum(unit_rows(vecs) * ref, axis=1)
        variants[key]["mean_cosine_vs_" + reference] = round(float(cos.mean()), 5)
        variants[key]["min_cosine_vs_" + reference] = round(float(cos.min()), 5)
        log(
            f"ingestion: {key}: {variants[key]['passages_per_s']:.1f} passages/s, query p50 "
            f"{variants[key]['query_p50_ms']} ms, cosine vs {reference} mean "
            f"{cos.mean():.5f} min {cos.min():.5f}"
        )
    result["runtimes"] = {"sample_chunks": len(sample_texts), "queries": 100, **variants}
    del vectors
    services.close()
    return result, embedder


# --- 2. search latency ------------------------------------------------------------------------


@dataclass
class Synthetic:
    """``n`` points: seeded random unit dense vectors, BM25 vectors of SciFact abstracts."""

    corpus: list[dict[str, str]]
    dense: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray

    @property
    def size(self) -> int:
        return int(self.dense.shape[0])

    def text(self, i: int) -> str:
        base = self.corpus[i % len(self.corpus)]["text"]
        copy = i // len(self.corpus)
        return base if copy == 0 else f"{base} (copy {copy})"

    def sparse(self, i: int) -> SparseVector:
        lo, hi = int(self.indptr[i]), int(self.indptr[i + 1])
        return SparseVector(self.indices[lo:hi].tolist(), self.values[lo:hi].tolist())

    def points(self, lo: int, hi: int) -> list[IndexPoint]:
        dense = self.dense[lo:hi].tolist()
        out = []
        for k, i in enumerate(range(lo, hi)):
            text = self.text(i)
            doc = self.corpus[i % len(self.corpus)]
            payload = {
                "tenant": TENANT,
                "collection": COLLECTION,
                "document_id": str(uuid.UUID(int=(1 << 64) + i)),
                "version": 1,
                "n": 0,
                "page": None,
                "start": 0,
                "end": len(text),
                "text": text,
                "title": doc["title"],
                "content_hash": hashlib.sha256(text.encode()).hexdigest(),
            }
            out.append(IndexPoint(unit_ids(i), dense[k], self.sparse(i), payload))
        return out


def make_synthetic(corpus: list[dict[str, str]], n: int, seed: int) -> Synthetic:
    from app.index.sparse import Bm25Encoder

    rng = np.random.default_rng(seed)
    dense = rng.standard_normal((n, DIMS), dtype=np.float32)
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    bm25 = Bm25Encoder()
    syn = Synthetic(corpus, dense, np.zeros(n + 1, np.int64), np.empty(0), np.empty(0))
    idx_parts: list[np.ndarray] = []
    val_parts: list[np.ndarray] = []
    for i in range(n):
        v = bm25.document(syn.text(i))
        idx_parts.append(np.asarray(v.indices, dtype=np.int64))
        val_parts.append(np.asarray(v.values, dtype=np.float32))
        syn.indptr[i + 1] = syn.indptr[i] + len(v.indices)
    syn.indices = np.concatenate(idx_parts)
    syn.values = np.concatenate(val_parts)
    return syn


class NumpyHybrid:
    """Exact brute force: cosine over all dense vectors, BM25 (document weights x IDF) over
    all sparse vectors, each cut to ``prefetch`` candidates, fused with RRF."""

    def __init__(self, syn: Synthetic, n: int, rrf_k: int = 60, prefetch: int = 50) -> None:
        from scipy import sparse as sp

        self.dense = syn.dense[:n]
        nnz = int(syn.indptr[n])
        raw = syn.indices[:nnz]
        self.vocab = np.unique(raw)
        cols = np.searchsorted(self.vocab, raw)
        matrix = sp.csr_matrix(
            (syn.values[:nnz], cols, syn.indptr[: n + 1]), shape=(n, len(self.vocab))
        )
        self.matrix = matrix.tocsc()
        df = np.diff(self.matrix.indptr).astype(np.float64)
        # Qdrant's IDF modifier: ln(1 + (N - df + 0.5) / (df + 0.5)).
        self.idf = np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)
        self.rrf_k = rrf_k
        self.prefetch = prefetch

    @staticmethod
    def _top(scores: np.ndarray, k: int) -> np.ndarray:
        n = len(scores)
        part = np.argpartition(-scores, k)[:k] if k < n else np.arange(n)
        return part[np.argsort(-scores[part], kind="stable")]

    def sparse_scores(self, sparse: SparseVector) -> np.ndarray | None:
        q_idx = np.asarray(sparse.indices, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.vocab, q_idx), len(self.vocab) - 1)
        known = self.vocab[pos] == q_idx
        if not known.any():
            return None
        cols = pos[known]
        weights = self.idf[cols] * np.asarray(sparse.values, dtype=np.float32)[known]
        return np.asarray(self.matrix[:, cols] @ weights).ravel()

    def search(self, dense: np.ndarray, sparse: SparseVector, limit: int) -> list[int]:
        dense_top = self._top(self.dense @ dense, self.prefetch)
        sparse_top: np.ndarray = np.empty(0, dtype=np.int64)
        scores = self.sparse_scores(sparse)
        if scores is not None:
            hit = np.flatnonzero(scores > 0)
            sparse_top = hit[self._top(scores[hit], self.prefetch)]
        fused: dict[int, float] = {}
        for ranking in (dense_top, sparse_top):
            for rank, i in enumerate(ranking.tolist(), start=1):
                fused[i] = fused.get(i, 0.0) + 1.0 / (self.rrf_k + rank)
        return sorted(fused, key=lambda i: -fused[i])[:limit]


def load_index(index: Any, syn: Synthetic, lo: int, hi: int) -> float:
    started = time.perf_counter()
    for i in range(lo, hi, UPSERT_BATCH):
        index.upsert(syn.points(i, min(hi, i + UPSERT_BATCH)))
    return time.perf_counter() - started


def time_searches(
    index: Any,
    qdense: list[list[float]],
    qsparse: list[SparseVector],
    n: int,
    warmup: int,
) -> tuple[list[float], list[list[int]]]:
    where = scope(TENANT)
    for i in range(min(warmup, len(qdense))):
        index.search(qdense[i], qsparse[i], where, LIMIT, "hybrid")
    ms: list[float] = []
    found: list[list[int]] = []
    for i in range(min(n, len(qdense))):
        started = time.perf_counter()
        hits = index.search(qdense[i], qsparse[i], where, LIMIT, "hybrid")
        ms.append((time.perf_counter() - started) * 1000)
        found.append([uuid.UUID(h.id).int - 1 for h in hits])
    return ms, found


def overlap(a: list[list[int]], b: list[list[int]]) -> float:
    pairs = list(zip(a, b, strict=False))
    if not pairs:
        return float("nan")
    return statistics.fmean(len(set(x) & set(y)) / max(1, len(y)) for x, y in pairs)


def agreement(
    index: Any,
    floor: NumpyHybrid,
    qdense: list[list[float]],
    qdense_np: np.ndarray,
    qsparse: list[SparseVector],
    n: int,
) -> dict[str, float]:
    """How far the index's dense-only and BM25-only top 10 agree with exact brute force.
    BM25 is compared tie-aware: the synthetic corpus repeats each abstract with a small suffix,
    so near-equal scores are common and their order is arbitrary."""
    where = scope(TENANT)
    dense_hits: list[float] = []
    sparse_hits: list[float] = []
    for i in range(min(n, len(qdense))):
        exact = set(floor._top(floor.dense @ qdense_np[i], LIMIT).tolist())
        got = index.search(qdense[i], None, where, LIMIT, "dense")
        dense_hits.append(len(exact & {uuid.UUID(h.id).int - 1 for h in got}) / LIMIT)
        scores = floor.sparse_scores(qsparse[i])
        if scores is None:
            continue
        kth = float(np.sort(scores)[-LIMIT])
        got = index.search(None, qsparse[i], where, LIMIT, "sparse")
        ok = [scores[uuid.UUID(h.id).int - 1] >= kth * (1 - 1e-4) for h in got]
        sparse_hits.append(sum(ok) / max(1, min(LIMIT, int((scores > 0).sum()))))
    return {
        "dense_recall_at_10_vs_exact": round(statistics.fmean(dense_hits), 3),
        "bm25_recall_at_10_vs_exact_tie_aware": round(statistics.fmean(sparse_hits), 3),
    }


def api_child(
    shard_dir: str, queries: list[str], runtime: str, precision: str, cache: str, warmup: int
) -> dict[str, Any]:
    """In a fresh process: load the embedder (build_embedder, as the app does) and open the
    Edge shard, then time embed_query + BM25 query + EdgeIndex.search per query."""
    from app.embeddings import build_embedder
    from app.index.edge import EdgeIndex
    from app.index.sparse import Bm25Encoder
    from app.settings import Settings

    mem_start = memory_mb()
    settings = Settings(
        _env_file=None,
        embedder="minilm",
        embedding_runtime=runtime,
        embedding_precision=precision,
        model_cache=Path(cache),
    )
    started = time.perf_counter()
    embedder = build_embedder(settings)
    embedder.embed_query("warm-up")
    model_s = time.perf_counter() - started
    mem_model = memory_mb()
    started = time.perf_counter()
    index = EdgeIndex.open(Path(shard_dir), embedder.dimensions)
    open_s = time.perf_counter() - started
    sparse = Bm25Encoder()
    where = scope(TENANT)
    mem_loaded = memory_mb()
    for q in queries[:warmup]:
        index.search(embedder.embed_query(q), sparse.query(q), where, LIMIT, "hybrid")
    total: list[float] = []
    embed: list[float] = []
    bm25: list[float] = []
    search: list[float] = []
    for q in queries:
        t0 = time.perf_counter()
        dense = embedder.embed_query(q)
        t1 = time.perf_counter()
        sq = sparse.query(q)
        t2 = time.perf_counter()
        index.search(dense, sq, where, LIMIT, "hybrid")
        t3 = time.perf_counter()
        total.append((t3 - t0) * 1000)
        embed.append((t1 - t0) * 1000)
        bm25.append((t2 - t1) * 1000)
        search.append((t3 - t2) * 1000)
    mem_after = memory_mb()
    index.close()
    return {
        "runtime": settings.embedding_runtime,
        "precision": getattr(embedder, "precision", "?"),
        "torch_imported": "torch" in sys.modules,
        "model_load_s": round(model_s, 2),
        "shard_open_s": round(open_s, 3),
        "total": latency(total),
        "embed_query": latency(embed),
        "bm25_query": latency(bm25),
        "edge_search": latency(search),
        "memory_mb": {
            "process_start": mem_start,
            "after_model": mem_model,
            "after_model_and_edge_open": mem_loaded,
            "after_queries": mem_after,
        },
    }


def edge_figures(
    index: Any,
    floor: NumpyHybrid,
    qdense: list[list[float]],
    qdense_np: np.ndarray,
    qsparse: list[SparseVector],
    floor_found: list[list[int]],
) -> dict[str, Any]:
    ms, found = time_searches(index, qdense, qsparse, len(qdense), 5)
    info = index._shard.info()
    return {
        "segments": info.segments_count,
        "indexed_vectors": info.indexed_vectors_count,
        **latency(ms),
        "overlap_at_10_with_numpy_floor": round(overlap(found, floor_found), 3),
        **agreement(index, floor, qdense, qdense_np, qsparse, 50),
    }


def bench_search(
    corpus: list[dict[str, str]],
    query_texts: list[str],
    embedder: Any,
    sizes: list[int],
    n_queries: int,
    local_queries: tuple[int, int],
    local_budget_s: float,
    optimize: bool,
    with_local: bool,
    seed: int,
    child_model: tuple[str, str, str],
    work: Path,
) -> dict[str, Any]:
    from app.index.edge import EdgeIndex
    from app.index.server import QdrantServerIndex
    from app.index.sparse import Bm25Encoder

    result: dict[str, Any] = {"sizes": sizes, "limit": LIMIT, "queries": n_queries}
    bm25 = Bm25Encoder()
    texts = query_texts[:n_queries]
    started = time.perf_counter()
    qdense = embedder.embed_documents(texts)
    qsparse = [bm25.query(t) for t in texts]
    qdense_np = np.asarray(qdense, dtype=np.float32)
    log(f"search: embedded {len(texts)} queries in {time.perf_counter() - started:.1f}s")

    max_n = max(sizes)
    started = time.perf_counter()
    syn = make_synthetic(corpus, max_n, seed)
    result["synthetic_build_s"] = round(time.perf_counter() - started, 1)
    result["sparse_terms_per_point_mean"] = round(len(syn.indices) / max_n, 1)
    log(
        f"search: built {max_n} synthetic points in {result['synthetic_build_s']}s "
        f"(memory {memory_mb()})"
    )

    per_size: dict[str, Any] = {}
    for n in sizes:
        entry: dict[str, Any] = {}
        per_size[str(n)] = entry

        # (c) the numpy floor first: its results are the reference for the overlap figures.
        started = time.perf_counter()
        floor = NumpyHybrid(syn, n)
        build_s = time.perf_counter() - started
        for i in range(min(5, len(texts))):
            floor.search(qdense_np[i], qsparse[i], LIMIT)
        ms: list[float] = []
        floor_found: list[list[int]] = []
        for i in range(len(texts)):
            t0 = time.perf_counter()
            floor_found.append(floor.search(qdense_np[i], qsparse[i], LIMIT))
            ms.append((time.perf_counter() - t0) * 1000)
        entry["numpy_floor"] = {"build_s": round(build_s, 2), **latency(ms)}
        log(
            f"search {n}: numpy floor p50 {entry['numpy_floor']['p50_ms']} ms, "
            f"p99 {entry['numpy_floor']['p99_ms']} ms"
        )

        # (a) Qdrant Edge: full scan right after loading, then after optimize() (HNSW), which
        # is how the app leaves the shard once the ingestion queue drains.
        shard = work / f"edge-{n}"
        index = EdgeIndex.open(shard, DIMS)
        load_s = load_index(index, syn, 0, n)
        entry["edge_load_s"] = round(load_s, 1)
        entry["edge_load_points_per_s"] = round(n / load_s, 1)
        figures = edge_figures(index, floor, qdense, qdense_np, qsparse, floor_found)
        entry["edge_full_scan"] = figures
        log(
            f"search {n}: edge load {load_s:.1f}s; before optimize p50 {figures['p50_ms']} ms, "
            f"p99 {figures['p99_ms']} ms, hybrid overlap "
            f"{figures['overlap_at_10_with_numpy_floor']}, dense recall "
            f"{figures['dense_recall_at_10_vs_exact']}, bm25 recall "
            f"{figures['bm25_recall_at_10_vs_exact_tie_aware']}"
        )
        if optimize:
            started = time.perf_counter()
            index.optimize()
            opt_s = time.perf_counter() - started
            figures = edge_figures(index, floor, qdense, qdense_np, qsparse, floor_found)
            entry["edge_optimized"] = {"optimize_s": round(opt_s, 1), **figures}
            log(
                f"search {n}: edge after optimize() ({opt_s:.1f}s): p50 {figures['p50_ms']} ms, "
                f"p99 {figures['p99_ms']} ms, hybrid overlap "
                f"{figures['overlap_at_10_with_numpy_floor']}, dense recall "
                f"{figures['dense_recall_at_10_vs_exact']}"
            )
        index.close()
        del index

        if n == max_n:
            log(f"search {n}: search incl. query embedding, in a fresh process")
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
                api = pool.submit(api_child, str(shard), texts, *child_model, 5).result()
            result["api"] = {"size": n, "optimized": optimize, **api}
            log(
                f"search {n}: incl. embedding p50 {api['total']['p50_ms']} ms, "
                f"p99 {api['total']['p99_ms']} ms ({api['runtime']}); memory {api['memory_mb']}"
            )
        shutil.rmtree(shard, ignore_errors=True)
        del floor
        gc.collect()

    # (b) qdrant-client local mode: one collection, grown through every size.
    local: dict[str, Any] = {}
    checkpoints = sorted(set(sizes) | ({LOCAL_MID_SIZE} if max_n > LOCAL_MID_SIZE else set()))
    note = ""
    if with_local:
        index = QdrantServerIndex.connect(":memory:", None, "bench", DIMS)
        loaded = 0
        load_total = 0.0
        for n in checkpoints:
            if loaded and n > loaded:
                projected = load_total / loaded * n
                if projected > local_budget_s:
                    note = (
                        f"stopped at {loaded} points: loading {n} was projected to take "
                        f"{projected:.0f}s (> {local_budget_s:.0f}s budget)"
                    )
                    log(f"search local: {note}")
                    break
            load_total += load_index(index, syn, loaded, n)
            loaded = n
            nq = local_queries[0] if n <= min(sizes) else local_queries[1]
            ms, found = time_searches(index, qdense, qsparse, nq, 1 if n > min(sizes) else 3)
            ref_index = NumpyHybrid(syn, n)
            ref = [ref_index.search(qdense_np[i], qsparse[i], LIMIT) for i in range(len(found))]
            del ref_index
            local[str(n)] = {
                "cumulative_load_s": round(load_total, 1),
                **latency(ms),
                "overlap_at_10_with_numpy_floor": round(overlap(found, ref), 3),
            }
            log(
                f"search local {n}: loaded after {load_total:.1f}s, {nq} queries, "
                f"p50 {local[str(n)]['p50_ms']} ms, p99 {local[str(n)]['p99_ms']} ms "
                f"(memory {memory_mb()})"
            )
        index.close()
        del index
        gc.collect()
    result["local_mode"] = local
    result["local_mode_note"] = note
    result["per_size"] = per_size

    # Ratios against qdrant-client local mode at the largest size both measured.
    common = [n for n in sizes if str(n) in local]
    if common:
        n = max(common)
        lm = local[str(n)]["p50_ms"]
        edge = per_size[str(n)].get("edge_optimized") or per_size[str(n)]["edge_full_scan"]
        result["ratios"] = {"size": n, "local_p50_over_edge_p50": round(lm / edge["p50_ms"], 1)}
        if "api" in result and result["api"]["size"] == n:
            result["ratios"]["local_p50_over_api_p50"] = round(
                lm / result["api"]["total"]["p50_ms"], 1
            )
    del syn
    gc.collect()
    return result


# --- 3. retrieval quality ---------------------------------------------------------------------


def open_hnsw_edge(path: Path) -> Any:
    """An EdgeIndex whose shard builds HNSW for any segment size (indexing threshold 1 KB),
    so optimize() indexes even a small collection."""
    from qdrant_edge import (
        Distance,
        EdgeConfig,
        EdgeOptimizersConfig,
        EdgeShard,
        EdgeSparseVectorParams,
        EdgeVectorParams,
        Modifier,
    )

    from app.index import DENSE, SPARSE
    from app.index.edge import EdgeIndex

    EdgeIndex.open(path, DIMS).close()  # creates the shard and its payload indexes
    config = EdgeConfig(
        vectors={DENSE: EdgeVectorParams(size=DIMS, distance=Distance.Cosine)},
        sparse_vectors={SPARSE: EdgeSparseVectorParams(modifier=Modifier.Idf)},
        optimizers=EdgeOptimizersConfig(indexing_threshold=1),
    )
    return EdgeIndex(EdgeShard.load(str(path), config), 60, 50)


def bench_quality(
    corpus: list[dict[str, str]],
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    embedder: Any,
    max_queries: int | None,
    hnsw: bool,
    work: Path,
    hybrid_repeats: int = 5,
) -> dict[str, Any]:
    from app.index.edge import EdgeIndex
    from app.index.sparse import Bm25Encoder

    bm25 = Bm25Encoder()
    texts = [f"{d['title']} {d['text']}" for d in corpus]
    doc_ids = [str(d["_id"]) for d in corpus]
    started = time.perf_counter()
    dense = np.asarray(embedder.embed_documents(texts), dtype=np.float32)
    embed_s = time.perf_counter() - started
    log(
        f"quality: embedded {len(texts)} abstracts in {embed_s:.1f}s "
        f"({len(texts) / embed_s:.1f}/s, {getattr(embedder, 'precision', '?')})"
    )
    sparse_docs = [bm25.document(t) for t in texts]

    def fill(index: Any) -> float:
        started = time.perf_counter()
        for lo in range(0, len(corpus), UPSERT_BATCH):
            hi = min(len(corpus), lo + UPSERT_BATCH)
            index.upsert(
                [
                    IndexPoint(
                        str(uuid.uuid5(uuid.NAMESPACE_URL, f"scifact/{doc_ids[i]}")),
                        dense[i].tolist(),
                        sparse_docs[i],
                        {
                            "tenant": TENANT,
                            "collection": "scifact",
                            "document_id": doc_ids[i],
                            "version": 1,
                            "corpus_id": doc_ids[i],
                        },
                    )
                    for i in range(lo, hi)
                ]
            )
        return time.perf_counter() - started

    qids = [q for q in queries if any(v > 0 for v in qrels.get(q, {}).values())]
    if max_queries is not None:
        qids = qids[:max_queries]
    qdense = [embedder.embed_query(queries[q]) for q in qids]
    qsparse = [bm25.query(queries[q]) for q in qids]
    # Exact cosine top 10 (Qdrant normalises vectors for cosine; bfloat16 output is not
    # exactly unit length, so normalise here too).
    unit_docs = unit_rows(dense)
    unit_queries = unit_rows(np.asarray(qdense, dtype=np.float32))
    exact = [
        {doc_ids[i] for i in np.argsort(-(unit_docs @ q))[:LIMIT].tolist()} for q in unit_queries
    ]
    del unit_docs
    where = scope(TENANT)

    def evaluate(index: Any, label: str) -> dict[str, Any]:
        modes: dict[str, Any] = {}
        for mode in ("dense", "sparse", "hybrid"):
            # Hybrid is repeated: Edge breaks ties between equal RRF scores differently from
            # one call to the next, so one pass is one sample of a small spread.
            runs: list[tuple[float, float]] = []
            ms: list[float] = []
            dense_recall: list[float] = []
            changed = 0
            first: list[list[str]] = []
            for rep in range(hybrid_repeats if mode == "hybrid" else 1):
                ndcg: list[float] = []
                recall: list[float] = []
                for k, q in enumerate(qids):
                    relevant = {d for d, v in qrels[q].items() if v > 0}
                    t0 = time.perf_counter()
                    hits = index.search(qdense[k], qsparse[k], where, LIMIT, mode)
                    ms.append((time.perf_counter() - t0) * 1000)
                    ranked = [str(h.payload["corpus_id"]) for h in hits]
                    if rep == 0:
                        first.append(ranked)
                    elif ranked != first[k]:
                        changed += 1
                    if mode == "dense":
                        dense_recall.append(len(exact[k] & set(ranked)) / LIMIT)
                    ndcg.append(ndcg_at_k(ranked, relevant, 10))
                    recall.append(len(set(ranked) & relevant) / len(relevant))
                runs.append((statistics.fmean(ndcg), statistics.fmean(recall)))
            m: dict[str, Any] = {
                "ndcg_at_10": round(statistics.fmean(r[0] for r in runs), 4),
                "recall_at_10": round(statistics.fmean(r[1] for r in runs), 4),
                "search_p50_ms": latency(ms)["p50_ms"],
            }
            if dense_recall:
                m["recall_at_10_vs_exact_dense"] = round(statistics.fmean(dense_recall), 4)
            if len(runs) > 1:
                m["runs"] = len(runs)
                m["ndcg_at_10_min_max"] = [
                    round(min(r[0] for r in runs), 4),
                    round(max(r[0] for r in runs), 4),
                ]
                m["rankings_changed_on_repeat"] = round(changed / (len(qids) * (len(runs) - 1)), 3)
            modes[mode] = m
            extra = ""
            if "recall_at_10_vs_exact_dense" in m:
                extra = f", recall vs exact {m['recall_at_10_vs_exact_dense']:.4f}"
            if len(runs) > 1:
                extra = (
                    f" (mean of {len(runs)}; range {m['ndcg_at_10_min_max']}, "
                    f"{m['rankings_changed_on_repeat']:.0%} of rankings changed on repeat)"
                )
            log(
                f"quality{label}: {mode:6s} nDCG@10 {m['ndcg_at_10']:.4f} "
                f"recall@10 {m['recall_at_10']:.4f}{extra}"
            )
        return modes

    index = EdgeIndex.open(work / "quality", DIMS)
    load_s = fill(index)
    index.optimize()  # as the app does after ingesting; a no-op below the indexing threshold
    info = index._shard.info()
    result: dict[str, Any] = {
        "corpus_docs": len(corpus),
        "queries": len(qids),
        "queries_with_qrels_total": sum(1 for q in queries if q in qrels),
        "runtime": type(embedder).__name__,
        "precision": getattr(embedder, "precision", "?"),
        "embed_s": round(embed_s, 1),
        "embed_passages_per_s": round(len(texts) / embed_s, 2),
        "index_load_s": round(load_s, 1),
        "indexed_vectors": info.indexed_vectors_count,
        "modes": evaluate(index, ""),
    }
    index.close()
    if hnsw:
        index = open_hnsw_edge(work / "quality-hnsw")
        fill(index)
        started = time.perf_counter()
        index.optimize()
        info = index._shard.info()
        result["hnsw"] = {
            "optimize_s": round(time.perf_counter() - started, 1),
            "indexed_vectors": info.indexed_vectors_count,
            "modes": evaluate(index, " (HNSW)"),
        }
        index.close()
    return result


# --- summary -----------------------------------------------------------------------------------


def summary_rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    ing = results.get("ingestion")
    if ing:
        rows += [
            (
                f"ingestion, {ing['docs']} docs / {ing['chunks']} chunks "
                f"({ing['runtime']} {ing['precision']})",
                f"{ing['pipeline_chunks_per_s']:.1f} chunks/s",
                "",
            ),
            (
                f"embedding floor, same embedder, batch {ing['batch_size']}",
                f"{ing['floor_chunks_per_s']:.1f} chunks/s",
                "",
            ),
            (
                "embedding floor, one call per document",
                f"{ing['floor_one_call_per_doc_chunks_per_s']:.1f} chunks/s",
                "",
            ),
            ("ingestion / floor", f"{ing['ratio_pipeline_to_floor']:.2f}", ">= 0.90"),
            (
                "ingestion / floor, by CPU time",
                f"{ing['ratio_pipeline_to_floor_by_cpu_time']:.2f}",
                "",
            ),
            (
                "ingestion / one-call-per-document floor",
                f"{ing['ratio_pipeline_to_one_call_per_doc']:.2f}",
                "",
            ),
        ]
        tc = ing["token_counter"]
        if not tc["ok"]:
            rows.append(
                (
                    "chunk token counter (true / fresh / after 1st embed)",
                    f"{tc['probe_true_tokens']} / {tc['counted_before_first_embed']} / "
                    f"{tc['counted_after_first_embed']}  WRONG",
                    "equal",
                )
            )
        rt = ing["runtimes"]
        for key, v in rt.items():
            if not isinstance(v, dict):
                continue
            cos = next(val for k, val in v.items() if k.startswith("mean_cosine"))
            default = ", app default" if v["pipeline_default"] else ""
            rows.append(
                (
                    f"MiniLM {key}{default} ({rt['sample_chunks']} chunks)",
                    f"{v['passages_per_s']:.1f} passages/s, query p50 {v['query_p50_ms']:.1f} "
                    f"ms, cos {cos:.5f}",
                    "",
                )
            )
            by_batch = v.get("passages_per_s_by_batch", {})
            if len(by_batch) > 1:
                rows.append(
                    (
                        f"  {key} passages/s by batch size",
                        ", ".join(
                            f"{b}: {r:.1f}"
                            for b, r in sorted(by_batch.items(), key=lambda kv: int(kv[0]))
                        ),
                        "",
                    )
                )
    srch = results.get("search")
    if srch:
        for n, entry in srch["per_size"].items():
            k = f"{int(n) // 1000}k"
            for key, label in (
                ("edge_full_scan", "EdgeIndex before optimize()"),
                ("edge_optimized", "EdgeIndex after optimize()"),
                ("numpy_floor", "numpy brute force"),
            ):
                if key not in entry:
                    continue
                e = entry[key]
                rows.append(
                    (
                        f"hybrid search {k}, {label} (n={e['n']})",
                        f"p50 {e['p50_ms']:.2f} / p99 {e['p99_ms']:.2f} ms",
                        "",
                    )
                )
                if "dense_recall_at_10_vs_exact" in e:
                    rows.append(
                        (
                            f"  recall@10 vs exact, dense / bm25 / hybrid overlap ({k})",
                            f"{e['dense_recall_at_10_vs_exact']:.3f} / "
                            f"{e['bm25_recall_at_10_vs_exact_tie_aware']:.3f} / "
                            f"{e['overlap_at_10_with_numpy_floor']:.3f}",
                            "",
                        )
                    )
        for n, e in srch["local_mode"].items():
            rows.append(
                (
                    f"hybrid search {int(n) // 1000}k, qdrant-client local mode (n={e['n']})",
                    f"p50 {e['p50_ms']:.1f} / p99 {e['p99_ms']:.1f} ms",
                    "",
                )
            )
        if "api" in srch:
            api = srch["api"]
            rows.append(
                (
                    f"search incl. query embedding (no HTTP), {api['size'] // 1000}k, "
                    f"{api['runtime']} (n={api['total']['n']})",
                    f"p50 {api['total']['p50_ms']:.1f} / p99 {api['total']['p99_ms']:.1f} ms",
                    "",
                )
            )
            mem = api["memory_mb"]
            rows.append(
                (
                    f"RSS, model + {api['size'] // 1000}k-point Edge shard, after queries",
                    f"{mem['after_queries']['VmRSS']:.0f} MiB "
                    f"(model alone {mem['after_model']['VmRSS']:.0f} MiB)",
                    "",
                )
            )
        ratios = srch.get("ratios")
        if ratios:
            k = f"{ratios['size'] // 1000}k"
            rows.append(
                (
                    f"local-mode p50 / EdgeIndex p50 at {k}",
                    f"{ratios['local_p50_over_edge_p50']:.0f}x",
                    "",
                )
            )
            if "local_p50_over_api_p50" in ratios:
                rows.append(
                    (
                        f"local-mode p50 / search-incl-embedding p50 at {k}",
                        f"{ratios['local_p50_over_api_p50']:.0f}x",
                        "",
                    )
                )
    qual = results.get("quality")
    if qual:
        labels = [("", qual["modes"])]
        if qual.get("hnsw"):
            labels.append((", HNSW", qual["hnsw"]["modes"]))
        for suffix, modes in labels:
            for mode, m in modes.items():
                detail = ""
                if "ndcg_at_10_min_max" in m:
                    lo, hi = m["ndcg_at_10_min_max"]
                    detail = f" (mean of {m['runs']}; {lo:.4f}-{hi:.4f})"
                if "recall_at_10_vs_exact_dense" in m and suffix:
                    detail = f" (recall@10 vs exact {m['recall_at_10_vs_exact_dense']:.3f})"
                rows.append(
                    (
                        f"SciFact train nDCG@10, {mode} ({qual['queries']} queries){suffix}",
                        f"{m['ndcg_at_10']:.4f}{detail}",
                        "",
                    )
                )
    return rows


def print_table(rows: list[tuple[str, str, str]]) -> None:
    w0 = max((len(r[0]) for r in rows), default=10)
    w1 = max((len(r[1]) for r in rows), default=10)
    print(f"\n{'figure':<{w0}}  {'value':<{w1}}  target")
    print(f"{'-' * w0}  {'-' * w1}  ------")
    for a, b, c in rows:
        print(f"{a:<{w0}}  {b:<{w1}}  {c}")
    print(flush=True)


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m evals.bench_foundation",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--quick", action="store_true", help="200 documents, 10k points, 200 quality queries"
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="SciFact (BEIR layout)")
    p.add_argument("--docs", type=int, help="documents to ingest (default 1000; quick 200)")
    p.add_argument(
        "--block-docs",
        type=int,
        help="documents per interleaved pipeline/floor block (default 100; quick 50)",
    )
    p.add_argument(
        "--runtime",
        choices=("onnx", "torch"),
        help="MiniLM runtime for ingestion and search (default: the app's default)",
    )
    p.add_argument(
        "--precision",
        choices=("auto", "float32", "bfloat16"),
        default="auto",
        help="embedding_precision for the torch runtime",
    )
    p.add_argument(
        "--quality-runtime",
        choices=("app", "onnx", "torch"),
        default="torch",
        help="embedder for section 3 (default torch with --precision: fastest for 5183 "
        "passages on AMX CPUs; 'app' reuses the ingestion embedder)",
    )
    p.add_argument(
        "--sizes", type=str, help="comma-separated point counts (default 10000,100000; quick 10000)"
    )
    p.add_argument("--queries", type=int, default=200, help="queries per latency figure")
    p.add_argument(
        "--local-queries",
        type=str,
        default="50,15",
        help="queries for qdrant-client local mode at the smallest,larger sizes",
    )
    p.add_argument(
        "--local-budget",
        type=float,
        default=300.0,
        help="seconds the local-mode load may take before larger sizes are skipped",
    )
    p.add_argument(
        "--precision-sample",
        type=int,
        help="chunks for the runtime comparison (default 400; quick 100)",
    )
    p.add_argument(
        "--batch-sweep",
        default="1,8",
        help="extra batch sizes for the runtime comparison (comma-separated; '' for none)",
    )
    p.add_argument(
        "--quality-queries", type=int, help="limit quality queries (default all; quick 200)"
    )
    p.add_argument(
        "--no-optimize", action="store_true", help="skip EdgeIndex.optimize() and the HNSW run"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--skip",
        type=str,
        default="",
        help="comma-separated parts to skip: ingestion,search,local,quality",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    args = parse_args(argv)
    docs = args.docs or (200 if args.quick else 1000)
    sizes = (
        [int(s) for s in args.sizes.split(",")]
        if args.sizes
        else [10_000]
        if args.quick
        else [10_000, 100_000]
    )
    block_docs = args.block_docs or (50 if args.quick else 100)
    sample = args.precision_sample or (100 if args.quick else 400)
    quality_queries = args.quality_queries or (200 if args.quick else None)
    local_q = tuple(int(x) for x in args.local_queries.split(","))
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}

    corpus = load_corpus(args.data)
    queries = load_queries(args.data)
    query_texts = list(queries.values())
    qrels = load_qrels(args.data / "qrels" / "train.tsv")
    results: dict[str, Any] = {
        "meta": {
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": "python -m evals.bench_foundation " + " ".join(sys.argv[1:]),
            "quick": args.quick,
            "machine": machine(),
        }
    }
    log(
        f"corpus {len(corpus)}, queries {len(queries)}, qrels for {len(qrels)} queries; "
        f"{results['meta']['machine']['cpus']} CPUs, load {os.getloadavg()}, "
        f"commit {results['meta']['machine']['git_commit']}"
    )

    tmp = Path(tempfile.mkdtemp(prefix="docent-bench-"))
    cache = tmp / "models"  # the exported ONNX graph, shared by every section and the child
    embedder: Any = None
    try:
        if "ingestion" not in skip:
            load0 = os.getloadavg()
            results["ingestion"], embedder = bench_ingestion(
                corpus,
                query_texts,
                docs,
                block_docs,
                args.runtime,
                args.precision,
                sample,
                [int(x) for x in args.batch_sweep.split(",") if x.strip()],
                cache,
                tmp / "ingest",
            )
            results["ingestion"]["load_avg"] = [load0, os.getloadavg()]
            shutil.rmtree(tmp / "ingest", ignore_errors=True)
        from app.embeddings import build_embedder
        from app.settings import Settings

        options: dict[str, Any] = {
            "_env_file": None,
            "embedder": "minilm",
            "embedding_precision": args.precision,
            "model_cache": cache,
        }
        if args.runtime:
            options["embedding_runtime"] = args.runtime
        settings = Settings(**options)
        if embedder is None:
            embedder = build_embedder(settings)
        child_model = (settings.embedding_runtime, args.precision, str(cache))
        results["meta"]["memory_mb_after_models"] = memory_mb()
        if "search" not in skip:
            load0 = os.getloadavg()
            results["search"] = bench_search(
                corpus,
                query_texts,
                embedder,
                sizes,
                args.queries,
                (local_q[0], local_q[-1]),
                args.local_budget,
                not args.no_optimize,
                "local" not in skip,
                args.seed,
                child_model,
                tmp,
            )
            results["search"]["load_avg"] = [load0, os.getloadavg()]
        if "quality" not in skip:
            load0 = os.getloadavg()
            quality_embedder = embedder
            if args.quality_runtime != "app":
                quality_embedder = load_minilm(args.quality_runtime, args.precision, cache, 32)
            results["quality"] = bench_quality(
                corpus,
                queries,
                qrels,
                quality_embedder,
                quality_queries,
                not args.no_optimize,
                tmp,
            )
            results["quality"]["load_avg"] = [load0, os.getloadavg()]
            if quality_queries is not None:
                results["quality"]["note"] = f"first {quality_queries} queries with qrels only"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    results["meta"]["wall_s"] = round(time.perf_counter() - _STARTED, 1)
    results["meta"]["load_avg_at_end"] = os.getloadavg()
    rows = summary_rows(results)
    results["summary"] = [{"figure": a, "value": b, "target": c} for a, b, c in rows]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    note = results.get("search", {}).get("local_mode_note")
    if note:
        print(f"note: qdrant-client local mode {note}")
    if args.quick:
        print("note: --quick: 200 docs, 10k points, first 200 SciFact queries with qrels")
    print_table(rows)
    log(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
