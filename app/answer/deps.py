"""What the answer use case depends on, built once by the composition root (app/services.py),
and the threads its blocking work runs in."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from app.answer.batch_lane import BatchLane
from app.answer.cache import AnswerCache
from app.answer.conversation import Conversations
from app.answer.grounding_pool import GroundingPool
from app.answer.retrieve import Retriever
from app.answer.risk import RiskPolicy
from app.db import Database
from app.embeddings import Embedder
from app.models import ChunkHit
from app.providers import Provider
from app.providers.fallback import Deadlines, FallbackChain

T = TypeVar("T")
Retrieval = tuple[list[float], list[ChunkHit]]
"""A question's embedding and the chunks found for it."""


@dataclass
class AnswerConfig:
    sources: int = 5
    low: Deadlines = field(default_factory=Deadlines)
    high: Deadlines = field(default_factory=lambda: Deadlines(first_token_s=15.0, total_s=90.0))
    max_tokens: int = 1024
    allow_partial_high: bool = False
    supported_at: float | None = None
    prices: dict[str, tuple[float, float]] = field(default_factory=dict)
    judge_deadlines: Deadlines = field(
        default_factory=lambda: Deadlines(first_token_s=15.0, stall_s=10.0, total_s=30.0)
    )


class Lanes:
    """Threads for blocking work. What stands between a question and its first token (SQL
    reads, embedding the question, search, high-risk validation) has its own threads, so it
    never queues behind the grounding, cache and audit writes of answers that are finishing.
    Nothing blocking runs on the event loop itself: one SQLite write there (waiting for the
    write lock another thread holds) stalls every stream of the process."""

    def __init__(self, fast: int = 8, after: int = 2) -> None:
        self._fast = ThreadPoolExecutor(fast, thread_name_prefix="answer-fast")
        self._after = ThreadPoolExecutor(after, thread_name_prefix="answer-after")
        self._writes = ThreadPoolExecutor(1, thread_name_prefix="answer-writes")

    async def fast(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            self._fast, partial(fn, *args, **kwargs)
        )

    async def after(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            self._after, partial(fn, *args, **kwargs)
        )

    def write_later(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run ``fn`` on the one writer thread, in order, without waiting: safe in ``finally``
        blocks of a cancelled answer, since nothing is awaited."""
        return self._writes.submit(fn, *args)

    def flush_writes(self, timeout: float = 10.0) -> None:
        """Wait until every write submitted so far is done (one thread: FIFO)."""
        self._writes.submit(lambda: None).result(timeout)

    def close(self) -> None:
        self._fast.shutdown(wait=False, cancel_futures=True)
        self._after.shutdown(wait=False, cancel_futures=True)
        self._writes.shutdown(wait=True)  # audit rows are not dropped at shutdown


@dataclass
class AnswerDeps:
    retriever: Retriever
    chain: FallbackChain
    tiers: dict[str, list[Provider]]
    """Providers in chain order for each model tier ('small', 'large')."""
    embedder: Embedder
    db: Database
    conversations: Conversations
    risk: RiskPolicy = field(default_factory=RiskPolicy)
    cache: AnswerCache | None = None
    judge: list[Provider] | None = None
    """Providers for the LLM grounding judge (DOCENT_GROUNDING_JUDGE), if configured."""
    config: AnswerConfig = field(default_factory=AnswerConfig)
    lanes: Lanes = field(default_factory=Lanes)
    grounding_pool: GroundingPool | None = None
    """Worker processes for the grounding of finished low-risk answers; None: a thread."""
    query_lane: BatchLane[tuple[AnswerDeps, str, str, str | None], Retrieval] | None = None
    """The thread that embeds questions arriving together as one batch and searches them
    (``answer.retrieve_batch``); None: each on a thread of ``lanes.fast``."""
