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
    from llama_index.core import Document
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.core.schema import TextNode

    splitter = SentenceSplitter(
        chunk_size=chunk_tokens,
        chunk_overlap=overlap_tokens,
        tokenizer=tokenizer,
        include_metadata=False,
        include_prev_next_rel=False,
    )
    nodes = splitter.get_nodes_from_documents([Document(text=parsed.text)])
    drafts: list[ChunkDraft] = []
    cursor = 0
    for node in nodes:
        text = node.get_content()
        if not text.strip():
            continue
        start = node.start_char_idx if isinstance(node, TextNode) else None
        if start is None or parsed.text[start : start + len(text)] != text:
            # The splitter could not place the chunk; find it ourselves after the last one.
            found = parsed.text.find(text, cursor)
            start = found if found >= 0 else parsed.text.find(text)
        if start is None or start < 0:
            raise ValueError("a chunk could not be located in its source text")
        end = start + len(text)
        cursor = start + 1
        drafts.append(
            ChunkDraft(
                n=len(drafts),
                start=start,
                end=end,
                page=parsed.page_at(start),
                text=text,
                content_hash=content_hash(text),
            )
        )
    return drafts
