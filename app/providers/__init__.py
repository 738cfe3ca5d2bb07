"""Answer generators behind one protocol. The fallback chain and vendor adapters arrive with
the answer-engine issue; every provider streams text pieces for a ``GenerationRequest``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from app.models import ChunkHit


@dataclass
class GenerationRequest:
    question: str
    sources: list[ChunkHit]
    """Numbered from 1 in this order; an answer cites them as [1], [2], ..."""
    history: list[tuple[str, str]] = field(default_factory=list)


class Provider(Protocol):
    name: str
    model: str

    def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        """Yield the answer text in pieces as it is produced."""
        ...
