"""The offline generator: no key, no network, no language model.

It answers by quoting the source sentences most relevant to the question, each followed by
the [n] of the source it came from. Relevance blends the embedder's cosine similarity with the
share of the question's content words a sentence contains; when no sentence reaches the
threshold it says plainly that the documents do not answer the question.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np

from app.embeddings import Embedder
from app.providers import Finished, GenerationRequest, Usage, estimate_tokens

NO_ANSWER = (
    "The documents I can search do not answer this question. The closest passages are listed "
    "under Sources; try rephrasing, or upload a document that covers it."
)
NO_SOURCES = (
    "There are no documents to answer from yet. Upload some on the Upload page (or with "
    "`docent ingest PATH`), then ask again."
)

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[`*]?[A-Z0-9])")
_WORD = re.compile(r"[a-z0-9]+")
# Command lines and code: option flags, braces, pipes, prompts, a leading command or path.
_CODE = re.compile(r"(?:^|\s)--?[A-Za-z]|[{}|$<>\\]|^(?:curl|docent|python|pip|\.venv/)\b")
_MARKUP = re.compile(r"^\s*(?:#{1,6}\s+|[-*+]\s+|\d+\.\s+|>\s*)")
STOPWORDS = frozenset(
    [
        "a",
        "about",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "been",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "of",
        "on",
        "or",
        "our",
        "please",
        "should",
        "so",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
    ]
)


def content_words(text: str) -> set[str]:
    return {_stem(w) for w in _WORD.findall(text.lower()) if w not in STOPWORDS and len(w) > 1}


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


@dataclass
class Candidate:
    source: int
    position: int
    text: str


def candidate_sentences(text: str) -> list[str]:
    """Sentences of a chunk: hard-wrapped lines joined into paragraphs, list items kept apart,
    headings, tables and code left out."""
    paragraphs: list[str] = []
    current: list[str] = []
    in_code = False

    def flush() -> None:
        if current:
            paragraphs.append(" ".join(current))
            current.clear()

    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            flush()
            in_code = not in_code
            continue
        if in_code:
            continue
        if not stripped or stripped.startswith("|") or re.match(r"^#{1,6}\s", stripped):
            flush()  # headings name a topic; they do not state anything
            continue
        if _MARKUP.match(stripped):
            flush()
        current.append(_MARKUP.sub("", stripped))
    flush()
    out: list[str] = []
    for paragraph in paragraphs:
        for sentence in _SENTENCE_END.split(paragraph):
            sentence = sentence.strip()
            if len(sentence.split()) >= 4 and _is_prose(sentence):
                out.append(sentence)
    return out


def _is_prose(sentence: str) -> bool:
    """A statement in words: not a question, not a command line or a table row."""
    if sentence.endswith("?") or _CODE.search(sentence):
        return False
    wordy = sum(ch.isalpha() or ch.isspace() for ch in sentence)
    return wordy / len(sentence) >= 0.8


class OfflineProvider:
    name = "offline"
    model = "extractive"

    def __init__(
        self,
        embedder: Embedder,
        min_similarity: float = 0.35,
        max_sentences: int = 4,
        max_candidates: int = 64,
        pace_ms: int = 0,
    ) -> None:
        self._pace_s = pace_ms / 1000
        self._embedder = embedder
        self._threshold = min_similarity
        self._max_sentences = max_sentences
        self._max_candidates = max_candidates

    def compose(self, request: GenerationRequest) -> str:
        if not request.sources:
            return NO_SOURCES
        candidates: list[Candidate] = []
        for n, hit in enumerate(request.sources, start=1):
            for i, sentence in enumerate(candidate_sentences(hit.text)):
                candidates.append(Candidate(n, i, sentence))
        candidates = candidates[: self._max_candidates]
        if not candidates:
            return NO_ANSWER
        vectors = np.asarray(
            self._embedder.embed_documents([request.question] + [c.text for c in candidates]),
            dtype=np.float32,
        )
        cosine = vectors[1:] @ vectors[0]
        q_words = content_words(request.question)
        scores: list[float] = []
        for c, cos in zip(candidates, cosine, strict=True):
            overlap = len(q_words & content_words(c.text)) / len(q_words) if q_words else 0.0
            scores.append(0.75 * float(cos) + 0.25 * overlap)
        best = max(scores)
        if best < self._threshold:
            return NO_ANSWER
        # Keep the best sentences that are close to the top one, without repeating a sentence.
        floor = max(self._threshold, best * 0.7)
        ranked = sorted(range(len(candidates)), key=lambda i: scores[i], reverse=True)
        chosen: list[int] = []
        seen: set[str] = set()
        for i in ranked:
            key = candidates[i].text.lower()
            if scores[i] < floor or len(chosen) >= self._max_sentences:
                break
            if key not in seen:
                seen.add(key)
                chosen.append(i)
        chosen.sort(key=lambda i: (candidates[i].source, candidates[i].position))
        return " ".join(f"{candidates[i].text} [{candidates[i].source}]" for i in chosen)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str | Finished]:
        text = await asyncio.to_thread(self.compose, request)
        words = text.split(" ")
        for i in range(0, len(words), 3):
            piece = " ".join(words[i : i + 3])
            yield piece if i == 0 else " " + piece
            await asyncio.sleep(self._pace_s)
        usage = Usage(
            estimate_tokens(request.question + "".join(h.text for h in request.sources)),
            estimate_tokens(text),
            estimated=True,
        )
        yield Finished("stop", usage)
