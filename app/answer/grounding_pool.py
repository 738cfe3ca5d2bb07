"""Offline grounding of finished low-risk answers in worker processes.

Grounding is the largest piece of CPU an answer costs the server (sentence splitting, word and
number checks, embedding the answer's sentences), and for a low-risk answer it runs after the
text was shown. In a thread it still holds the interpreter lock in slices, and every stream's
next event waits behind those slices. In a worker process it holds no lock of the server's;
the worker also runs at a lower CPU priority, so on a busy core the operating system serves the
server's requests first, and on a machine with more cores it uses another one.

High-risk validation stays in the server's threads: it stands between the question and the
first byte, and must not wait behind the low-priority worker.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor

from app.answer.grounding import SentenceGrounding, ground_sentences
from app.embeddings import Embedder, MemoEmbedder, build_embedder
from app.models import ChunkHit
from app.settings import Settings

log = logging.getLogger(__name__)

_embedder: Embedder | None = None


def _exit_with(parent: int) -> None:
    """A worker whose server died (even by SIGKILL) leaves too: it would otherwise wait on
    its task queue for ever, holding a model's worth of memory."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def _start_worker(settings: Settings, nice: int, parent: int) -> None:
    global _embedder
    threading.Thread(target=_exit_with, args=(parent,), daemon=True, name="exit-with").start()
    if nice and hasattr(os, "nice"):
        os.nice(nice)
    # One thread: grounding is background work, and a second thread on a busy machine takes
    # CPU from the server for a little less waiting.
    _embedder = MemoEmbedder(build_embedder(settings.model_copy(update={"embedding_threads": 1})))


def _ground(
    text: str, sources: list[ChunkHit], supported_at: float | None
) -> list[SentenceGrounding]:
    assert _embedder is not None, "the worker was started without its embedder"
    if supported_at is None:
        return ground_sentences(text, sources, _embedder)
    return ground_sentences(text, sources, _embedder, supported_at=supported_at)


class GroundingPool:
    """``workers`` processes (started on first use, with their own copy of the embedder)."""

    def __init__(self, settings: Settings, workers: int, nice: int = 10) -> None:
        self._settings, self._workers, self._nice = settings, workers, nice
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self._workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(self._settings, self._nice, os.getpid()),
            )
        return self._pool

    async def ground(
        self, text: str, sources: list[ChunkHit], supported_at: float | None
    ) -> list[SentenceGrounding]:
        """Raises what the worker raised; a dead worker pool is replaced for the next call."""
        loop = asyncio.get_running_loop()
        pool = self._executor()
        try:
            return await loop.run_in_executor(pool, _ground, text, sources, supported_at)
        except Exception:
            if getattr(pool, "_broken", False):
                log.warning("a grounding worker died; starting new ones")
                pool.shutdown(wait=False, cancel_futures=True)
                if self._pool is pool:
                    self._pool = None
            raise

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
