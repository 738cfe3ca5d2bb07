"""The fake LLM provider, driven by the official OpenAI and Anthropic SDKs over loopback.

The SDKs are built with max_retries=0 and short timeouts, so every fault shows up exactly once
and quickly. Where the SDKs differ (the Anthropic stream iterator lets httpx2 transport errors
through unwrapped), the tests pin down what an adapter must be ready to catch.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anthropic
import httpx2
import openai
import pytest

from tests.fakes.llm_server import (
    Attempt,
    FakeLLM,
    default_answer,
    duplicate_chunk,
    fin_after,
    finish_reason,
    garbage_sse_line,
    hang_before_headers,
    headers_then_hang,
    inband_error_after,
    malformed_json,
    missing_usage,
    ok,
    retry_after_date,
    rst_after,
    slow,
    split_tokens,
    stall_after,
    status,
)

pytestmark = pytest.mark.timeout(20)

T = TypeVar("T")
MODEL = "fake-model"
QUESTION: list[Any] = [{"role": "user", "content": "What is the capital of France?"}]
TEXT = "Paris  is the\ncapital of France, and it is   large. "
WORDS = len(TEXT.split())
SHORT = 0.5  # SDK timeout for the hang and stall tests
# During stream iteration the Anthropic SDK lets httpx2 transport errors through unwrapped.
ANTHROPIC_TIMEOUT = (anthropic.APITimeoutError, httpx2.TimeoutException)
ANTHROPIC_BROKEN = (anthropic.APIConnectionError, httpx2.TransportError)


@pytest.fixture
def fake() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server
    assert server.errors == []


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 10))


@asynccontextmanager
async def openai_client(
    fake: FakeLLM, sdk_timeout: float = 2.0
) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(
        base_url=fake.openai_base_url, api_key="x", max_retries=0, timeout=sdk_timeout
    )
    async with client:
        yield client


@asynccontextmanager
async def anthropic_client(
    fake: FakeLLM, sdk_timeout: float = 2.0
) -> AsyncIterator[anthropic.AsyncAnthropic]:
    client = anthropic.AsyncAnthropic(
        base_url=fake.anthropic_base_url, api_key="x", max_retries=0, timeout=sdk_timeout
    )
    async with client:
        yield client


class Collected:
    """What a streaming consumer saw before the stream ended or raised."""

    def __init__(self) -> None:
        self.deltas: list[str] = []
        self.finish: str | None = None
        self.usage: Any = None
        self.events: list[str] = []
        self.error: BaseException | None = None

    @property
    def text(self) -> str:
        return "".join(self.deltas)


async def openai_stream(fake: FakeLLM, sdk_timeout: float = 2.0, **extra: Any) -> Collected:
    seen = Collected()
    async with openai_client(fake, sdk_timeout) as client:
        try:
            stream = await client.chat.completions.create(
                model=MODEL,
                messages=extra.pop("messages", QUESTION),
                stream=True,
                stream_options={"include_usage": True},
                **extra,
            )
            async for chunk in stream:
                seen.usage = chunk.usage or seen.usage
                for choice in chunk.choices:
                    seen.deltas += [choice.delta.content] if choice.delta.content else []
                    seen.finish = choice.finish_reason or seen.finish
        except Exception as exc:
            seen.error = exc
    return seen


async def anthropic_stream(fake: FakeLLM, sdk_timeout: float = 2.0, **extra: Any) -> Collected:
    seen = Collected()
    async with anthropic_client(fake, sdk_timeout) as client:
        try:
            stream = await client.messages.create(
                model=MODEL,
                max_tokens=100,
                messages=extra.pop("messages", QUESTION),
                stream=True,
                **extra,
            )
            async for event in stream:
                seen.events.append(event.type)
                if event.type == "message_start":
                    seen.usage = event.message.usage
                elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                    seen.deltas.append(event.delta.text)
                elif event.type == "message_delta":
                    seen.finish = event.delta.stop_reason
                    seen.usage = event.usage
        except Exception as exc:
            seen.error = exc
    return seen


def stream_in(dialect: str, fake: FakeLLM, sdk_timeout: float = 2.0, **extra: Any) -> Collected:
    reader = openai_stream if dialect == "openai" else anthropic_stream
    return run(reader(fake, sdk_timeout, **extra))


def last(fake: FakeLLM) -> Attempt:
    assert fake.log, "the fake saw no request"
    return fake.log[-1]


def all_ended(fake: FakeLLM) -> list[Attempt]:
    """The log once every attempt has ended: a client can read the last byte of a response
    before the server notes its outcome (this raced once in CI)."""
    for record in fake.log:
        assert fake.wait_ended(record, timeout=2.0), record
    return fake.log


DIALECTS = pytest.mark.parametrize("dialect", ["openai", "anthropic"])


# ---------------------------------------------------------------------------- pure helpers


def test_split_tokens_round_trips_whitespace() -> None:
    for text in [TEXT, "  lead", "one", "", "a\n\nb\t c  "]:
        assert "".join(split_tokens(text)) == text
    assert split_tokens("a  b\nc") == ["a  ", "b\n", "c"]


def test_default_answer_cites_the_first_sentence_of_source_1() -> None:
    prompt = (
        'Question?\n<source id="2" title="B">Other text. More.</source>\n'
        '<source id="1" title="A">The sky is\nblue. It is big.</source>'
    )
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": prompt}]}]}
    assert default_answer(body) == "The sky is blue. [1]"
    assert default_answer({"messages": QUESTION}) == "I do not know."


# ---------------------------------------------------------------------------- happy paths


def test_openai_stream_reassembles_text_and_reports_usage(fake: FakeLLM) -> None:
    fake.script(MODEL, ok(TEXT))
    seen = stream_in("openai", fake, extra_headers={"x-request-id": "req-42"})
    assert seen.error is None
    assert seen.text == TEXT
    assert len(seen.deltas) == WORDS
    assert seen.finish == "stop"
    assert seen.usage.completion_tokens == WORDS
    assert seen.usage.prompt_tokens == len(QUESTION[0]["content"].split())
    record = all_ended(fake)[-1]
    assert (record.dialect, record.stream, record.request_id) == ("openai", True, "req-42")
    assert (record.step, record.outcome, record.tokens_sent) == ("ok", "complete", WORDS)
    assert record.body["messages"] == QUESTION
    assert record.headers["authorization"] == "Bearer x"


def test_anthropic_stream_has_the_real_event_sequence(fake: FakeLLM) -> None:
    fake.script(MODEL, ok(TEXT, chunk_words=3))
    seen = stream_in("anthropic", fake, extra_headers={"idempotency-key": "idem-1"})
    assert seen.error is None
    assert seen.text == TEXT
    assert seen.events[:2] == ["message_start", "content_block_start"]  # the SDK drops ping
    assert seen.events[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert seen.events.count("content_block_delta") == -(-WORDS // 3)
    assert (seen.finish, seen.usage.output_tokens) == ("end_turn", WORDS)
    assert last(fake).request_id == "idem-1"


def test_anthropic_stream_helper_accumulates_the_message(fake: FakeLLM) -> None:
    async def scenario() -> anthropic.types.Message:
        async with (
            anthropic_client(fake) as client,
            client.messages.stream(model=MODEL, max_tokens=50, messages=QUESTION) as stream,
        ):
            return await stream.get_final_message()

    fake.script(MODEL, ok(TEXT))
    message = run(scenario())
    assert message.content[0].type == "text"
    assert message.content[0].text == TEXT
    assert (message.stop_reason, message.usage.output_tokens) == ("end_turn", WORDS)


def test_non_stream_answers_cite_the_source(fake: FakeLLM) -> None:
    content = 'Where?\n<source id="1" title="Doc">Docent runs offline. It is small.</source>'
    messages: list[Any] = [{"role": "user", "content": content}]

    async def scenario() -> tuple[str | None, str]:
        async with openai_client(fake) as oc, anthropic_client(fake) as ac:
            chat = await oc.chat.completions.create(model=MODEL, messages=messages)
            assert chat.choices[0].finish_reason == "stop"
            assert chat.usage is not None and chat.usage.completion_tokens == 4
            msg = await ac.messages.create(model=MODEL, max_tokens=50, messages=messages)
            assert (msg.stop_reason, msg.usage.output_tokens) == ("end_turn", 4)
            assert msg.content[0].type == "text"
            return chat.choices[0].message.content, msg.content[0].text

    assert run(scenario()) == ("Docent runs offline. [1]", "Docent runs offline. [1]")
    assert [(a.dialect, a.stream, a.outcome) for a in all_ended(fake)] == [
        ("openai", False, "complete"),
        ("anthropic", False, "complete"),
    ]


def test_scripts_are_fifo_per_model_then_default(fake: FakeLLM) -> None:
    fake.script("a", ok("first"), ok(lambda body: f"echo {body['model']}"))
    fake.script("b", ok("bee"))
    fake.default_step = ok("fallback")

    async def ask(model: str) -> str | None:
        async with openai_client(fake) as client:
            chat = await client.chat.completions.create(model=model, messages=QUESTION)
            return chat.choices[0].message.content

    answers = [run(ask(m)) for m in ("a", "b", "a", "a")]
    assert answers == ["first", "bee", "echo a", "fallback"]
    assert [a.seq for a in fake.log] == [1, 2, 3, 4]


def test_models_list_in_both_dialects(fake: FakeLLM) -> None:
    async def scenario() -> tuple[list[str], list[str]]:
        async with openai_client(fake) as oc, anthropic_client(fake) as ac:
            return [m.id async for m in oc.models.list()], [m.id async for m in ac.models.list()]

    fake.script("scripted", ok())
    assert run(scenario()) == (["fake-model", "scripted"], ["fake-model", "scripted"])


def test_ttft_and_rate_pace_the_stream(fake: FakeLLM) -> None:
    fake.script(MODEL, ok("a b c", ttft_ms=200), slow(20, text="a b c d e f"))
    started = time.monotonic()
    first = stream_in("openai", fake)
    assert first.text == "a b c"
    record = last(fake)
    assert record.first_token_at is not None
    assert record.first_token_at - record.started_at >= 0.19
    second = stream_in("anthropic", fake)
    assert second.text == "a b c d e f"
    paced = last(fake)
    # The client has read the last event; the server notes the end just after.
    assert fake.wait_ended(paced, timeout=2.0)
    assert paced.ended_at is not None and paced.first_token_at is not None
    assert paced.ended_at - paced.first_token_at >= 5 / 20 - 0.02  # 6 tokens at 20/s
    assert time.monotonic() - started < 3


# ---------------------------------------------------------------------------- HTTP errors

OPENAI_ERRORS = [
    (400, openai.BadRequestError),
    (401, openai.AuthenticationError),
    (403, openai.PermissionDeniedError),
    (404, openai.NotFoundError),
    (422, openai.UnprocessableEntityError),
    (429, openai.RateLimitError),
    (500, openai.InternalServerError),
    (502, openai.InternalServerError),
    (503, openai.InternalServerError),
]
ANTHROPIC_ERRORS = [
    (400, anthropic.BadRequestError, "invalid_request_error"),
    (401, anthropic.AuthenticationError, "authentication_error"),
    (403, anthropic.PermissionDeniedError, "permission_error"),
    (404, anthropic.NotFoundError, "not_found_error"),
    (429, anthropic.RateLimitError, "rate_limit_error"),
    (500, anthropic.InternalServerError, "api_error"),
    (503, anthropic.InternalServerError, "api_error"),
    (529, anthropic.InternalServerError, "overloaded_error"),
]


@pytest.mark.parametrize(("code", "exc_type"), OPENAI_ERRORS)
def test_openai_status_codes_map_to_sdk_exceptions(
    fake: FakeLLM, code: int, exc_type: type[openai.APIStatusError]
) -> None:
    async def scenario() -> list[openai.APIStatusError]:
        caught = []
        async with openai_client(fake) as client:
            for stream in (False, True):
                with pytest.raises(exc_type) as info:
                    await client.chat.completions.create(
                        model=MODEL, messages=QUESTION, stream=stream
                    )
                caught.append(info.value)
        return caught

    fake.script(MODEL, status(code), status(code))
    for error in run(scenario()):
        assert error.status_code == code
        assert isinstance(error.body, dict)  # the SDK unwraps {"error": {...}}
        assert {"message", "type", "code"} <= error.body.keys()
    assert [(a.stream, a.status) for a in fake.log] == [(False, code), (True, code)]


@pytest.mark.parametrize(("code", "exc_type", "error_type"), ANTHROPIC_ERRORS)
def test_anthropic_status_codes_map_to_sdk_exceptions(
    fake: FakeLLM, code: int, exc_type: type[anthropic.APIStatusError], error_type: str
) -> None:
    async def scenario() -> list[anthropic.APIStatusError]:
        caught = []
        async with anthropic_client(fake) as client:
            for stream in (False, True):
                with pytest.raises(exc_type) as info:
                    await client.messages.create(
                        model=MODEL, max_tokens=10, messages=QUESTION, stream=stream
                    )
                caught.append(info.value)
        return caught

    fake.script(MODEL, status(code), status(code))
    for error in run(scenario()):
        assert error.status_code == code
        assert isinstance(error.body, dict)
        assert error.body["type"] == "error"
        assert error.body["error"]["type"] == error_type
    assert [(a.stream, a.status) for a in fake.log] == [(False, code), (True, code)]


def test_anthropic_529_is_the_overloaded_error(fake: FakeLLM) -> None:
    async def scenario() -> None:
        async with anthropic_client(fake) as client:
            await client.messages.create(model=MODEL, max_tokens=10, messages=QUESTION)

    fake.script(MODEL, status(529))
    with pytest.raises(anthropic.OverloadedError):
        run(scenario())


@pytest.mark.parametrize(
    "headers",
    [{"retry-after": "1"}, {"retry-after-ms": "1500"}, {"retry-after": retry_after_date(30)}],
)
@DIALECTS
def test_rate_limit_headers_are_readable(
    fake: FakeLLM, dialect: str, headers: dict[str, str]
) -> None:
    async def scenario() -> None:
        if dialect == "openai":
            async with openai_client(fake) as oc:
                await oc.chat.completions.create(model=MODEL, messages=QUESTION)
        else:
            async with anthropic_client(fake) as ac:
                await ac.messages.create(model=MODEL, max_tokens=10, messages=QUESTION)

    fake.script(MODEL, status(429, {**headers, "x-should-retry": "false"}))
    error_type = openai.RateLimitError if dialect == "openai" else anthropic.RateLimitError
    with pytest.raises(error_type) as caught:
        run(scenario())
    assert isinstance(caught.value, openai.RateLimitError | anthropic.RateLimitError)
    response_headers = caught.value.response.headers
    for name, value in headers.items():
        assert response_headers[name] == value
    assert response_headers["x-should-retry"] == "false"
    assert response_headers["x-request-id"]


def test_custom_error_body_is_sent_verbatim(fake: FakeLLM) -> None:
    async def scenario() -> None:
        async with openai_client(fake) as client:
            await client.chat.completions.create(model=MODEL, messages=QUESTION)

    body = {"error": {"message": "context too long", "type": "invalid_request_error"}}
    body["error"]["code"] = "context_length_exceeded"
    fake.script(MODEL, status(400, body=body))
    with pytest.raises(openai.BadRequestError) as caught:
        run(scenario())
    assert caught.value.code == "context_length_exceeded"


# ---------------------------------------------------------------------------- hangs and stalls


def assert_closed_soon(fake: FakeLLM, record: Attempt, raised_at: float) -> None:
    assert fake.wait_closed(record, 1.0), "the fake never saw the client close"
    assert record.client_closed_at is not None
    assert record.client_closed_at - raised_at < 1.0
    assert fake.wait_ended(record, 1.0)
    assert record.outcome == "client_closed"


@pytest.mark.parametrize(
    "step", [hang_before_headers(), headers_then_hang()], ids=["before_headers", "after_headers"]
)
@DIALECTS
def test_hangs_hit_the_sdk_timeout(fake: FakeLLM, dialect: str, step: Any) -> None:
    fake.script(MODEL, step)
    started = time.monotonic()
    seen = stream_in(dialect, fake, sdk_timeout=SHORT)
    expected = openai.APITimeoutError if dialect == "openai" else ANTHROPIC_TIMEOUT
    assert isinstance(seen.error, expected), repr(seen.error)
    assert SHORT * 0.9 <= time.monotonic() - started < SHORT + 1.5
    assert seen.deltas == []
    assert_closed_soon(fake, last(fake), time.monotonic())


@DIALECTS
def test_non_stream_hang_hits_the_sdk_timeout(fake: FakeLLM, dialect: str) -> None:
    async def scenario() -> None:
        if dialect == "openai":
            async with openai_client(fake, SHORT) as oc:
                await oc.chat.completions.create(model=MODEL, messages=QUESTION)
        else:
            async with anthropic_client(fake, SHORT) as ac:
                await ac.messages.create(model=MODEL, max_tokens=10, messages=QUESTION)

    fake.script(MODEL, stall_after(2, text=TEXT))
    expected = openai.APITimeoutError if dialect == "openai" else anthropic.APITimeoutError
    with pytest.raises(expected):
        run(scenario())
    assert_closed_soon(fake, last(fake), time.monotonic())


@DIALECTS
def test_stall_after_k_tokens_hits_the_sdk_timeout(fake: FakeLLM, dialect: str) -> None:
    fake.script(MODEL, stall_after(3, text=TEXT))
    seen = stream_in(dialect, fake, sdk_timeout=SHORT)
    expected = openai.APITimeoutError if dialect == "openai" else ANTHROPIC_TIMEOUT
    assert isinstance(seen.error, expected), repr(seen.error)
    assert seen.text == "".join(split_tokens(TEXT)[:3])
    record = last(fake)
    assert record.tokens_sent == 3
    assert_closed_soon(fake, record, time.monotonic())


def test_hang_is_capped_and_stop_is_prompt(fake: FakeLLM) -> None:
    request = (
        b"POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s"
    )
    body = json.dumps({"model": MODEL, "messages": QUESTION, "stream": True}).encode()
    fake.hang_cap_s = 0.3
    fake.script(MODEL, hang_before_headers(), hang_before_headers())
    with socket.create_connection(("127.0.0.1", fake.port), timeout=3) as sock:
        sock.sendall(request % (len(body), body))
        started = time.monotonic()
        assert sock.recv(100) == b""  # the cap closes the connection without a response
        assert 0.25 < time.monotonic() - started < 2
    assert fake.wait_ended(last(fake)) and last(fake).outcome == "hung"

    fake.hang_cap_s = 120
    with socket.create_connection(("127.0.0.1", fake.port), timeout=3) as sock:
        sock.sendall(request % (len(body), body))
        deadline = time.monotonic() + 2
        while len(fake.log) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        fake.stop()
        assert time.monotonic() - started < 2
        assert sock.recv(100) == b""
    assert fake.log[-1].outcome == "server_stopped"


# ---------------------------------------------------------------------------- broken streams


@DIALECTS
def test_fin_after_k_tokens_ends_the_stream_without_a_terminal_event(
    fake: FakeLLM, dialect: str
) -> None:
    fake.script(MODEL, fin_after(2, text=TEXT))
    seen = stream_in(dialect, fake)
    # The HTTP body ends cleanly: only the terminal event is missing.
    assert seen.error is None, repr(seen.error)
    assert seen.text == "".join(split_tokens(TEXT)[:2])
    assert seen.finish is None
    assert "message_stop" not in seen.events
    assert last(fake).outcome == "fin"


@DIALECTS
def test_fin_and_rst_cut_a_non_stream_body_short(fake: FakeLLM, dialect: str) -> None:
    async def scenario() -> None:
        if dialect == "openai":
            async with openai_client(fake) as oc:
                await oc.chat.completions.create(model=MODEL, messages=QUESTION)
        else:
            async with anthropic_client(fake) as ac:
                await ac.messages.create(model=MODEL, max_tokens=10, messages=QUESTION)

    fake.script(MODEL, fin_after(0, text=TEXT), rst_after(0, text=TEXT))
    broken = openai.APIConnectionError if dialect == "openai" else anthropic.APIConnectionError
    for _ in range(2):
        with pytest.raises(broken):
            run(scenario())
    assert [a.outcome for a in fake.log] == ["fin", "rst"]


@DIALECTS
def test_rst_after_k_tokens_breaks_the_stream(fake: FakeLLM, dialect: str) -> None:
    fake.script(MODEL, rst_after(2, text=TEXT))
    seen = stream_in(dialect, fake)
    expected = openai.APIConnectionError if dialect == "openai" else ANTHROPIC_BROKEN
    assert isinstance(seen.error, expected), repr(seen.error)
    assert seen.text == "".join(split_tokens(TEXT)[:2])  # tokens sent before the RST arrive
    assert last(fake).outcome == "rst"


@DIALECTS
def test_malformed_json_surfaces_as_a_parse_error(fake: FakeLLM, dialect: str) -> None:
    async def non_stream() -> None:
        if dialect == "openai":
            async with openai_client(fake) as oc:
                await oc.chat.completions.create(model=MODEL, messages=QUESTION)
        else:
            async with anthropic_client(fake) as ac:
                await ac.messages.create(model=MODEL, max_tokens=10, messages=QUESTION)

    fake.script(MODEL, malformed_json(after=1, text=TEXT), malformed_json(text=TEXT))
    seen = stream_in(dialect, fake)
    assert isinstance(seen.error, json.JSONDecodeError), repr(seen.error)
    assert seen.deltas == split_tokens(TEXT)[:1]
    with pytest.raises(json.JSONDecodeError):
        run(non_stream())


@DIALECTS
def test_garbage_sse_lines_are_ignored_by_the_sdks(fake: FakeLLM, dialect: str) -> None:
    fake.script(MODEL, garbage_sse_line(after=2, text=TEXT))
    seen = stream_in(dialect, fake)
    assert seen.error is None
    assert seen.text == TEXT


def test_openai_inband_error(fake: FakeLLM) -> None:
    fake.script(MODEL, inband_error_after(2, type="server_error", text=TEXT))
    seen = stream_in("openai", fake)
    assert isinstance(seen.error, openai.APIError), repr(seen.error)
    assert isinstance(seen.error.body, dict) and seen.error.body["type"] == "server_error"
    assert seen.text == "".join(split_tokens(TEXT)[:2])
    assert last(fake).outcome == "inband_error"


def test_anthropic_inband_error_event(fake: FakeLLM) -> None:
    fake.script(MODEL, inband_error_after(2, text=TEXT))
    seen = stream_in("anthropic", fake)
    assert isinstance(seen.error, anthropic.APIStatusError), repr(seen.error)
    body = seen.error.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "overloaded_error"
    assert seen.text == "".join(split_tokens(TEXT)[:2])


def test_inband_error_without_streaming_becomes_the_matching_status(fake: FakeLLM) -> None:
    async def scenario() -> None:
        async with anthropic_client(fake) as client:
            await client.messages.create(model=MODEL, max_tokens=10, messages=QUESTION)

    fake.script(MODEL, inband_error_after(0, type="rate_limit_error"))
    with pytest.raises(anthropic.RateLimitError):
        run(scenario())


# ---------------------------------------------------------------------------- odd endings


@pytest.mark.parametrize(
    ("reason", "openai_reason", "anthropic_reason"),
    [("length", "length", "max_tokens"), ("refusal", "content_filter", "refusal")],
)
@DIALECTS
def test_finish_reasons_in_both_dialects(
    fake: FakeLLM, dialect: str, reason: str, openai_reason: str, anthropic_reason: str
) -> None:
    fake.script(MODEL, finish_reason(reason, after=3, text=TEXT))
    seen = stream_in(dialect, fake)
    assert seen.error is None
    assert seen.finish == (openai_reason if dialect == "openai" else anthropic_reason)
    assert seen.text == "".join(split_tokens(TEXT)[:3])


def test_finish_reason_without_streaming(fake: FakeLLM) -> None:
    async def scenario() -> tuple[str, str | None]:
        async with openai_client(fake) as oc, anthropic_client(fake) as ac:
            chat = await oc.chat.completions.create(model=MODEL, messages=QUESTION)
            msg = await ac.messages.create(model=MODEL, max_tokens=10, messages=QUESTION)
            return chat.choices[0].finish_reason, msg.stop_reason

    fake.script(MODEL, finish_reason("content_filter"), finish_reason("max_tokens"))
    assert run(scenario()) == ("content_filter", "max_tokens")


@DIALECTS
def test_duplicate_chunk_is_sent_twice(fake: FakeLLM, dialect: str) -> None:
    fake.script(MODEL, duplicate_chunk(1, text="a b c"))
    seen = stream_in(dialect, fake)
    assert seen.deltas == ["a ", "b ", "b ", "c"]
    usage = seen.usage.completion_tokens if dialect == "openai" else seen.usage.output_tokens
    assert usage == 3
    assert last(fake).tokens_sent == 4


def test_missing_usage(fake: FakeLLM) -> None:
    async def scenario() -> tuple[Any, Any]:
        async with openai_client(fake) as oc, anthropic_client(fake) as ac:
            chat = await oc.chat.completions.create(model=MODEL, messages=QUESTION)
            msg = await ac.messages.create(model=MODEL, max_tokens=10, messages=QUESTION)
            return chat.usage, getattr(msg, "usage", None)

    fake.script(MODEL, missing_usage(text="a b"), missing_usage(text="a b"), missing_usage())
    seen = stream_in("openai", fake)  # asked for include_usage, got none
    assert (seen.text, seen.finish, seen.usage) == ("a b", "stop", None)
    assert run(scenario()) == (None, None)


# ---------------------------------------------------------------------------- disconnects


@DIALECTS
def test_closing_a_stream_early_is_observed(fake: FakeLLM, dialect: str) -> None:
    long_text = " ".join(f"w{i}" for i in range(200))

    async def scenario() -> float:
        if dialect == "openai":
            async with openai_client(fake) as oc:
                ostream = await oc.chat.completions.create(
                    model=MODEL, messages=QUESTION, stream=True
                )
                async for chunk in ostream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        break
                await ostream.close()
        else:
            async with anthropic_client(fake) as ac:
                astream = await ac.messages.create(
                    model=MODEL, max_tokens=10, messages=QUESTION, stream=True
                )
                async for event in astream:
                    if event.type == "content_block_delta":
                        break
                await astream.close()
        return time.monotonic()

    fake.script(MODEL, ok(long_text, tokens_per_s=50))
    closed_at = run(scenario())
    record = last(fake)
    assert fake.wait_closed(record, 1.0)
    assert record.client_closed_at is not None
    assert record.client_closed_at - closed_at < 1.0
    assert record.tokens_sent < 20
    assert record.tokens_sent_after_close <= 1
    assert fake.wait_ended(record) and record.outcome == "client_closed"


# ---------------------------------------------------------------------------- control plane


def http_json(fake: FakeLLM, method: str, path: str, payload: Any = None) -> Any:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(fake.url + path, data=data, method=method)
    with urllib.request.urlopen(request, timeout=3) as response:
        return json.loads(response.read())


def test_control_endpoints_script_log_and_reset(fake: FakeLLM) -> None:
    script = [
        {"kind": "status", "code": 503, "headers": {"retry-after": "2"}},
        {"kind": "ok", "text": "scripted over HTTP"},
    ]
    assert http_json(fake, "POST", "/__control", {"model": MODEL, "script": script})["queued"] == 2

    async def scenario() -> str | None:
        async with openai_client(fake) as client:
            with pytest.raises(openai.InternalServerError):
                await client.chat.completions.create(model=MODEL, messages=QUESTION)
            chat = await client.chat.completions.create(
                model=MODEL, messages=QUESTION, extra_headers={"x-request-id": "r1"}
            )
            return chat.choices[0].message.content

    assert run(scenario()) == "scripted over HTTP"
    all_ended(fake)
    attempts = http_json(fake, "GET", "/__log")["attempts"]
    assert [(a["step"], a["status"], a["outcome"]) for a in attempts] == [
        ("status", 503, "complete"),
        ("ok", 200, "complete"),
    ]
    assert attempts[1]["request_id"] == "r1"
    assert attempts[1]["body"]["model"] == MODEL
    assert attempts[1]["started_at"] >= attempts[0]["started_at"]

    with pytest.raises(urllib.error.HTTPError) as caught:
        http_json(fake, "POST", "/__control", {"model": MODEL, "script": [{"kind": "bogus"}]})
    assert caught.value.code == 400

    http_json(
        fake, "POST", "/__control", {"model": MODEL, "script": [{"kind": "status", "code": 500}]}
    )
    assert http_json(fake, "POST", "/__reset", {}) == {"ok": True}
    assert http_json(fake, "GET", "/__log") == {"attempts": []}
    seen = stream_in("openai", fake)  # the 500 was cleared: the default step answers
    assert (seen.error, seen.text) == (None, "I do not know.")
