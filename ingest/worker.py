"""The in-process ingestion worker of the embedded default: one job at a time, in a thread,
woken when an upload queues work and at start-up for jobs a crash interrupted."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ingest.pipeline import Ingestor

log = logging.getLogger(__name__)


class BackgroundWorker:
    def __init__(self, ingestor: Ingestor) -> None:
        self._ingestor = ingestor
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.idle = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="docent-ingest-worker")
        self.notify()

    def notify(self) -> None:
        self.idle.clear()
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                jobs = await asyncio.to_thread(self._ingestor.pending_jobs)
                for job_id in jobs:
                    await asyncio.to_thread(self._ingestor.run_job, job_id)
                if jobs and not self._wake.is_set():
                    # The queue is drained: index what was added (searches go on meanwhile).
                    await asyncio.to_thread(self._ingestor.index.optimize)
            except Exception:
                log.exception("ingestion worker pass failed; it will retry on the next upload")
            if not self._wake.is_set():
                self.idle.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
