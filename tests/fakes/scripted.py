"""An in-process provider that follows a script: the answer path's tests use it through the
same ``Provider`` seam as the real adapters (the HTTP-level fake is llm_server.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

from app.errors import ProviderError
from app.providers import Finished, GenerationRequest, StopReason, Usage


def fail(kind: str, retryable: bool, retry_after: float | None = None) -> ProviderError:
    return ProviderError(
        f"scripted {kind}",
        provider="?",
        kind=kind,  # type: ignore[arg-type]
        retryable=retryable,
        retry_after=retry_after,
    )


@dataclass
class Say:
    """Stream ``text`` (or text computed from the request), word by word."""

    text: str | Callable[[GenerationRequest], str]
    stop: StopReason = "stop"
    stall_after: int | None = None
    """Stop sending after this many words and hang (a stalled upstream)."""
    delay_s: float = 0.0


def quote_first_source(request: GenerationRequest) -> str:
    """The first sentence of source 1, cited: an answer the grounding check supports."""
    first = request.sources[0].text.split(". ")[0].rstrip(".") + "."
    return f"{first} [1]"


@dataclass
class ScriptedProvider:
    name: str
    steps: list[Any] = field(default_factory=list)
    model: str = "scripted"
    default: Say = field(default_factory=lambda: Say(quote_first_source))
    calls: int = 0
    closed: int = 0
    requests: list[GenerationRequest] = field(default_factory=list)

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[str | Finished, None]:
        self.calls += 1
        self.requests.append(request)
        step = self.steps.pop(0) if self.steps else self.default
        try:
            if isinstance(step, ProviderError):
                step.provider = self.name
                raise step
            assert isinstance(step, Say)
            if step.delay_s:
                await asyncio.sleep(step.delay_s)
            text = step.text(request) if callable(step.text) else step.text
            words = text.split(" ")
            for i, word in enumerate(words):
                if step.stall_after is not None and i == step.stall_after:
                    await asyncio.sleep(3600)
                yield word if i == 0 else " " + word
            yield Finished(step.stop, Usage(100, len(words)))
        finally:
            self.closed += 1
