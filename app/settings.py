"""Every knob Docent has, in one pydantic-settings object.

Values come from, in order of precedence: arguments passed in code, environment variables
prefixed ``DOCENT_`` (e.g. ``DOCENT_DATA_DIR``), a ``.env`` file in the working directory, and
the defaults below. All embedded state lives under ``data_dir``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "docent"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DOCENT_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # --- where state lives -------------------------------------------------------------
    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Directory holding all embedded state: SQLite database, Qdrant Edge "
        "shard, uploaded files. One server process owns it at a time.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the database. Empty means SQLite (WAL mode) at "
        "<data_dir>/docent.db; a postgresql+psycopg:// URL selects PostgreSQL.",
    )

    # --- web server ---------------------------------------------------------------------
    host: str = Field(default="127.0.0.1", description="Interface the web server binds to.")
    port: int = Field(default=8000, description="Port the web server listens on.")
    max_upload_bytes: int = Field(
        default=50 * 1024 * 1024,
        description="Largest accepted upload request in bytes; larger requests are refused "
        "with 413 before their body is read.",
    )

    # --- tenancy ------------------------------------------------------------------------
    default_tenant: str = Field(
        default="default",
        description="Tenant every request belongs to until accounts arrive.",
    )
    default_collection: str = Field(
        default="default", description="Collection an upload goes to when none is named."
    )

    # --- vector index -------------------------------------------------------------------
    index_backend: Literal["edge", "qdrant"] = Field(
        default="edge",
        description="'edge' runs the Qdrant engine in-process on disk (embedded default); "
        "'qdrant' talks to a Qdrant server through qdrant-client.",
    )
    qdrant_url: str | None = Field(
        default=None,
        description="URL of the Qdrant server when index_backend is 'qdrant'. The special "
        "value ':memory:' uses qdrant-client's in-process mode (tests only).",
    )
    qdrant_api_key: str | None = Field(default=None, description="API key for the Qdrant server.")
    qdrant_collection: str = Field(
        default="docent_chunks", description="Name of the Qdrant collection holding chunks."
    )

    # --- embeddings ---------------------------------------------------------------------
    embedder: Literal["minilm", "fastembed", "hash", "openai"] = Field(
        default="minilm",
        description="Dense embedder: 'minilm' (all-MiniLM-L6-v2 shipped in a package, CPU, "
        "offline), 'fastembed' (Qdrant's fastembed library; needs pip install "
        "'docent[fastembed]'), 'openai' (an OpenAI-compatible embeddings API), or 'hash' "
        "(character n-gram hashing: fast and deterministic, for tests; not semantic).",
    )
    fastembed_model: str = Field(
        default="",
        description="Model for embedder='fastembed'. Empty runs the bundled MiniLM through "
        "fastembed (offline, same vectors as 'minilm'); a fastembed catalogue name such as "
        "'BAAI/bge-small-en-v1.5' is downloaded into the model cache on first use.",
    )
    embedding_runtime: Literal["onnx", "torch"] = Field(
        default="onnx",
        description="How the local model runs: 'onnx' (ONNX Runtime on a graph exported once "
        "from the shipped weights: fast queries, small memory) or 'torch' (PyTorch; faster "
        "bulk ingestion on CPUs with AMX bfloat16 units).",
    )
    embedding_precision: Literal["auto", "float32", "bfloat16"] = Field(
        default="auto",
        description="Precision of passage embedding with the 'torch' runtime. 'auto' uses "
        "bfloat16 where the CPU has AMX bfloat16 units and float32 elsewhere.",
    )
    model_cache: Path | None = Field(
        default=None,
        description="Where the exported ONNX model is cached; empty means <data_dir>/models.",
    )
    embedding_threads: int = Field(
        default=0, description="CPU threads for the local embedder; 0 lets torch decide."
    )
    embedding_batch_size: int = Field(
        default=32, description="Chunks embedded per batch during ingestion."
    )
    openai_embedding_model: str = Field(
        default="text-embedding-3-small", description="Model name for embedder='openai'."
    )
    openai_embedding_dimensions: int = Field(
        default=1536, description="Vector size returned by the OpenAI embedding model."
    )
    openai_base_url: str | None = Field(
        default=None, description="Base URL of an OpenAI-compatible API (None: the SDK default)."
    )
    openai_api_key: str | None = Field(default=None, description="API key for OpenAI.")

    # --- chunking -----------------------------------------------------------------------
    chunk_tokens: int = Field(
        default=200,
        description="Target chunk size in the embedder's own tokens; MiniLM reads at most "
        "256, so chunks stay below that.",
    )
    chunk_overlap_tokens: int = Field(
        default=30, description="Tokens shared by neighbouring chunks."
    )

    # --- retrieval and answers ------------------------------------------------------------
    search_top_k: int = Field(default=5, description="Chunks returned by a search by default.")
    answer_sources: int = Field(default=5, description="Chunks retrieved as sources for an answer.")
    rrf_k: int = Field(default=60, description="The k constant of reciprocal rank fusion.")
    prefetch_limit: int = Field(
        default=50, description="Candidates taken from each of dense and BM25 before fusion."
    )
    answer_min_similarity: float = Field(
        default=0.35,
        description="Least relevance (0-1) a source sentence must reach for the offline "
        "generator to use it; below it, Docent says the documents do not answer.",
    )
    offline_pace_ms: int = Field(
        default=15,
        description="Pause between the pieces the offline generator streams, so its answer "
        "appears progressively like a model's; 0 sends the whole answer at once.",
    )
    answer_max_sentences: int = Field(
        default=4, description="Sentences the offline generator quotes at most."
    )

    # --- first run ----------------------------------------------------------------------
    ingest_own_docs: bool = Field(
        default=True,
        description="On first start, ingest Docent's README and docs/ so a new user can ask "
        "about Docent right away.",
    )
    help_collection: str = Field(
        default="docent-help", description="Collection Docent's own documentation goes to."
    )

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+pysqlite:///{self.data_dir / 'docent.db'}"

    @property
    def model_cache_dir(self) -> Path:
        return self.model_cache or self.data_dir / "models"

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    @property
    def shard_dir(self) -> Path:
        return self.data_dir / "qdrant-edge"
