"""JSON and SSE endpoints. Each handler is a route and one call into a use case."""

from __future__ import annotations

import re
from typing import Any

import anyio
from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import State, UploadFile
from litestar.response import Stream
from sqlalchemy import func, select

from app.answer import metrics, review
from app.answer.answer import answer
from app.answer.audit import record_feedback
from app.db.tables import Chunk, Document, Job
from app.errors import InvalidRequest
from app.models import (
    ChatRequest,
    DocumentInfo,
    FeedbackRequest,
    JobInfo,
    JobStatus,
    PassageInContext,
    ReviewDecision,
    SearchRequest,
    SearchResponse,
    UploadedFile,
    UploadResult,
)
from app.services import Services
from app.web.auth import admin_only, owner_of, principal_of
from app.web.render import render_answer, with_html
from app.web.sse import answer_stream, sse_response
from ingest import catalog
from ingest.worker import BackgroundWorker

_COLLECTION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _services(state: State) -> Services:
    services: Services = state.services
    return services


def _tenant(state: State) -> str:
    return _services(state).settings.default_tenant


class DocumentController(Controller):
    path = "/api"
    tags = ["documents"]  # noqa: RUF012 (Litestar reads a list)

    @post(
        "/documents", status_code=202, summary="Upload one or many documents", guards=[admin_only]
    )
    async def upload(self, request: Request[Any, Any, Any], state: State) -> UploadResult:
        """Multipart form: one or more ``files`` fields and an optional ``collection``.
        Returns a job per file; poll ``GET /api/jobs/{id}`` to watch it get indexed."""
        services = _services(state)
        form = await request.form()
        files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
        if not files:
            raise InvalidRequest(
                "Attach at least one file as multipart form data in a field named 'files'."
            )
        collection = str(form.get("collection") or services.settings.default_collection)
        if not _COLLECTION.match(collection):
            raise InvalidRequest(
                "A collection name is 1-64 letters, digits, '.', '_' or '-', starting with a "
                "letter or digit."
            )
        contents = [(f.filename or "", await f.read()) for f in files]
        results = await anyio.to_thread.run_sync(
            services.ingestor.receive_many, _tenant(state), collection, contents
        )
        worker: BackgroundWorker = state.worker
        worker.notify()
        return UploadResult(files=results)

    @post(
        "/documents/{document_id:str}/reindex",
        status_code=202,
        sync_to_thread=True,
        summary="Index a document again from its stored file, as a new version",
        guards=[admin_only],
    )
    def reindex(self, state: State, document_id: str) -> UploadedFile:
        services = _services(state)
        uploaded = services.ingestor.reindex(_tenant(state), document_id)
        worker: BackgroundWorker | None = getattr(state, "worker", None)
        if worker is not None:
            worker.notify()
        return uploaded

    @get("/documents", sync_to_thread=True, summary="List documents")
    def list_documents(self, state: State, collection: str | None = None) -> list[DocumentInfo]:
        return catalog.list_documents(_services(state).db, _tenant(state), collection)

    @get("/documents/{document_id:str}", sync_to_thread=True, summary="One document")
    def get_document(self, state: State, document_id: str) -> DocumentInfo:
        return catalog.get_document(_services(state).db, _tenant(state), document_id)

    @delete(
        "/documents/{document_id:str}",
        sync_to_thread=True,
        summary="Delete a document",
        guards=[admin_only],
    )
    def delete_document(self, state: State, document_id: str) -> None:
        _services(state).delete_document(_tenant(state), document_id)

    @get(
        "/passages/{chunk_id:str}",
        sync_to_thread=True,
        summary="A cited passage in the text around it",
    )
    def passage(self, state: State, chunk_id: str) -> PassageInContext:
        """What a citation's ``chunk_id`` points at: the passage with the document text
        before and after it, its title and page."""
        return catalog.passage_in_context(_services(state).db, _tenant(state), chunk_id)

    @get("/jobs/{job_id:str}", sync_to_thread=True, summary="An ingestion job's progress")
    def get_job(self, state: State, job_id: str) -> JobInfo:
        return catalog.get_job(_services(state).db, _tenant(state), job_id)


class SearchController(Controller):
    path = "/api"
    tags = ["search and chat"]  # noqa: RUF012

    @post("/search", status_code=200, sync_to_thread=True, summary="Hybrid search")
    def search(self, state: State, data: SearchRequest) -> SearchResponse:
        from app.answer.retrieve import timed_search

        services = _services(state)
        hits, took = timed_search(
            services.retriever,
            _tenant(state),
            data.query,
            data.top_k,
            data.collection,
            data.mode,
        )
        return SearchResponse(query=data.query, hits=hits, took_ms=round(took, 2))

    @post("/chat", status_code=200, summary="Ask a question; the answer streams as SSE")
    async def chat(
        self, request: Request[Any, Any, Any], state: State, data: ChatRequest
    ) -> Stream:
        """Events: meta, sources, status, delta, reset, citations, grounding, then done or
        error (see ARCHITECTURE.md); comment lines keep an idle stream open. With
        ``render: "html"``, also ``render`` events and ``done.html`` (app/web/render.py)."""
        services = _services(state)
        deps, tenant = services.answers, _tenant(state)

        interval = services.settings.sse_keepalive_s
        events = answer(deps, tenant, data, owner=owner_of(request))
        if data.render == "html":
            events = with_html(events)
        return sse_response(answer_stream(events), interval)


class ConversationController(Controller):
    path = "/api"
    tags = ["search and chat"]  # noqa: RUF012

    @get("/conversations", sync_to_thread=True, summary="Recent conversations")
    def conversations(
        self, request: Request[Any, Any, Any], state: State
    ) -> list[dict[str, object]]:
        """The caller's own conversations."""
        return _services(state).answers.conversations.list(_tenant(state), owner_of(request))

    @get(
        "/conversations/{conversation_id:str}",
        sync_to_thread=True,
        summary="A conversation's questions and answers",
    )
    def conversation(
        self, request: Request[Any, Any, Any], state: State, conversation_id: str
    ) -> dict[str, Any]:
        """Answers carry their sources, grounding verdicts and sanitised ``html``."""
        found = _services(state).answers.conversations.transcript(
            _tenant(state), conversation_id, owner_of(request)
        )
        for turn in found["messages"]:
            if turn["role"] == "assistant":
                turn["html"] = render_answer(
                    turn["content"], len(turn["sources"]), turn["grounding"]
                )
        return found

    @post(
        "/answers/{answer_id:str}/feedback",
        status_code=200,
        sync_to_thread=True,
        summary="Thumbs up or down on an answer, with an optional comment",
    )
    def feedback(self, state: State, answer_id: str, data: FeedbackRequest) -> dict[str, bool]:
        services = _services(state)
        services.answers.lanes.flush_writes()  # the answer's audit row may be on its way
        record_feedback(services.db, _tenant(state), answer_id, data.rating, data.comment)
        return {"ok": True}


@get(
    "/api/metrics",
    sync_to_thread=True,
    guards=[admin_only],
    tags=["operations"],
    summary="The dashboard's figures, from the audit rows",
)
def answer_metrics(state: State, days: int = 14) -> dict[str, Any]:
    """Per day: answers, cost, cache hit rate, grounding pass rate, errors; time per pipeline
    step; time to first token; provider failures by provider and kind."""
    return metrics.dashboard(_services(state).db, _tenant(state), min(max(days, 1), 365))


class ReviewController(Controller):
    """The review queue (admins): high-risk answers that could not be validated."""

    path = "/api/review"
    tags = ["review"]  # noqa: RUF012
    guards = [admin_only]  # noqa: RUF012

    @get("/", sync_to_thread=True, summary="Review items (pending by default)")
    def items(self, state: State, status: str | None = "pending") -> list[dict[str, Any]]:
        """``status``: pending, approved, edited, rejected, or empty for all."""
        return review.list_items(_services(state).db, _tenant(state), status or None)

    @get("/{item_id:str}", sync_to_thread=True, summary="One review item with its sources")
    def item(self, state: State, item_id: str) -> dict[str, Any]:
        found = review.get_item(_services(state).db, _tenant(state), item_id)
        found["draft_html"] = render_answer(
            found["draft"], len(found["sources"]), found["grounding"]
        )
        return found

    @post(
        "/{item_id:str}/decision",
        status_code=200,
        sync_to_thread=True,
        summary="Approve, edit or reject; optionally promote into the cache",
    )
    def decide(
        self, request: Request[Any, Any, Any], state: State, item_id: str, data: ReviewDecision
    ) -> dict[str, Any]:
        services = _services(state)
        who = principal_of(request)
        return review.decide(
            services.db,
            services.answers.cache,
            _tenant(state),
            item_id,
            data.action,
            reviewer=who.name if who else "someone",
            text=data.text,
            promote=data.promote,
        )


@get("/health", sync_to_thread=True, tags=["operations"], summary="Liveness and counts")
def health(state: State) -> Response[dict[str, Any]]:
    services = _services(state)
    try:
        with services.db.session() as s:
            documents = s.scalar(select(func.count()).select_from(Document)) or 0
            chunks = s.scalar(select(func.count()).select_from(Chunk)) or 0
            pending = (
                s.scalar(
                    select(func.count())
                    .select_from(Job)
                    .where(
                        Job.status.in_([JobStatus.received, JobStatus.parsed, JobStatus.chunked])
                    )
                )
                or 0
            )
    except Exception:
        return Response({"status": "degraded", "database": "unavailable"}, status_code=503)
    return Response(
        {
            "status": "ok",
            "documents": documents,
            "chunks": chunks,
            "pending_jobs": pending,
            "embedder": services.embedder.name,
            "index": services.settings.index_backend,
        }
    )
