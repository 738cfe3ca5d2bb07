"""evals/bench_llamaindex.py end to end at toy sizes: Docent's hash embedder, a generated
corpus in SciFact's layout, 2,000 synthetic points. Checks that both sides really indexed what
the report says, and that LlamaIndex never built its OpenAI defaults."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from llama_index.core import Settings as LlamaSettings

from evals.bench_llamaindex import main

VOCABULARY = (
    "protein cell tumour gene expression mouse receptor insulin vitamin risk trial dose "
    "patients cohort mortality infection immune response kinase signalling pathway"
)


def write_corpus(data: Path, docs: int, queries: int) -> None:
    rng = random.Random(7)
    words = VOCABULARY.split()

    def sentence(n: int) -> str:
        return " ".join(rng.choice(words) for _ in range(n)).capitalize() + "."

    data.mkdir()
    with (data / "corpus.jsonl").open("w", encoding="utf-8") as f:
        for i in range(docs):
            text = " ".join(sentence(rng.randint(8, 20)) for _ in range(rng.randint(3, 30)))
            f.write(json.dumps({"_id": str(i), "title": sentence(6), "text": text}) + "\n")
    with (data / "queries.jsonl").open("w", encoding="utf-8") as f:
        for i in range(queries):
            f.write(json.dumps({"_id": str(i), "text": sentence(7)}) + "\n")


def test_bench_llamaindex_runs_and_indexes_both_sides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(LlamaSettings, "_llm", None)
    monkeypatch.setattr(LlamaSettings, "_embed_model", None)
    write_corpus(tmp_path / "data", docs=30, queries=12)
    out = tmp_path / "x.json"
    args = ["--embedder", "hash", "--data", str(tmp_path / "data"), "--docs", "12"]
    args += ["--block-docs", "4", "--sizes", "2000", "--queries", "12", "--out", str(out)]
    assert main(args) == 0

    results = json.loads(out.read_text())
    assert results["meta"]["machine"]["packages"]["llama-index-vector-stores-qdrant"] != "missing"
    assert results["meta"]["memory_mb_at_end"]["VmHWM"] > 0
    assert results["summary"]

    ingestion = results["ingestion"]
    docent, llama = ingestion["docent"], ingestion["llamaindex"]
    assert docent["chunks"] == docent["edge_points"] >= 12
    assert llama["chunks"] == llama["qdrant_points"] >= 12
    assert llama["floor_texts_match_embedded"]
    for side in (docent, llama):
        assert side["chars_embedded"] > 0
        assert side["docs_per_s"] > 0
        assert side["chunks_per_s"] > 0
        assert side["floor"]["chunks_per_s"] > 0
    assert ingestion["llamaindex_store_write"]["nodes"] == llama["chunks"]
    assert ingestion["llamaindex_store_write"]["path_s"] > 0
    assert results["meta"]["llamaindex_global_defaults_resolved"] == {
        "llm": False,
        "embed_model": False,
    }

    size = results["search"]["per_size"]["2000"]
    assert size["docent_edge_points"] == size["llamaindex_qdrant_points"] == 2000
    assert size["llamaindex_query_embeddings_computed"] == 0
    for state in ("before_optimize", "after_optimize"):
        for name, figures in size[state].items():
            assert figures["n"] == 12, name
            assert 0 < figures["p50_ms"] <= figures["p95_ms"], name
    # 2,000 points stay below Edge's HNSW threshold: every dense search is exact. (Hybrid
    # agreement is not 1.0 here: a 21-word vocabulary makes BM25 scores tie all over.)
    for name, figures in size["before_optimize"].items():
        if "hybrid" in name:
            assert 0 < figures["agreement_at_10_with_exact_hybrid"] <= 1, name
        else:
            assert figures["recall_at_10_vs_exact_dense"] == 1.0, name
    assert size["before_optimize"]["numpy_hybrid"]["agreement_at_10_with_exact_hybrid"] == 1.0
