"""Reading a model's event stream (app/providers/sse.py) and relaying it in pieces: the SSE
parser on awkward byte boundaries, and both adapters against the fake LLM server with and
without the relay interval (DOCENT_RELAY_INTERVAL_MS)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator

import pytest

from app.errors import ProviderError
from app.providers import Finished, GenerationRequest
from app.providers.anthropic import AnthropicProvider
from app.providers.openai_chat import OpenAIChatProvider
from app.providers.sse import Event, Parser
from tests.fakes.llm_server import FakeLLM, fin_after, inband_error_after, ok, slow

pytestmark = pytest.mark.timeout(60)

# --- the parser -------------------------------------------------------------------------------


def feed_all(parts: list[bytes]) -> list[Event]:
    parser = Parser()
    return [event for part in parts for event in parser.feed(part)] + parser.close()


STREAM = (
    b": a comment\n"
    b"event: message_start\n"
    b'data: {"a": 1}\n'
    b"\n"
    b"retry: 3000\n"
    b"id: 7\n"
    b'data: {"text": "caf\xc3\xa9 \xe2\x80\xa8 \xf0\x9f\x99\x82"}\n'
    b"\n"
    b"data: first line\n"
    b"data: second line\n"
    b"\n"
    b"data:no space\n"
    b"\n"
)
EXPECTED = [
    Event("message_start", '{"a": 1}'),
    Event("message", '{"text": "café \u2028 🙂"}'),
    Event("message", "first line\nsecond line"),
    Event("message", "no space"),
]


def test_parser_reads_fields_comments_and_multiline_data() -> None:
    assert feed_all([STREAM]) == EXPECTED
    assert Event("x", '{"text": "caf\\u00e9"}').json() == {"text": "café"}


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_parser_gives_the_same_events_for_every_split_of_the_bytes(newline: bytes) -> None:
    """Every way of cutting the stream in two (inside a CRLF, inside a multi-byte character,
    inside a field name) gives the same events, for each of SSE's three line endings."""
    data = STREAM.replace(b"\n", newline)
    assert feed_all([data]) == EXPECTED
    for cut in range(1, len(data)):
        assert feed_all([data[:cut], data[cut:]]) == EXPECTED, cut
    assert feed_all([data[i : i + 1] for i in range(len(data))]) == EXPECTED


def test_an_event_cut_off_by_the_end_of_the_stream_is_dropped() -> None:
    parser = Parser()
    assert parser.feed(b'data: {"a": 1}\n\ndata: {"b"') == [Event("message", '{"a": 1}')]
    assert parser.feed(b"") == [] and parser.close() == []


def test_a_byte_order_mark_opening_the_stream_is_skipped() -> None:
    assert feed_all([b"\xef\xbb\xbfdata: x\n\n"]) == [Event("message", "x")]
    assert feed_all([b"\xef\xbb", b"\xbfdata: x\n\n"]) == [Event("message", "x")]
    # Only at the start: later it is part of the data.
    assert feed_all([b"data: x\n\n", b"data: \xef\xbb\xbfy\n\n"])[1].data == "\ufeffy"


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    assert feed_all([b"data: \xff\xfe ok\n\n"]) == [Event("message", "\ufffd\ufffd ok")]


# --- the adapters against the fake --------------------------------------------------------------

DIALECTS = pytest.mark.parametrize("dialect", ["openai", "anthropic"])
TRANSPORTS = pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
TEXT = " ".join(f"word{i}" for i in range(30)) + "."
WORDS = len(TEXT.split())


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


def provider(
    dialect: str, fake: FakeLLM, interval_ms: int, transport: str
) -> OpenAIChatProvider | AnthropicProvider:
    aiohttp = transport == "aiohttp"
    if dialect == "openai":
        return OpenAIChatProvider(
            "relay", "x", fake.openai_base_url, aiohttp=aiohttp, interval_ms=interval_ms
        )
    return AnthropicProvider(
        "relay", "x", fake.anthropic_base_url, aiohttp=aiohttp, interval_ms=interval_ms
    )


def read(
    dialect: str, fake: FakeLLM, interval_ms: int, transport: str = "aiohttp"
) -> tuple[list[tuple[float, str]], Finished | ProviderError]:
    """(seconds since the request, piece) for every piece, and how the stream ended."""

    async def main() -> tuple[list[tuple[float, str]], Finished | ProviderError]:
        p = provider(dialect, fake, interval_ms, transport)
        pieces: list[tuple[float, str]] = []
        started = time.monotonic()
        end: Finished | ProviderError
        try:
            async for item in p.stream(GenerationRequest("Question?", [], max_tokens=200)):
                if isinstance(item, Finished):
                    end = item
                else:
                    pieces.append((time.monotonic() - started, item))
        except ProviderError as exc:
            end = exc
        finally:
            await p.aclose()
        return pieces, end

    return asyncio.run(main())


@TRANSPORTS
@DIALECTS
def test_without_an_interval_text_is_passed_on_as_it_is_read(
    fake: FakeLLM, dialect: str, transport: str
) -> None:
    """Ten tokens 50 ms apart: each is its own piece (two may share one if this process was
    busy when the second arrived)."""
    text = " ".join(TEXT.split()[:10])
    fake.script("relay", slow(20, text=text))
    pieces, end = read(dialect, fake, 0, transport)
    assert "".join(p for _, p in pieces) == text
    assert len(pieces) >= 8, [p for _, p in pieces]
    assert isinstance(end, Finished) and end.stop_reason == "stop"


@DIALECTS
def test_an_interval_relays_what_arrived_meanwhile_as_one_piece(
    fake: FakeLLM, dialect: str
) -> None:
    """30 tokens at 100 a second, read at most every 60 ms (over aiohttp, the default): the
    same text in about a sixth as many pieces, at least 60 ms apart, the first one not held
    back."""
    fake.script("relay", ok(TEXT, ttft_ms=150, tokens_per_s=100))
    pieces, end = read(dialect, fake, 60)
    assert "".join(p for _, p in pieces) == TEXT
    assert isinstance(end, Finished) and end.stop_reason == "stop"
    assert end.usage.output_tokens == WORDS
    assert 3 <= len(pieces) <= WORDS // 3, [p for _, p in pieces]
    # Passed on as soon as it is read, not gathered for 60 ms (6 tokens).
    assert pieces[0][1].startswith("word0 ") and len(pieces[0][1].split()) <= 3, pieces[0]
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(pieces)]
    assert min(gaps) >= 0.045, gaps  # 60 ms, less a thread switch before the time is read
    # Nothing is held back for long: the stream takes 0.44 s to send.
    assert pieces[-1][0] <= 1.5


@DIALECTS
def test_over_httpx_the_interval_does_not_slow_the_stream(fake: FakeLLM, dialect: str) -> None:
    """httpx reads one event at a time: waiting 60 ms after each of 30 tokens would take at
    least 1.74 s for a stream sent in 0.44 s. The interval is not applied there."""
    fake.script("relay", ok(TEXT, ttft_ms=150, tokens_per_s=100))
    pieces, end = read(dialect, fake, 60, "httpx")
    assert "".join(p for _, p in pieces) == TEXT
    assert isinstance(end, Finished) and end.stop_reason == "stop"
    assert pieces[-1][0] < 1.5, f"the last text came after {pieces[-1][0]:.2f} s"


@TRANSPORTS
@DIALECTS
def test_text_read_with_a_failure_is_passed_on_before_it(
    fake: FakeLLM, dialect: str, transport: str
) -> None:
    """An in-band error that arrives in the same read as some text: the text is relayed
    first (the chain then knows what the reader saw), then the error is raised."""
    fake.script("relay", inband_error_after(5, text=TEXT))
    pieces, end = read(dialect, fake, 500, transport)
    assert "".join(p for _, p in pieces).split() == TEXT.split()[:5]
    assert isinstance(end, ProviderError) and end.kind == "overloaded"


@TRANSPORTS
@DIALECTS
def test_a_cut_stream_is_interrupted_after_its_text(
    fake: FakeLLM, dialect: str, transport: str
) -> None:
    fake.script("relay", fin_after(4, text=TEXT, tokens_per_s=100))
    pieces, end = read(dialect, fake, 100, transport)
    assert len("".join(p for _, p in pieces).split()) == 4
    assert isinstance(end, ProviderError) and end.kind == "interrupted"
