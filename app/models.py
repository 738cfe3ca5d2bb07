"""Pydantic types shared by every layer: what goes over the API and between packages."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field


class JobStatus(StrEnum):
    received = "received"
    parsed = "parsed"
    chunked = "chunked"
    indexed = "indexed"
    failed = "failed"


class PassageInContext(BaseModel):
    """A cited chunk inside the text around it, for a reader checking a citation."""

    chunk_id: str
    document_id: str
    title: str
    filename: str
    version: int
    page: int | None
    start: int
    end: int
    before: str
    passage: str
    after: str


class DocumentInfo(BaseModel):
    id: str
    tenant: str
    collection: str
    title: str
    filename: str
    content_type: str
    size_bytes: int
    sha256: str
    version: int = Field(description="Version being served (0 before the first is indexed).")
    status: JobStatus = Field(description="Status of the newest version's ingestion job.")
    error: str | None = None
    chunk_count: int
    pages: int | None = None
    created_at: datetime
    updated_at: datetime


class JobInfo(BaseModel):
    id: str
    document_id: str
    version: int
    status: JobStatus
    error: str | None = None
    chunks_total: int = 0
    chunks_indexed: int = 0
    created_at: datetime
    updated_at: datetime


class UploadedFile(BaseModel):
    filename: str
    document_id: str
    job_id: str
    version: int
    duplicate: bool = Field(
        description="True when these exact bytes were already uploaded: nothing is re-indexed."
    )


class UploadResult(BaseModel):
    files: list[UploadedFile]


class SearchRequest(BaseModel):
    query: str = Field(min_length=1, max_length=2000)
    top_k: int = Field(default=5, ge=1, le=50)
    collection: str | None = Field(
        default=None, description="Search one collection; omit to search all of them."
    )
    mode: Literal["hybrid", "dense", "sparse"] = "hybrid"


class ChunkHit(BaseModel):
    chunk_id: str
    document_id: str
    title: str
    collection: str
    version: int
    page: int | None = Field(description="1-based PDF page the chunk starts on, if paged.")
    start: int = Field(description="Character offset of the chunk in the document's text.")
    end: int
    text: str
    score: float


class SearchResponse(BaseModel):
    query: str
    hits: list[ChunkHit]
    took_ms: float


class ChatMessage(BaseModel):
    role: Literal["user", "assistant"]
    content: str = Field(max_length=8000)


class ChatRequest(BaseModel):
    question: str = Field(min_length=1, max_length=4000)
    collection: str | None = None
    conversation_id: str | None = Field(
        default=None,
        description="Continue a stored conversation: its earlier turns are used to understand "
        "a follow-up. Omit to start a new one (its id comes back in the meta event).",
    )
    history: list[ChatMessage] = Field(
        default_factory=list,
        max_length=50,
        description="Earlier turns, for clients that keep their own conversation state; "
        "ignored when conversation_id is given.",
    )
    use_cache: bool = Field(default=True, description="Allow an earlier validated answer.")
    min_cache_similarity: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Raise (never lower) the similarity a cached question needs.",
    )
    render: Literal["html"] | None = Field(
        default=None,
        description="'html': also send the answer as sanitised HTML (rendered Markdown with "
        "citation links and grounding marks): `render` events while it streams, and `html` in "
        "`done`. For web pages; API clients usually render the text themselves.",
    )


class ReviewDecision(BaseModel):
    action: Literal["approve", "edit", "reject"]
    text: str | None = Field(
        default=None, max_length=20000, description="The corrected answer, for 'edit'."
    )
    promote: bool = Field(
        default=False,
        description="Also serve the approved text from the answer cache as a curated answer.",
    )


class FeedbackRequest(BaseModel):
    rating: Literal["up", "down"]
    comment: str | None = Field(default=None, max_length=2000)


class AnswerEvent(BaseModel):
    """One server-sent event of an answer stream (see ARCHITECTURE.md, SSE contract)."""

    event: Literal[
        "meta",
        "sources",
        "status",
        "delta",
        "reset",
        "citations",
        "grounding",
        "done",
        "error",
        "render",
    ]
    data: dict[str, Any]
