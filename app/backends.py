"""What the CLI talks to: the running server's API, or the data directory itself.

A Qdrant Edge shard opens in one process only, so when a server owns the data directory every
command goes through its HTTP API (``RemoteDocent``); otherwise the command takes the lock and
opens the data directory itself (``LocalDocent``). Both offer the same methods.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import httpx

from app.errors import DocentError, InputError, Unavailable
from app.models import ChatRequest, ChunkHit, DocumentInfo
from app.ownership import DataDirLock
from app.settings import Settings

FileProgress = Callable[[str, str, int, int], None]
"""Called as (filename, status, chunks_indexed, chunks_total)."""


class Docent(Protocol):
    def ingest(
        self, files: list[Path], collection: str, progress: FileProgress
    ) -> dict[str, str]: ...

    def search(
        self, query: str, top_k: int, collection: str | None, mode: str
    ) -> list[ChunkHit]: ...

    def ask(
        self, question: str, collection: str | None
    ) -> Iterator[tuple[str, dict[str, Any]]]: ...

    def documents(self) -> list[DocumentInfo]: ...

    def delete(self, document_id: str) -> None: ...

    def close(self) -> None: ...


def connect(settings: Settings) -> Docent:
    lock = DataDirLock(settings.data_dir)
    if lock.try_acquire():
        return LocalDocent(settings, lock)
    owner = lock.owner()
    if owner is not None and owner.url:
        return RemoteDocent(owner.url, token=owner.token)
    who = f"process {owner.pid}" if owner else "another process"
    raise DocentError(
        f"The data directory {settings.data_dir} is busy ({who} is using it and is not a "
        "server). Wait for it to finish, then run this command again."
    )


class LocalDocent:
    def __init__(self, settings: Settings, lock: DataDirLock) -> None:
        from app.services import Services, ingest_own_docs_once

        self._lock = lock
        try:
            self.services = Services.build(settings)
            ingest_own_docs_once(self.services)
            self.services.recover()
        except BaseException:
            lock.release()
            raise

    def ingest(self, files: list[Path], collection: str, progress: FileProgress) -> dict[str, str]:
        s = self.services
        outcome: dict[str, str] = {}
        names: dict[str, str] = {}
        for path in files:
            try:
                result = s.ingestor.receive(
                    s.settings.default_tenant, collection, path.name, path.read_bytes()
                )
            except InputError as exc:
                outcome[str(path)] = f"rejected: {exc.message}"
                progress(path.name, "rejected", 0, 0)
                continue
            if result.duplicate:
                outcome[str(path)] = "unchanged"
                progress(path.name, "unchanged", 1, 1)
            else:
                names[result.job_id] = str(path)

        def on_progress(job_id: str, done: int, total: int) -> None:
            if job_id in names:
                progress(Path(names[job_id]).name, "indexing", done, total)

        for job_id, source in names.items():
            status = s.ingestor.run_job(job_id, on_progress)
            outcome[source] = status.value
            progress(Path(source).name, status.value, 1, 1)
        if names:
            s.index.optimize()
        return outcome

    def search(self, query: str, top_k: int, collection: str | None, mode: str) -> list[ChunkHit]:
        return self.services.retriever.search(
            self.services.settings.default_tenant,
            query,
            top_k,
            collection,
            mode,  # type: ignore[arg-type]
        )

    def ask(self, question: str, collection: str | None) -> Iterator[tuple[str, dict[str, Any]]]:
        from app.answer.answer import answer

        request = ChatRequest(question=question, collection=collection)
        tenant = self.services.settings.default_tenant
        loop = asyncio.new_event_loop()
        stream = answer(self.services.answers, tenant, request).__aiter__()
        try:
            while True:
                try:
                    event = loop.run_until_complete(stream.__anext__())
                except StopAsyncIteration:
                    return
                yield event.event, event.data
        finally:
            loop.run_until_complete(stream.aclose())  # type: ignore[attr-defined]
            loop.close()

    def documents(self) -> list[DocumentInfo]:
        from ingest import catalog

        return catalog.list_documents(self.services.db, self.services.settings.default_tenant)

    def delete(self, document_id: str) -> None:
        self.services.delete_document(self.services.settings.default_tenant, document_id)

    def close(self) -> None:
        try:
            self.services.close()
        finally:
            self._lock.release()


class RemoteDocent:
    def __init__(self, url: str, timeout: float = 60.0, token: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=url, timeout=timeout, headers=headers)

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            try:
                body = response.json()
                message = str(body.get("message") or body)
            except ValueError:
                message = response.text[:200]
            raise DocentError(message)
        return response

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._check(self._http.request(method, url, **kwargs))
        except httpx.TransportError as exc:
            raise Unavailable(
                f"The Docent server at {self._http.base_url} did not answer ({exc}). "
                "Is it still running?"
            ) from exc

    def ingest(self, files: list[Path], collection: str, progress: FileProgress) -> dict[str, str]:
        outcome: dict[str, str] = {}
        jobs: dict[str, Path] = {}
        for path in files:
            try:
                response = self._request(
                    "POST",
                    "/api/documents",
                    files={"files": (path.name, path.read_bytes())},
                    data={"collection": collection},
                )
            except DocentError as exc:
                outcome[str(path)] = f"rejected: {exc.message}"
                progress(path.name, "rejected", 0, 0)
                continue
            item = response.json()["files"][0]
            if item["duplicate"]:
                outcome[str(path)] = "unchanged"
                progress(path.name, "unchanged", 1, 1)
            else:
                jobs[item["job_id"]] = path
        while jobs:
            for job_id, path in list(jobs.items()):
                job = self._request("GET", f"/api/jobs/{job_id}").json()
                progress(path.name, "indexing", job["chunks_indexed"], job["chunks_total"])
                if job["status"] in ("indexed", "failed"):
                    label = job["status"]
                    if job["status"] == "failed":
                        label = f"failed: {job['error']}"
                    outcome[str(path)] = label
                    progress(path.name, job["status"], 1, 1)
                    del jobs[job_id]
            if jobs:
                time.sleep(0.3)
        return outcome

    def search(self, query: str, top_k: int, collection: str | None, mode: str) -> list[ChunkHit]:
        body = {"query": query, "top_k": top_k, "collection": collection, "mode": mode}
        hits = self._request("POST", "/api/search", json=body).json()["hits"]
        return [ChunkHit.model_validate(h) for h in hits]

    def ask(self, question: str, collection: str | None) -> Iterator[tuple[str, dict[str, Any]]]:
        body = {"question": question, "collection": collection}
        try:
            with self._http.stream("POST", "/api/chat", json=body) as response:
                self._check(response) if response.status_code >= 400 else None
                event = "message"
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        yield event, json.loads(line[5:].strip())
        except httpx.TransportError as exc:
            raise Unavailable(
                f"The connection to the Docent server was lost ({exc}). Ask again."
            ) from exc

    def documents(self) -> list[DocumentInfo]:
        return [
            DocumentInfo.model_validate(d) for d in self._request("GET", "/api/documents").json()
        ]

    def delete(self, document_id: str) -> None:
        self._request("DELETE", f"/api/documents/{document_id}")

    def close(self) -> None:
        self._http.close()
