"""Split parsed text into chunks with LlamaIndex's SentenceSplitter, keeping exact offsets."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ingest.parse import ParsedText

# Namespace for chunk ids: uuid5(tenant/document/version/n) is stable across re-runs.
CHUNK_NAMESPACE = uuid.UUID("6f1c2d64-8a59-4c1e-9a0e-2a4d7f5b9c31")


def chunk_id(tenant: str, document_id: str, version: int, n: int) -> str:
    return str(uuid.uuid5(CHUNK_NAMESPACE, f"{tenant}/{document_id}/{version}/{n}"))


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ChunkDraft:
    n: int
    start: int
    end: int
    page: int | None
    text: str
    content_hash: str


def split(
    parsed: ParsedText,
    chunk_tokens: int,
    overlap_tokens: int,
    tokenizer: Callable[[str], list[Any]],
) -> list[ChunkDraft]:
    from llama_index.core.node_parser.text.sentence import SentenceSplitter
    from llama_index.core.schema import Document

    splitter = SentenceSplitter(
        chunk_size=chunk_tokens,
        chunk_overlap=overlap_tokens,
        tokenizer=tokenizer,
        include_metadata=False,
        include_prev_next_rel=False,
    )
    drafts: list[ChunkDraft] = []
    # A PDF is split page by page, so every chunk (and so every citation) has one page.
    for seg_start, seg_end, page in parsed.segments():
        segment = parsed.text[seg_start:seg_end]
        if not segment.strip():
            continue
        previous = ""
        previous_end = 0
        for node in splitter.get_nodes_from_documents([Document(text=segment)]):
            text = node.get_content()
            if not text.strip():
                continue
            # Place the chunk ourselves: the splitter's own search can land on an earlier copy
            # of repeated text. A chunk starts where the previous one ends, less the overlap
            # the splitter carried over (at most ``overlap_tokens`` tokens).
            carried = _carried_overlap(previous, text, overlap_tokens, tokenizer)
            start = segment.find(text, previous_end - carried)
            if start < 0:
                raise ValueError("a chunk could not be located in its source text")
            previous, previous_end = text, start + len(text)
            drafts.append(
                ChunkDraft(
                    n=len(drafts),
                    start=seg_start + start,
                    end=seg_start + start + len(text),
                    page=page,
                    text=text,
                    content_hash=content_hash(text),
                )
            )
    return drafts


def _carried_overlap(
    previous: str, text: str, overlap_tokens: int, tokenizer: Callable[[str], list[Any]]
) -> int:
    """Length of the longest end of ``previous`` that begins ``text`` and fits the overlap."""
    if not previous:
        return 0
    last = previous[-1]
    for length in range(min(len(previous) - 1, len(text)), 0, -1):
        if text[length - 1] != last:
            continue  # cheap test first: the overlap must end with previous's last character
        head = text[:length]
        if previous.endswith(head) and len(tokenizer(head)) <= overlap_tokens:
            return length
    return 0
