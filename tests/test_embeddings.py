"""Embedders: the shipped model's integrity check, the OpenAI-compatible adapter against a fake
server on 127.0.0.1, and the hash embedder's determinism."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from app.embeddings import HashEmbedder, MemoEmbedder, OpenAIEmbedder, embed_matrix
from app.errors import Unavailable
from app.minilm import verify_model_files


class FakeEmbeddings(BaseHTTPRequestHandler):
    status = 200
    dims = 8
    seen: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeEmbeddings.seen.append(body)
        if self.status != 200:
            payload = json.dumps({"error": {"message": "boom", "type": "server_error"}}).encode()
        else:
            # Deliberately out of order: the adapter must sort by index.
            data = [
                {
                    "object": "embedding",
                    "index": i,
                    "embedding": [float(len(text) + i)] + [1.0] * (self.dims - 1),
                }
                for i, text in enumerate(body["input"])
            ][::-1]
            payload = json.dumps(
                {
                    "object": "list",
                    "data": data,
                    "model": body["model"],
                    "usage": {"prompt_tokens": 1, "total_tokens": 1},
                }
            ).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_openai() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeEmbeddings)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeEmbeddings.status, FakeEmbeddings.seen = 200, []
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_openai_embedder_returns_normalised_vectors_in_order(fake_openai: str) -> None:
    embedder = OpenAIEmbedder("text-embedding-3-small", 8, "key", fake_openai)
    vectors = embedder.embed_documents(["a", "bbbb"])
    assert FakeEmbeddings.seen[0]["input"] == ["a", "bbbb"]
    assert [round(float(np.linalg.norm(v)), 5) for v in vectors] == [1.0, 1.0]
    raw = np.array([[1.0] + [1.0] * 7, [5.0] + [1.0] * 7])
    expected = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    assert np.allclose(vectors, expected, atol=1e-6)
    assert len(embedder.embed_query("q")) == 8


def test_openai_embedder_failures_say_what_to_do(fake_openai: str) -> None:
    FakeEmbeddings.status = 500
    with pytest.raises(Unavailable, match="DOCENT_OPENAI_BASE_URL"):
        OpenAIEmbedder("m", 8, "key", fake_openai).embed_documents(["x"])
    FakeEmbeddings.status = 200
    with pytest.raises(Unavailable, match="dimensions"):
        OpenAIEmbedder("m", 16, "key", fake_openai).embed_documents(["x"])
    assert len(FakeEmbeddings.seen) == 2, "our code makes one attempt; the SDK must not retry"


def test_model_file_check_detects_tampering(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    good = {"model.safetensors": hashlib.sha256(b"weights").hexdigest()}
    verify_model_files(tmp_path, good)
    (tmp_path / "model.safetensors").write_bytes(b"weights, altered")
    with pytest.raises(Unavailable, match="does not match"):
        verify_model_files(tmp_path, good)
    with pytest.raises(Unavailable, match="missing"):
        verify_model_files(tmp_path, {"vocab.txt": "0" * 64})


def test_hash_embedder_is_deterministic_and_lexical() -> None:
    e = HashEmbedder()
    a, b, c = e.embed_documents(["refund policy", "refund policies", "zebra migration"])
    assert a == e.embed_query("refund policy")
    assert np.dot(a, b) > np.dot(a, c)


def test_memo_embedder_gives_arrays_the_caller_may_change() -> None:
    """Compute-once and eviction: test_memo_embedder_embeds_each_text_once."""
    memo = MemoEmbedder(HashEmbedder())
    texts = ["refund policy", "zebra migration", "refund policy"]
    expected = np.asarray(HashEmbedder().embed_documents(texts), dtype=np.float32)
    matrix = embed_matrix(memo, texts)
    assert matrix.dtype == np.float32 and np.array_equal(matrix, expected)
    matrix[:] = 0  # grounding scales its copy in place; the memo keeps its own
    assert memo.embed_documents(texts) == expected.tolist()
    assert embed_matrix(memo, []).shape == (0, 384)


@pytest.mark.slow
def test_minilm_loads_verified_and_ranks_by_meaning(minilm: Any) -> None:
    q = minilm.embed_query("How do I get my money back?")
    docs = minilm.embed_documents(
        ["Refunds are paid within 14 days of a return.", "The office opens at nine."]
    )
    assert len(q) == 384
    assert np.dot(q, docs[0]) > np.dot(q, docs[1]) + 0.1


@pytest.mark.slow
def test_minilm_token_counter_sizes_chunks(minilm: Any) -> None:
    from ingest.chunk import split
    from ingest.parse import ParsedText

    count = minilm.tokenizer()
    assert count("") == [] and len(count("hello world")) == 2, "no padding, no special tokens"
    assert len(count("word " * 1000)) == 1000, "no truncation"
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    chunks = split(ParsedText(text), 200, 30, count)
    assert len(chunks) > 3
    assert all(len(count(c.text)) <= 200 for c in chunks)


@pytest.mark.slow
def test_onnx_and_torch_runtimes_agree(minilm: Any) -> None:
    from app.minilm import TorchMiniLM

    torch_model = TorchMiniLM("float32")
    texts = ["Refunds are paid within 14 days.", "short", "A longer passage " * 40]
    a = np.asarray(minilm.embed_documents(texts))
    b = np.asarray(torch_model.embed_documents(texts))
    assert a.shape == (3, 384)
    assert np.min(np.sum(a * b, axis=1)) > 0.9999
    q = "How do I get my money back?"
    assert float(np.dot(minilm.embed_query(q), torch_model.embed_query(q))) > 0.9999
    # Batched passages of different lengths embed exactly like one at a time.
    single = np.asarray([minilm.embed_query(t) for t in texts])
    assert np.allclose(a, single, atol=1e-5)


@pytest.mark.slow
def test_onnx_export_is_cached(tmp_path: Path, minilm: Any) -> None:
    from app import minilm as module
    from tests.conftest import MODEL_CACHE

    cached = module.onnx_path(MODEL_CACHE)
    assert cached.is_file()
    before = cached.stat().st_mtime_ns
    module.load("onnx", MODEL_CACHE)
    assert cached.stat().st_mtime_ns == before, "a cached export is reused, not redone"


@pytest.mark.slow
def test_fastembed_runs_the_bundled_model_with_the_same_vectors(minilm: Any) -> None:
    from app.embeddings import build_embedder
    from tests.conftest import MODEL_CACHE, make_settings

    settings = make_settings(MODEL_CACHE.parent / "unused", embedder="fastembed")
    fe = build_embedder(settings)
    assert type(fe).__name__ == "FastEmbedEmbedder"
    assert fe.dimensions == 384 and fe.name == minilm.name, "an index built by one serves both"
    texts = ["Refunds are paid within 14 days.", "short", "A longer passage " * 200]
    a = np.asarray(fe.embed_documents(texts))
    b = np.asarray(minilm.embed_documents(texts))
    assert a.shape == (3, 384)
    assert np.min(np.sum(a * b, axis=1)) > 0.9999, "truncation at 256 tokens, as MiniLM reads"
    q = "How do I get my money back?"
    assert float(np.dot(fe.embed_query(q), minilm.embed_query(q))) > 0.9999
    assert len(fe.tokenizer()("word " * 1000)) == 1000, "the chunk sizer does not truncate"


def test_fastembed_unknown_model_is_a_clear_error(tmp_path: Path) -> None:
    from app.fastembed_embedder import FastEmbedEmbedder

    with pytest.raises(Unavailable, match="DOCENT_FASTEMBED_MODEL"):
        FastEmbedEmbedder("no-such-org/no-such-model", tmp_path)


def test_memo_embedder_embeds_each_text_once() -> None:
    calls: list[list[str]] = []

    class Counting(HashEmbedder):
        def embed_documents(self, texts: Any) -> list[list[float]]:
            calls.append(list(texts))
            return super().embed_documents(texts)

    memo = MemoEmbedder(Counting(), capacity=2)
    first = memo.embed_documents(["a b", "c d", "a b"])
    assert calls == [["a b", "c d"]] and first[0] == first[2]
    assert memo.embed_documents(["c d", "a b"]) == [first[1], first[0]] and len(calls) == 1
    memo.embed_documents(["e f"])  # evicts the least recently used ("c d")
    memo.embed_documents(["c d"])
    assert calls[-1] == ["c d"]


@pytest.mark.slow
def test_int8_questions_agree_with_float32_and_passages_stay_float32(
    tmp_path: Path, minilm: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """DOCENT_QUERY_PRECISION=int8 (the default): an 8-bit copy of the model, made once,
    embeds questions; passages still use the float32 graph. Making it prints nothing of the
    quantiser's own chatter."""
    import shutil

    from app import minilm as module
    from tests.conftest import MODEL_CACHE

    cache = tmp_path / "models"
    cache.mkdir()
    shutil.copy(module.onnx_path(MODEL_CACHE), module.onnx_path(cache))
    caplog.set_level(logging.DEBUG)
    small = module.load("onnx", cache, query_precision="int8")
    assert module.query_onnx_path(cache).is_file() and "int8" in small.precision
    assert not [r for r in caplog.records if "quantization" in r.pathname]
    questions = [
        "How do I get my money back?",
        "Which file types can Docent read?",
        "What is the maximum dose of ibuprofen for adults?",
    ]
    for q in questions:
        assert float(np.dot(minilm.embed_query(q), small.embed_query(q))) > 0.98
    passages = ["Refunds are paid within 14 days.", "A longer passage " * 20]
    assert np.allclose(minilm.embed_documents(passages), small.embed_documents(passages), atol=1e-5)
    # Ranking by meaning survives: the refund question is closest to the refund passage.
    q = np.asarray(small.embed_query(questions[0]))
    scores = np.asarray(minilm.embed_documents(passages)) @ q
    assert scores[0] > scores[1]
    made = module.query_onnx_path(cache).stat().st_mtime_ns
    module.load("onnx", cache, query_precision="int8")
    assert module.query_onnx_path(cache).stat().st_mtime_ns == made, "made once"


def test_questions_embedded_together_match_one_by_one(minilm: Any) -> None:
    from app.embeddings import HashEmbedder, MemoEmbedder, embed_queries

    questions = [
        "How do I upload a document?",
        "Which file types can Docent read, and how large may a PDF be before it is refused?",
        "Why?",
    ]
    together = np.asarray(embed_queries(MemoEmbedder(minilm), questions))
    alone = np.asarray([minilm.embed_query(q) for q in questions])
    # Padding the short ones to the longest changes nothing but rounding.
    assert np.allclose(together, alone, atol=1e-5)
    hashed = HashEmbedder()  # no embed_queries: one by one
    assert embed_queries(hashed, questions) == [hashed.embed_query(q) for q in questions]
