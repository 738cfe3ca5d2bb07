"""Answering a question, as a stream of events (ARCHITECTURE.md, "SSE event contract").

    meta -> sources -> delta* -> citations -> done        (or error, at any point)

Retrieval runs first; the provider then streams text, which is passed on as it arrives; the
[n] markers of the final text are resolved against the sources. Every stream ends with exactly
one ``done`` or ``error``. Cancellation (a client that leaves) propagates from the consumer of
this generator into the provider stream, which is iterated here and nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from app.answer.retrieve import Retriever
from app.errors import DocentError
from app.models import AnswerEvent, ChatRequest, ChunkHit
from app.providers import GenerationRequest, Provider

log = logging.getLogger(__name__)

_MARKER = re.compile(r"\[(\d{1,3})\]")


@dataclass
class AnswerDeps:
    retriever: Retriever
    provider: Provider
    sources: int = 5


def _snippet(text: str, limit: int = 280) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def source_payload(n: int, hit: ChunkHit) -> dict[str, object]:
    return {
        "n": n,
        "chunk_id": hit.chunk_id,
        "document_id": hit.document_id,
        "title": hit.title,
        "page": hit.page,
        "start": hit.start,
        "end": hit.end,
        "score": hit.score,
        "snippet": _snippet(hit.text),
    }


def resolve_citations(text: str, sources: list[ChunkHit]) -> tuple[list[dict[str, object]], int]:
    """Markers that point at a retrieved source, in order of first use, and how many did not."""
    cited: list[dict[str, object]] = []
    seen: set[int] = set()
    dangling = 0
    for match in _MARKER.finditer(text):
        n = int(match.group(1))
        if not 1 <= n <= len(sources):
            dangling += 1
            continue
        if n in seen:
            continue
        seen.add(n)
        cited.append(source_payload(n, sources[n - 1]))
    return cited, dangling


async def answer(deps: AnswerDeps, tenant: str, request: ChatRequest) -> AsyncIterator[AnswerEvent]:
    answer_id = str(uuid.uuid4())
    started = time.perf_counter()
    yield AnswerEvent(
        event="meta",
        data={
            "answer_id": answer_id,
            "risk": "low",
            "tier": "offline" if deps.provider.name == "offline" else "default",
            "provider": deps.provider.name,
            "model": deps.provider.model,
            "cache": "miss",
        },
    )
    try:
        sources = await asyncio.to_thread(
            deps.retriever.search, tenant, request.question, deps.sources, request.collection
        )
        retrieved = time.perf_counter()
        yield AnswerEvent(
            event="sources",
            data={"sources": [source_payload(n, h) for n, h in enumerate(sources, start=1)]},
        )
        parts: list[str] = []
        first_token: float | None = None
        generation = GenerationRequest(
            question=request.question,
            sources=sources,
            history=[(m.role, m.content) for m in request.history],
        )
        async for piece in deps.provider.stream(generation):
            if first_token is None:
                first_token = time.perf_counter()
            parts.append(piece)
            yield AnswerEvent(event="delta", data={"text": piece})
        text = "".join(parts)
        cited, dangling = resolve_citations(text, sources)
        yield AnswerEvent(event="citations", data={"citations": cited, "dangling": dangling})
        finished = time.perf_counter()
        yield AnswerEvent(
            event="done",
            data={
                "answer_id": answer_id,
                "text": text,
                "usage": {"input_tokens": 0, "output_tokens": len(text.split())},
                "cost": 0.0,
                "timings": {
                    "retrieve_ms": round((retrieved - started) * 1000, 1),
                    "first_token_ms": round(((first_token or finished) - started) * 1000, 1),
                    "total_ms": round((finished - started) * 1000, 1),
                },
            },
        )
    except DocentError as exc:
        yield AnswerEvent(
            event="error",
            data={
                "code": exc.code,
                "message": exc.message,
                "retryable": exc.status >= 500,
                "request_id": answer_id,
            },
        )
    except Exception:
        log.exception("answer %s failed", answer_id)
        yield AnswerEvent(
            event="error",
            data={
                "code": "internal",
                "message": "Something went wrong while answering. Try again; if it keeps "
                "happening, tell your administrator the request id.",
                "retryable": True,
                "request_id": answer_id,
            },
        )
