"""The fallback chain with scripted in-process providers: retries, fallback, deadlines,
circuit breakers. The same rules over real SDKs and HTTP are in test_provider_faults.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from app.errors import AllProvidersFailed, ProviderError, StreamInterrupted
from app.providers import Finished, GenerationRequest, Usage
from app.providers.fallback import (
    ChainStatus,
    ChainTrace,
    CircuitBreaker,
    Committed,
    Deadlines,
    FallbackChain,
)
from app.providers.http_errors import classify


def fail(kind: Any, retryable: bool, retry_after: float | None = None) -> ProviderError:
    return ProviderError(
        f"scripted {kind}", provider="?", kind=kind, retryable=retryable, retry_after=retry_after
    )  # type: ignore[arg-type]


@dataclass
class Scripted:
    """Each call pops a step: a ProviderError to raise at once, ("hang", s) to wait before the
    first token, ("stall_after", k) to stop after k words, or a text to stream."""

    name: str
    steps: list[Any] = field(default_factory=list)
    model: str = "m"
    calls: int = 0
    closed: int = 0

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[str | Finished, None]:
        self.calls += 1
        step = self.steps.pop(0) if self.steps else "fine answer [1]."
        try:
            if isinstance(step, ProviderError):
                step.provider = self.name
                raise step
            if isinstance(step, tuple) and step[0] == "hang":
                await asyncio.sleep(step[1])
                step = "late answer."
            if isinstance(step, tuple) and step[0] == "stall_after":
                for word in ["partial", "words", "here"][: step[1]]:
                    yield word + " "
                await asyncio.sleep(60)
            for word in str(step).split(" "):
                yield word + " "
            yield Finished("stop", Usage(10, 3))
        finally:
            self.closed += 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


FAST = Deadlines(first_token_s=0.3, stall_s=0.3, total_s=5.0, max_retry_wait_s=2.0)


async def collect(
    chain: FallbackChain, deadlines: Deadlines = FAST
) -> tuple[str, list[ChainStatus], ChainTrace, Committed | None]:
    trace = ChainTrace()
    text: list[str] = []
    statuses: list[ChainStatus] = []
    committed: Committed | None = None
    async for event in chain.stream(GenerationRequest("q", []), deadlines, trace):
        if isinstance(event, str):
            text.append(event)
        elif isinstance(event, ChainStatus):
            statuses.append(event)
        elif isinstance(event, Committed):
            committed = event
    return "".join(text), statuses, trace, committed


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_retryable_failure_is_retried_once_on_the_same_provider() -> None:
    a = Scripted("a", [fail("server", True)])
    text, statuses, trace, committed = run(collect(FallbackChain([a])))
    assert text.strip() == "fine answer [1]."
    assert a.calls == 2 and [s.state for s in statuses] == ["retrying"]
    assert committed is not None and committed.provider == "a"
    assert [x.outcome for x in trace.attempts] == ["server", "ok"]
    assert trace.attempts[1].retry


def test_two_retryable_failures_fall_back_after_one_retry() -> None:
    a = Scripted("a", [fail("overloaded", True), fail("overloaded", True)])
    b = Scripted("b")
    _, statuses, _, committed = run(collect(FallbackChain([a, b])))
    assert a.calls == 2 and b.calls == 1
    assert [s.state for s in statuses] == ["retrying", "fallback"]
    assert committed is not None and committed.provider == "b"


def test_a_refusal_is_an_answer_not_a_reason_to_ask_another_model() -> None:
    a, b = Scripted("a", [fail("refused", False)]), Scripted("b")
    events: list[object] = []

    async def go() -> None:
        chain = FallbackChain([a, b])
        async for event in chain.stream(GenerationRequest("q", []), FAST, ChainTrace()):
            events.append(event)

    run(go())
    assert b.calls == 0
    assert isinstance(events[-1], Finished) and events[-1].stop_reason == "refused"


def _shorten_by_one(request: GenerationRequest) -> bool:
    if len(request.prompt) < 2:
        return False
    request.prompt = request.prompt[:-1]
    return True


def test_a_prompt_too_long_is_shortened_once_and_asked_again() -> None:
    a, b = Scripted("a", [fail("context_length", False)]), Scripted("b")
    request = GenerationRequest("q", [], prompt="abcd", shorten=_shorten_by_one)
    trace, statuses = ChainTrace(), []

    async def go() -> None:
        async for event in FallbackChain([a, b]).stream(request, FAST, trace):
            if isinstance(event, ChainStatus):
                statuses.append(event)

    run(go())
    assert a.calls == 2 and b.calls == 0, "the same model, asked again with a shorter prompt"
    assert request.prompt == "abc"
    assert [(x.provider, x.outcome) for x in trace.attempts] == [
        ("a", "context_length"),
        ("a", "ok"),
    ]
    assert [(s.state, s.reason) for s in statuses] == [("retrying", "context_shortened")]


def test_a_prompt_still_too_long_goes_to_the_next_model_without_shortening_again() -> None:
    a = Scripted("a", [fail("context_length", False), fail("context_length", False)])
    b = Scripted("b", [fail("context_length", False)])
    c = Scripted("c")
    request = GenerationRequest("q", [], prompt="abcd", shorten=_shorten_by_one)
    chain = FallbackChain([a, b, c])

    async def go() -> None:
        async for _ in chain.stream(request, FAST, ChainTrace()):
            pass

    run(go())
    assert (a.calls, b.calls, c.calls) == (2, 1, 1)
    assert request.prompt == "abc", "shortened once per generation"
    assert chain.breakers["a"].state == "closed", "a long prompt is not an outage"


def test_a_prompt_that_cannot_be_shortened_goes_to_the_next_model() -> None:
    a, b = Scripted("a", [fail("context_length", False)]), Scripted("b")
    request = GenerationRequest("q", [], prompt="a", shorten=_shorten_by_one)

    async def go() -> None:
        async for _ in FallbackChain([a, b]).stream(request, FAST, ChainTrace()):
            pass

    run(go())
    assert (a.calls, b.calls) == (1, 1)


@pytest.mark.parametrize(
    ("status", "etype", "code", "detail", "kind"),
    [
        # OpenAI
        (
            400,
            "invalid_request_error",
            "context_length_exceeded",
            "This model's maximum "
            "context length is 8192 tokens. However, your messages resulted in 9001 tokens.",
            "context_length",
        ),
        # Anthropic
        (
            400,
            "invalid_request_error",
            None,
            "prompt is too long: 210000 tokens > 200000 maximum",
            "context_length",
        ),
        # llama.cpp server
        (
            400,
            "exceed_context_size_error",
            None,
            "the request exceeds the available context size, try increasing it",
            "context_length",
        ),
        # vLLM
        (
            400,
            "BadRequestError",
            None,
            "This model's maximum context length is 4096 tokens. "
            "However, you requested 5000 tokens",
            "context_length",
        ),
        (400, "invalid_request_error", None, "model: field required", "bad_request"),
        (404, "not_found_error", None, "model: claude-x not found", "bad_request"),
        (500, "api_error", None, "context length unknown", "server"),
    ],
)
def test_context_length_errors_are_told_from_other_bad_requests(
    status: int, etype: str, code: str | None, detail: str, kind: str
) -> None:
    error = classify("p", status, {}, etype, detail, code)
    assert error.kind == kind
    assert not error.retryable or kind == "server"


@pytest.mark.parametrize("kind", ["auth", "bad_request", "malformed"])
def test_non_retryable_failures_fall_back_at_once(kind: str) -> None:
    a, b = Scripted("a", [fail(kind, False)]), Scripted("b")
    chain = FallbackChain([a, b])
    run(collect(chain))
    assert a.calls == 1 and b.calls == 1
    assert chain.alerts["provider_auth"] == (1 if kind == "auth" else 0)


def test_rate_limit_waits_for_a_short_retry_after() -> None:
    a = Scripted("a", [fail("rate_limited", True, retry_after=0.3)])
    started = time.monotonic()
    _, statuses, _, committed = run(collect(FallbackChain([a, Scripted("b")])))
    assert time.monotonic() - started >= 0.3
    assert a.calls == 2 and committed is not None and committed.provider == "a"
    assert statuses[0].wait_s == pytest.approx(0.3)


@pytest.mark.parametrize("retry_after", [None, 120.0])
def test_rate_limit_without_a_short_retry_after_falls_back_without_waiting(
    retry_after: float | None,
) -> None:
    a = Scripted("a", [fail("rate_limited", True, retry_after=retry_after)])
    started = time.monotonic()
    _, _, _, committed = run(collect(FallbackChain([a, Scripted("b")])))
    assert time.monotonic() - started < 0.5
    assert a.calls == 1 and committed is not None and committed.provider == "b"


def test_no_first_token_in_time_falls_back_without_retry() -> None:
    a, b = Scripted("a", [("hang", 5.0)]), Scripted("b")
    started = time.monotonic()
    _, statuses, trace, committed = run(collect(FallbackChain([a, b])))
    assert 0.25 < time.monotonic() - started < 1.5
    assert a.calls == 1 and a.closed == 1, "the abandoned stream was closed"
    assert committed is not None and committed.provider == "b"
    assert trace.attempts[0].outcome == "timeout"
    assert [s.state for s in statuses] == ["fallback"]


def test_a_stall_after_text_is_an_interruption_not_a_fallback() -> None:
    a, b = Scripted("a", [("stall_after", 2)]), Scripted("b")
    with pytest.raises(StreamInterrupted) as info:
        run(collect(FallbackChain([a, b])))
    assert info.value.partial == "partial words "
    assert info.value.kind == "timeout"
    assert b.calls == 0, "never splice two models' answers"
    assert a.closed == 1


def test_a_stall_deadline_shorter_than_the_first_token_deadline_is_kept() -> None:
    """One timer serves every wait of an attempt: after a first token that came early under a
    long first-token deadline, a stall must still end at the (shorter) stall deadline."""
    a = Scripted("a", [("stall_after", 1)])
    deadlines = Deadlines(first_token_s=5.0, stall_s=0.2, total_s=10.0)
    started = time.monotonic()
    with pytest.raises(StreamInterrupted) as info:
        run(collect(FallbackChain([a]), deadlines))
    assert info.value.kind == "timeout" and info.value.partial == "partial "
    assert time.monotonic() - started < 2.0, "the stall ended at its own deadline"


def test_a_slow_reader_between_tokens_is_not_a_stall() -> None:
    """Only the wait for the provider counts: time the reader spends between pieces (a slow
    client) is not the provider stalling."""
    a = Scripted("a", ["one two three four"])

    async def slow() -> str:
        text = []
        stream = FallbackChain([a]).stream(GenerationRequest("q", []), FAST, ChainTrace())
        async for event in stream:
            if isinstance(event, str):
                text.append(event)
                await asyncio.sleep(0.5)  # longer than FAST.stall_s
        return "".join(text)

    assert run(slow()).split() == ["one", "two", "three", "four"]


def test_a_cancelled_reader_is_cancelled_not_timed_out() -> None:
    """A client that leaves cancels the wait; the watchdog must not turn it into a timeout
    (and a fallback), however close its deadline."""
    a, b = Scripted("a", [("hang", 60)]), Scripted("b")

    async def leave() -> None:
        task = asyncio.ensure_future(collect(FallbackChain([a, b])))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(leave())
    assert b.calls == 0 and a.closed == 1


def test_all_failing_reports_every_attempt() -> None:
    a = Scripted("a", [fail("auth", False)])
    b = Scripted("b", [fail("server", True), fail("server", True)])
    with pytest.raises(AllProvidersFailed) as info:
        run(collect(FallbackChain([a, b])))
    assert [(e.provider, e.kind) for e in info.value.attempts] == [
        ("a", "auth"),
        ("b", "server"),
        ("b", "server"),
    ]
    assert "Try again" in info.value.message


def test_total_deadline_stops_the_retry() -> None:
    a = Scripted("a", [fail("server", True, retry_after=0.2)])
    deadlines = Deadlines(first_token_s=0.3, stall_s=0.3, total_s=0.1)
    with pytest.raises(AllProvidersFailed):
        run(collect(FallbackChain([a]), deadlines))
    assert a.calls == 1


def test_circuit_opens_skips_then_probes_once() -> None:
    clock = Clock()
    a, b = Scripted("a"), Scripted("b")
    chain = FallbackChain([a, b], breaker=lambda: CircuitBreaker(clock, cooldown_s=30))
    for _ in range(3):  # three answers, each failing twice on a (retry), then served by b
        a.steps += [fail("server", True), fail("server", True)]
        run(collect(chain))
    assert chain.breakers["a"].state == "open"
    assert a.calls == 3, "opened on the third failure in a row: no retry after that"
    a.steps.clear()
    calls = a.calls
    _, statuses, trace, committed = run(collect(chain))
    assert a.calls == calls, "an open circuit costs the primary no call"
    assert trace.attempts[0].outcome == "skipped" and not statuses
    assert committed is not None and committed.provider == "b"
    clock.now += 31
    assert chain.breakers["a"].state == "half_open"
    run(collect(chain))  # the probe succeeds
    assert a.calls == calls + 1 and chain.breakers["a"].state == "closed"


def test_breaker_opens_on_failure_ratio() -> None:
    clock = Clock()
    breaker = CircuitBreaker(clock, consecutive=100, ratio=0.5, min_requests=10)
    for i in range(10):
        assert breaker.state == "closed"
        breaker.record(i % 2 == 0)
    assert breaker.state == "open"
    clock.now += 31
    assert breaker.allow() and not breaker.allow(), "one probe at a time"
    breaker.record(False)
    assert breaker.state == "open"


# --- the SDKs' HTTP transport -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("choice", "environ", "expected"),
    [
        ("auto", {}, True),
        ("auto", {"HTTPS_PROXY": "http://proxy:3128"}, False),
        ("auto", {"http_proxy": "http://proxy:3128"}, False),
        ("auto", {"ALL_PROXY": ""}, True),
        ("aiohttp", {"HTTPS_PROXY": "http://proxy:3128"}, True),
        ("httpx", {}, False),
    ],
)
def test_aiohttp_unless_a_proxy_is_set(
    choice: str, environ: dict[str, str], expected: bool
) -> None:
    from app.providers.build import use_aiohttp

    assert use_aiohttp(choice, environ) is expected


def _renamed(cause: BaseException, outer: type[Exception]) -> Exception:
    """``cause`` as the SDK's aiohttp transport and the SDK hand it on: raised from."""
    try:
        try:
            raise cause
        except BaseException as exc:
            raise outer("renamed") from exc
    except Exception as renamed:
        return renamed


def test_aiohttp_errors_are_read_under_their_sdk_names() -> None:
    import aiohttp
    import httpx2

    from app.providers.http_errors import aiohttp_error

    key = aiohttp.client_reqrep.ConnectionKey("127.0.0.1", 9, False, True, None, None, None)
    refused = aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "refused"))
    # The transport calls a refused connection ConnectTimeout; it is a fast failure, retried.
    error = aiohttp_error("p", _renamed(refused, httpx2.ConnectTimeout))
    assert error is not None and (error.kind, error.retryable) == ("connect", True)
    slow = aiohttp.ConnectionTimeoutError("connect timed out")
    error = aiohttp_error("p", _renamed(slow, httpx2.ConnectTimeout))
    assert error is not None and (error.kind, error.retryable) == ("connect", False)
    read = aiohttp.SocketTimeoutError("read timed out")
    error = aiohttp_error("p", _renamed(read, httpx2.ReadTimeout))
    assert error is not None and (error.kind, error.retryable) == ("timeout", False)
    cut = aiohttp.ClientPayloadError("Response payload is not completed")
    error = aiohttp_error("p", _renamed(cut, httpx2.ReadError))
    assert error is not None and (error.kind, error.retryable) == ("interrupted", True)
    gone = aiohttp.ServerDisconnectedError()
    error = aiohttp_error("p", _renamed(gone, httpx2.ConnectTimeout))
    assert error is not None and (error.kind, error.retryable) == ("interrupted", True)
    # Not from aiohttp: left to the adapter's own reading.
    assert aiohttp_error("p", _renamed(ConnectionRefusedError(), httpx2.ConnectError)) is None


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_the_transport_setting_reaches_both_sdks(kind: str, tmp_path: Path) -> None:
    from app.embeddings import HashEmbedder
    from app.providers.build import build_provider
    from tests.conftest import make_settings

    def http_client(choice: str) -> str:
        settings = make_settings(tmp_path, provider_http=choice)
        provider = build_provider(kind, "m", settings, HashEmbedder())
        return type(provider._client._client).__name__.lower()  # type: ignore[attr-defined]

    assert "aiohttp" in http_client("aiohttp")
    assert "aiohttp" not in http_client("httpx")
