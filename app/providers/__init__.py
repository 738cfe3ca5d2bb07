"""Answer generators behind one protocol.

A provider streams one answer for a ``GenerationRequest``: text pieces (``str``) as they
arrive, then exactly one ``Finished`` with the stop reason and token usage. Anything else is a
``ProviderError`` (app/errors.py), translated from the vendor's own errors inside the adapter:

- ``offline.py``: extractive answers from the sources; no key, no network.
- ``anthropic.py``: the Anthropic Messages API (official SDK, streaming).
- ``openai_chat.py``: OpenAI chat completions, or any compatible server through base_url.
- ``fallback.py``: the chain that tries them in order, with deadlines and circuit breakers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from app.models import ChunkHit

StopReason = Literal["stop", "length", "refused"]


@dataclass
class GenerationRequest:
    question: str
    sources: list[ChunkHit]
    """Numbered from 1 in this order; an answer cites them as [1], [2], ..."""
    history: list[tuple[str, str]] = field(default_factory=list)
    system: str = ""
    """The rendered system prompt (app/answer/prompts)."""
    prompt: str = ""
    """The rendered user message: the question with the sources as delimited data."""
    max_tokens: int = 1024
    request_id: str = ""
    strict: bool = False
    """A second attempt after failed validation: stricter instructions."""
    shorten: Callable[[GenerationRequest], bool] | None = None
    """Make this request's prompt shorter, in place (fewer sources, the best kept); False if
    it cannot be. The chain calls it once when a model says the prompt exceeds its context."""


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    estimated: bool = False
    """True when the provider did not report usage and it was counted here."""


@dataclass
class Finished:
    stop_reason: StopReason
    usage: Usage


class Provider(Protocol):
    name: str
    """Kind and model, as written in the chain setting: ``anthropic:claude-sonnet-4-5``."""
    model: str

    def stream(self, request: GenerationRequest) -> AsyncIterator[str | Finished]:
        """Yield the answer text in pieces as it is produced, then one ``Finished``."""
        ...


def estimate_tokens(text: str) -> int:
    """About four characters a token: for usage a provider did not report."""
    return (len(text) + 3) // 4
