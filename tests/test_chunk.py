"""ingest.chunk: chunks carry exact offsets into the parsed text, cover it in order with a small
overlap, stay within the token budget, and get stable ids and hashes."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import pytest

from app.embeddings import HashEmbedder
from ingest.chunk import ChunkDraft, chunk_id, content_hash, split
from ingest.parse import PAGE_SEPARATOR, ParsedText
from tests import docfactory as df

CHUNK_TOKENS = 120
OVERLAP_TOKENS = 20


@pytest.fixture(scope="module")
def tok() -> Callable[[str], list[Any]]:
    return HashEmbedder().tokenizer()


def check_invariants(
    parsed: ParsedText,
    chunks: list[ChunkDraft],
    tok: Callable[[str], list[Any]],
    chunk_tokens: int,
    overlap_tokens: int,
) -> None:
    """Everything that must hold for any text."""
    text = parsed.text
    assert chunks, "no chunks"
    assert [c.n for c in chunks] == list(range(len(chunks)))
    covered = bytearray(len(text))
    for c in chunks:
        assert 0 <= c.start < c.end <= len(text)
        assert text[c.start : c.end] == c.text, f"chunk {c.n} does not match its offsets"
        assert c.text == c.text.strip() and c.text
        assert c.content_hash == hashlib.sha256(c.text.encode("utf-8")).hexdigest()
        assert c.page == parsed.page_at(c.start)
        assert len(tok(c.text)) <= chunk_tokens, f"chunk {c.n} has {len(tok(c.text))} tokens"
        covered[c.start : c.end] = b"\x01" * (c.end - c.start)
    # ordered: strictly increasing starts and ends
    for a, b in pairwise(chunks):
        assert a.start < b.start, (a.n, a.start, b.start)
        assert a.end < b.end, (a.n, a.end, b.end)
        # neighbours either overlap by at most the overlap budget or leave only whitespace
        if b.start < a.end:
            shared = text[b.start : a.end]
            assert len(tok(shared)) <= overlap_tokens, (
                f"chunks {a.n} and {b.n} share {len(tok(shared))} tokens: not their own positions"
            )
        else:
            assert text[a.end : b.start].strip() == "", f"text lost between {a.n} and {b.n}"
    # every non-whitespace character belongs to some chunk
    lost = [i for i, ch in enumerate(text) if not ch.isspace() and not covered[i]]
    assert not lost, (
        f"{len(lost)} characters in no chunk, first at {lost[0]}: {text[lost[0] : lost[0] + 40]!r}"
    )
    assert chunks[0].start == len(text) - len(text.lstrip())
    assert chunks[-1].end == len(text.rstrip())


# --- long prose ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_parsed() -> ParsedText:
    return ParsedText(df.long_text(4000, seed=1))


@pytest.fixture(scope="module")
def long_chunks(long_parsed, tok) -> list[ChunkDraft]:
    return split(long_parsed, CHUNK_TOKENS, OVERLAP_TOKENS, tok)


def test_long_text_chunk_invariants(long_parsed, long_chunks, tok) -> None:
    assert len(long_parsed.text.split()) >= 4000
    # 4000 words at <= 120 tokens a chunk needs well over 30 chunks
    assert len(long_chunks) >= 4000 // CHUNK_TOKENS
    check_invariants(long_parsed, long_chunks, tok, CHUNK_TOKENS, OVERLAP_TOKENS)


def test_long_text_neighbours_mostly_overlap(long_parsed, long_chunks, tok) -> None:
    pairs = list(pairwise(long_chunks))
    overlapping = [(a, b) for a, b in pairs if b.start < a.end]
    # the splitter carries whole sentences over; one longer than the budget cannot be carried
    assert len(overlapping) >= 0.75 * len(pairs), f"{len(overlapping)}/{len(pairs)} overlap"
    for a, b in overlapping:
        shared = long_parsed.text[b.start : a.end]
        assert 0 < len(tok(shared)) <= OVERLAP_TOKENS
        assert a.text.endswith(shared) and b.text.startswith(shared)


def test_chunks_use_most_of_the_budget(long_chunks, tok) -> None:
    sizes = [len(tok(c.text)) for c in long_chunks[:-1]]
    assert sum(sizes) / len(sizes) >= CHUNK_TOKENS * 0.6


def test_split_is_deterministic(long_parsed, long_chunks, tok) -> None:
    assert split(long_parsed, CHUNK_TOKENS, OVERLAP_TOKENS, tok) == long_chunks


@pytest.mark.parametrize(("size", "overlap"), [(40, 0), (64, 8), (256, 32)])
def test_invariants_for_other_sizes(tok, size: int, overlap: int) -> None:
    parsed = ParsedText(df.long_text(1500, seed=size))
    chunks = split(parsed, size, overlap, tok)
    check_invariants(parsed, chunks, tok, size, overlap)
    if overlap == 0:
        assert all(b.start >= a.end for a, b in pairwise(chunks))


def test_short_text_is_one_chunk(tok) -> None:
    parsed = ParsedText("  \n A single short sentence.\n\n")
    (chunk,) = split(parsed, CHUNK_TOKENS, OVERLAP_TOKENS, tok)
    assert chunk.n == 0
    assert chunk.text == "A single short sentence."
    assert parsed.text[chunk.start : chunk.end] == chunk.text
    assert chunk.page is None


# --- pages -------------------------------------------------------------------------------------


def paged(pages: list[str]) -> ParsedText:
    """A ParsedText built the way parse._parse_pdf builds one."""
    starts, offset = [], 0
    for p in pages:
        starts.append(offset)
        offset += len(p) + len(PAGE_SEPARATOR)
    return ParsedText(PAGE_SEPARATOR.join(pages), starts)


def test_page_numbers_for_multi_page_text(tok) -> None:
    pages = [df.long_text(300, seed=10 + i) for i in range(5)]
    parsed = paged(pages)
    chunks = split(parsed, 60, 10, tok)
    check_invariants(parsed, chunks, tok, 60, 10)
    assert [c.page for c in chunks] == sorted(c.page for c in chunks)  # type: ignore[type-var]
    assert {c.page for c in chunks} == {1, 2, 3, 4, 5}
    for c in chunks:
        page = c.page
        assert page is not None
        start = parsed.page_starts[page - 1]
        end = parsed.page_starts[page] if page < len(pages) else len(parsed.text)
        assert start <= c.start < end
    # the chunk that begins each page is numbered with that page
    for k, start in enumerate(parsed.page_starts, start=1):
        first = next(c for c in chunks if c.start >= start)
        assert first.page == k


def test_unpaged_text_has_no_page(long_chunks) -> None:
    assert all(c.page is None for c in long_chunks)


# --- awkward texts ---------------------------------------------------------------------------


def test_unicode_text(tok) -> None:
    extras = [
        "Ünïcödé façade",
        "日本語の文章です。",
        "emoji 🚀🎉 here",
        "Ελληνικά λόγια",
        "naïve café —",
    ]
    base = df.long_text(2000, seed=5).split(". ")
    text = ". ".join(f"{s} {extras[i % len(extras)]}" for i, s in enumerate(base))
    parsed = ParsedText(text)
    chunks = split(parsed, 80, 12, tok)
    check_invariants(parsed, chunks, tok, 80, 12)
    assert any("🚀" in c.text for c in chunks)


def test_crlf_line_endings(tok) -> None:
    text = df.long_text(2000, seed=6).replace("\n", "\r\n")
    assert "\r\n\r\n" in text
    parsed = ParsedText(text)
    chunks = split(parsed, 80, 12, tok)
    check_invariants(parsed, chunks, tok, 80, 12)


def test_repeated_identical_paragraphs_keep_their_own_positions(tok) -> None:
    """A boilerplate paragraph repeated many times: each chunk must map to where it really is,
    not to an earlier identical copy of the same text."""
    para = (
        "The lighthouse keeper repaired the signal lamps before the storm arrived. "
        "Nobody asked why."
    )
    parsed = ParsedText("\n\n".join([para] * 40))
    chunks = split(parsed, 60, 10, tok)
    check_invariants(parsed, chunks, tok, 60, 10)


def test_repeated_paragraphs_between_distinct_text(tok) -> None:
    """Identical disclaimers between different sections (a footer on every page)."""
    footer = "Confidential: do not distribute. All rights reserved by the ferry company."
    sections = [df.long_text(120, seed=20 + i) for i in range(8)]
    parsed = ParsedText("\n\n".join(f"{s}\n\n{footer}" for s in sections))
    chunks = split(parsed, 50, 10, tok)
    check_invariants(parsed, chunks, tok, 50, 10)


def test_repeated_short_sentences(tok) -> None:
    parsed = ParsedText(" ".join(["Yes."] * 400))
    chunks = split(parsed, 60, 10, tok)
    check_invariants(parsed, chunks, tok, 60, 10)


# --- ids and hashes ----------------------------------------------------------------------------


def test_content_hash_is_sha256_of_utf8() -> None:
    for text in ["", "abc", "ünïcödé 🚀", "line\r\nbreak"]:
        assert content_hash(text) == hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert content_hash("a") != content_hash("b")


def test_chunk_id_is_a_stable_uuid() -> None:
    first = chunk_id("acme", "doc-1", 3, 7)
    assert first == chunk_id("acme", "doc-1", 3, 7)
    assert str(uuid.UUID(first)) == first
    assert uuid.UUID(first).version == 5


def test_chunk_id_differs_for_every_component() -> None:
    base = ("acme", "doc-1", 1, 0)
    variants = [
        base,
        ("other", "doc-1", 1, 0),
        ("acme", "doc-2", 1, 0),
        ("acme", "doc-1", 2, 0),
        ("acme", "doc-1", 1, 1),
    ]
    ids = [chunk_id(*v) for v in variants]
    assert len(set(ids)) == len(ids)
    # a whole grid stays collision-free
    grid = {
        chunk_id(t, d, v, n)
        for t in ("a", "b")
        for d in ("x", "y")
        for v in (1, 2)
        for n in range(50)
    }
    assert len(grid) == 2 * 2 * 2 * 50
