"""Every knob Docent has, in one pydantic-settings object.

Values come from, in order of precedence: arguments passed in code, environment variables
prefixed ``DOCENT_`` (e.g. ``DOCENT_DATA_DIR``), a ``.env`` file in the working directory, and
the defaults below. All embedded state lives under ``data_dir``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "docent"


# Cache thresholds (strict, fallback) measured with float32 questions: the defaults whenever
# questions are not embedded by the 8-bit MiniLM copy (evals/bench_cache_pairs).
CACHE_THRESHOLDS_FLOAT32 = (0.95, 0.94)


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
    query_precision: Literal["float32", "int8"] = Field(
        default="int8",
        description="How questions are embedded with the 'onnx' runtime: 'int8' (a copy of "
        "the model with 8-bit matrix weights, made once beside the exported one: 2.5x less CPU "
        "per question, cosine 0.994 with float32, the same search quality on SciFact) or "
        "'float32'. Passages are always float32. The answer cache's default thresholds follow "
        "this choice (see cache_threshold).",
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

    # --- language models ------------------------------------------------------------------
    chain: str = Field(
        default="offline",
        description="The provider chain, tried in order: entries 'anthropic:MODEL', "
        "'openai:MODEL' or 'offline', separated by '->' or commas, e.g. "
        "'anthropic:claude-sonnet-4-5 -> openai:gpt-4o -> offline'. When every entry fails, "
        "a cached answer (labelled with its age) or a clear message follows.",
    )
    small_models: str = Field(
        default="",
        description="Models for simple questions, per provider kind: "
        "'anthropic:claude-haiku-4-5, openai:gpt-4o-mini'. A kind not listed uses its "
        "chain model for both tiers.",
    )
    anthropic_api_key: str | None = Field(default=None, description="Anthropic API key.")
    anthropic_base_url: str | None = Field(
        default=None, description="Anthropic API URL; empty means Anthropic's own."
    )
    chat_openai_base_url: str | None = Field(
        default=None,
        description="URL of an OpenAI-compatible chat API (vLLM, Ollama, llama.cpp server); "
        "empty falls back to DOCENT_OPENAI_BASE_URL, then OpenAI's own.",
    )
    provider_http: Literal["auto", "aiohttp", "httpx"] = Field(
        default="auto",
        description="The HTTP transport under the Anthropic and OpenAI SDKs: 'aiohttp' (the "
        "SDKs' own aiohttp option: about half the CPU per streamed token, measured by "
        "evals/bench_relay.py) or 'httpx' (the SDKs' default, which honours HTTP(S)_PROXY). "
        "'auto' is aiohttp unless a proxy is set in the environment.",
    )
    relay_interval_ms: int = Field(
        default=40,
        ge=0,
        le=1000,
        description="Over the aiohttp transport (DOCENT_PROVIDER_HTTP), after passing a piece "
        "of a model's answer on, wait this long before reading its stream again, and pass on "
        "what arrived meanwhile as one piece (the first piece is never held back). Each piece "
        "relayed costs the server CPU whatever its length: at 50 streams of 100 words a second, "
        "40 ms saves 15% of the server's CPU an answer (evals/bench_answer.py). 0 passes text "
        "on as soon as it is read. Must be under half of DOCENT_STALL_S.",
    )
    connect_timeout_s: float = Field(default=1.0, description="Connect timeout per attempt.")
    first_token_low_s: float = Field(
        default=8.0, description="Longest wait for a first token, low-risk answers."
    )
    first_token_high_s: float = Field(
        default=15.0, description="Longest wait for a first token, high-risk answers."
    )
    stall_s: float = Field(default=10.0, description="Longest pause between two tokens.")
    total_low_s: float = Field(default=60.0, description="Deadline of a low-risk answer.")
    total_high_s: float = Field(default=90.0, description="Deadline of a high-risk answer.")
    max_retry_wait_s: float = Field(
        default=2.0,
        description="Longest Retry-After the chain waits for before its one same-provider "
        "retry; longer waits fall back to the next provider at once.",
    )
    max_output_tokens: int = Field(default=1024, description="Answer length limit in tokens.")
    prices: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: {
            "anthropic:claude-sonnet-4-5": (3.0, 15.0),
            "anthropic:claude-haiku-4-5": (1.0, 5.0),
            "openai:gpt-4o": (2.5, 10.0),
            "openai:gpt-4o-mini": (0.15, 0.6),
        },
        description="USD per million input and output tokens, by 'kind:model' (JSON). A model "
        "not listed costs 0 and its answers are marked as unpriced.",
    )

    sse_keepalive_s: float = Field(
        default=10.0,
        description="Seconds of silence after which an answer stream sends a keepalive comment.",
    )

    # --- risk and validation -------------------------------------------------------------
    high_risk_collections: list[str] = Field(
        default_factory=list,
        description="Collections whose documents make an answer high-risk (JSON list).",
    )
    high_risk_topics: list[str] = Field(
        default_factory=lambda: [
            "medical",
            "legal",
            "financial",
        ],
        description="Topics that make a question high-risk: 'medical', 'legal', 'financial' "
        "(built-in word lists) or any other word or phrase to match (JSON list).",
    )
    grounding_supported_at: float | None = Field(
        default=None,
        description="Score (0-1) from which a sentence counts as supported by its source; "
        "empty uses the checker's measured default.",
    )
    grounding_judge: str = Field(
        default="",
        description="A model that also judges grounding, as 'anthropic:MODEL' or "
        "'openai:MODEL' (several separated by '->' form a chain). Its verdicts can only make "
        "the offline checker's stricter; if it fails, high-risk answers are held for review.",
    )
    grounding_workers: int = Field(
        default=1,
        ge=0,
        description="Worker processes that check the grounding of finished low-risk answers, "
        "at a lower CPU priority, so that it never delays other answers' first words. 0 "
        "checks in the server process.",
    )
    high_risk_allow_partial: bool = Field(
        default=False,
        description="Whether a high-risk answer may be released with partially supported "
        "sentences. By default every sentence must be supported.",
    )

    # --- answer cache -------------------------------------------------------------------
    cache_enabled: bool = Field(
        default=True, description="Serve earlier validated answers to the same question."
    )
    cache_threshold: float = Field(
        default=0.945,
        description="Similarity (0-1) a cached question needs for an ordinary hit. Requests "
        "may raise it, never lower it. Unset, it follows query_precision: 0.945 for int8 "
        "questions, 0.95 for float32. Measured on 444 question pairs with the near-miss guard: "
        "17.0% and 15.5% of paraphrases served, no false hit (evals/bench_cache_pairs).",
    )
    cache_fallback_threshold: float = Field(
        default=0.935,
        description="Looser similarity used only when every provider has failed; such "
        "answers are always labelled with their age. Unset, it follows query_precision: "
        "0.935 for int8 questions (18.9% of paraphrases, no false hit), 0.94 for float32 "
        "(20.4%, no false hit).",
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

    @model_validator(mode="after")
    def _relay_interval_under_the_stall_deadline(self) -> Settings:
        """The wait between two reads of a model's stream counts towards its stall deadline."""
        if self.relay_interval_ms * 2 > self.stall_s * 1000:
            raise ValueError(
                f"DOCENT_RELAY_INTERVAL_MS ({self.relay_interval_ms}) must be under half of "
                f"DOCENT_STALL_S ({self.stall_s} s): the wait between two reads of a model's "
                "stream counts towards the stall deadline. Lower the interval or raise the "
                "deadline."
            )
        return self

    @model_validator(mode="after")
    def _cache_thresholds_follow_query_precision(self) -> Settings:
        """An int8 question's vector differs a little from float32's (cosine 0.994 median), so
        paraphrases score a little lower: the thresholds that keep false hits at zero differ
        too. Only defaults move; a threshold that was set stays as set."""
        int8_questions = (
            self.query_precision == "int8"
            and self.embedder == "minilm"
            and self.embedding_runtime == "onnx"
        )
        if int8_questions:
            return self
        strict, loose = CACHE_THRESHOLDS_FLOAT32
        if "cache_threshold" not in self.model_fields_set:
            self.cache_threshold = strict
        if "cache_fallback_threshold" not in self.model_fields_set:
            self.cache_fallback_threshold = loose
        return self

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
    def cache_shard_dir(self) -> Path:
        return self.data_dir / "qdrant-edge-cache"

    @property
    def shard_dir(self) -> Path:
        return self.data_dir / "qdrant-edge"
