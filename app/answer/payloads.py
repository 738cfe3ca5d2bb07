"""The data of answer events: sources, citations, errors, fixed messages."""

from __future__ import annotations

import re
from typing import Any

from app.answer.audit import Trail
from app.errors import AllProvidersFailed, DocentError, StreamInterrupted
from app.models import AnswerEvent, ChunkHit

_MARKER = re.compile(r"\[(\d{1,3})\]")

SAFE_ANSWER = (
    "I could not check an answer to this question against the documents well enough to show "
    "it, and this topic needs care. A reviewer will look at it. Meanwhile, the passages I "
    "found are listed under Sources."
)
REFUSED = (
    "The language model declined to answer this question. Rephrase it, or ask your "
    "administrator if you think it should be answerable."
)


def snippet(text: str, limit: int = 280) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def source_payload(n: int, hit: ChunkHit) -> dict[str, Any]:
    return {
        "n": n,
        "chunk_id": hit.chunk_id,
        "document_id": hit.document_id,
        "title": hit.title,
        "collection": hit.collection,
        "version": hit.version,
        "page": hit.page,
        "start": hit.start,
        "end": hit.end,
        "score": hit.score,
        "snippet": snippet(hit.text),
    }


def meta_event(trail: Trail, chain: list[str], cache: str) -> AnswerEvent:
    """The first event: what this answer is and how it will be made."""
    return AnswerEvent(
        event="meta",
        data={
            "answer_id": trail.answer_id,
            "conversation_id": trail.conversation_id,
            "question": trail.condensed_question or trail.question,
            "risk": trail.risk,
            "risk_reasons": trail.risk_reasons,
            "tier": trail.tier,
            "tier_reasons": trail.tier_reasons,
            "chain": chain,
            "cache": cache,
            "prompt_version": trail.prompt_version,
        },
    )


def cited_numbers(text: str, count: int) -> tuple[list[int], int]:
    """The [n] markers that point at one of ``count`` sources, in order of first use, and how
    many did not."""
    cited: list[int] = []
    dangling = 0
    for match in _MARKER.finditer(text):
        n = int(match.group(1))
        if not 1 <= n <= count:
            dangling += 1
        elif n not in cited:
            cited.append(n)
    return cited, dangling


def resolve_citations(text: str, sources: list[ChunkHit]) -> tuple[list[dict[str, Any]], int]:
    """Markers that point at a retrieved source, in order of first use, and how many did not."""
    numbers, dangling = cited_numbers(text, len(sources))
    return [source_payload(n, sources[n - 1]) for n in numbers], dangling


def release_pieces(text: str, words: int = 4) -> list[str]:
    """Validated text released in small pieces, so it still reads as a stream."""
    parts = text.split(" ")
    return [
        (" " if i else "") + " ".join(parts[i : i + words]) for i in range(0, len(parts), words)
    ]


def error_event(exc: DocentError, answer_id: str) -> AnswerEvent:
    data: dict[str, Any] = {
        "code": exc.code,
        "message": exc.message,
        "retryable": exc.status >= 500,
        "request_id": answer_id,
    }
    if isinstance(exc, AllProvidersFailed):
        data["retry_after"] = 30
    if isinstance(exc, StreamInterrupted):
        data["retryable"] = True
        data["partial"] = True
        data["message"] = (
            "The language model stopped in the middle of this answer, so what is shown is "
            "incomplete. Ask again to get a whole answer."
        )
    return AnswerEvent(event="error", data=data)
