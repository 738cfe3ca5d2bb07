"""RELIABILITY.md section D (provider faults) against Docent's real answer path.

Each test asks a question through ``app.answer.answer.answer`` with the provider chain built
by ``app.services.build_answers`` from settings: the official OpenAI and Anthropic SDKs, both
pointed at the in-repo fake LLM server (tests/fakes/llm_server.py). The chain is
``<dialect>:primary -> <other dialect>:secondary``; the fake keys its scripts by model name,
so ``fake.script("primary", status(503))`` breaks the primary whichever SDK speaks to it.

Matrix: dialect of the primary (openai, anthropic) x risk (low: streamed live; high: buffered
and validated). Common criteria checked on every run (``check_contract``):

(a) the outcome is an answer, a labelled cache answer, or an ``error`` with code, message,
    retryable and request_id; no exception escapes;
(b) exactly one terminal event (``done`` or ``error``), last, within a wall-clock bound;
(c) upstream attempts per model, read from the fake's log by the request id Docent sends;
(d) low risk: a ``status`` (retrying / fallback) before the answer when degraded;
(e) the audit row records the provider path and the failure kinds;
(f) truncated or failed answers are never cached.

One Services (database, index, two ingested documents) is shared by the module; every test
builds its own provider chain, SDK clients and circuit breakers with ``build_answers`` and
starts from an empty answer cache and review queue. Deadlines are short (connect 0.5 s,
first token and stall 0.8 s, total 6 s) so that the module runs in about a minute; the SDKs
are warmed up once first, so that their lazy imports do not eat into a first-token deadline.

Not offline here: D-22 (a remote embedder; the hash embedder is
local) and D-24's grounding-checker outage (the checker is local code).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from sqlalchemy import delete, select

from app.answer.answer import REFUSED, SAFE_ANSWER, AnswerDeps, answer
from app.db.tables import AnswerRecord, CacheEntry, ReviewItem
from app.embeddings import HashEmbedder
from app.models import ChatRequest
from app.providers.fallback import CircuitBreaker
from app.services import Services, build_answers
from tests.conftest import make_settings
from tests.fakes.llm_server import (
    Attempt,
    FakeLLM,
    Step,
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
    stall_after,
    status,
)

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")
TENANT = "default"
LEAVE = (
    "Parental leave lasts sixteen weeks at full pay. "
    "Either parent may take it within the first year after the birth."
)
DOSE = (
    "The maximum dose of ibuprofen for adults is 1200 mg a day without a prescription. "
    "Children must not take it under three months of age."
)
QUESTIONS = {"low": "How long is parental leave?", "high": "What is the maximum dose of ibuprofen?"}
# What the fake's default answer says: the first sentence of source 1, cited.
ANSWERS = {
    "low": "Parental leave lasts sixteen weeks at full pay. [1]",
    "high": "The maximum dose of ibuprofen for adults is 1200 mg a day without a prescription. [1]",
}

CONNECT_S = 0.5
TTFT_S = 0.8
STALL_S = 0.8
TOTAL_S = 6.0
SLACK_S = 1.0  # a noisy 2-core machine
STATUS_WITHIN_S = 2.0  # R4: a status event within 2 s of a degradation
CAP_S = 25.0  # no single answer may take longer: the test fails instead of hanging

TERMINAL = ("done", "error")
DEGRADED = ("retrying", "fallback")

DIALECTS = pytest.mark.parametrize("dialect", ["openai", "anthropic"])
# The SDKs' HTTP transport: aiohttp by default (DOCENT_PROVIDER_HTTP=auto), httpx when a proxy
# is set. Every test runs on the default; the faults that live in the transport (connecting,
# cut and stalled streams, disconnects) run on both.
TRANSPORTS = pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
RISKS = pytest.mark.parametrize("risk", ["low", "high"])


def other(dialect: str) -> str:
    return "anthropic" if dialect == "openai" else "openai"


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, fake: FakeLLM) -> Iterator[Services]:
    settings = make_settings(
        tmp_path_factory.mktemp("provider-faults") / "data",
        chain="offline",
        small_models="",
        anthropic_base_url=fake.anthropic_base_url,
        chat_openai_base_url=fake.openai_base_url,
        anthropic_api_key="x",
        openai_api_key="x",
        connect_timeout_s=CONNECT_S,
        first_token_low_s=TTFT_S,
        first_token_high_s=TTFT_S,
        stall_s=STALL_S,
        total_low_s=TOTAL_S,
        total_high_s=TOTAL_S,
        max_retry_wait_s=2.0,
        cache_enabled=True,
    )
    s = Services.build(settings, embedder=HashEmbedder())
    for name, text in (("leave.txt", LEAVE), ("dose.txt", DOSE)):
        s.ingestor.receive(TENANT, "default", name, text.encode())
    s.ingestor.run_pending()
    warm_up(s, fake)
    yield s
    s.close()


def warm_up(s: Services, fake: FakeLLM) -> None:
    """One healthy answer per dialect and tier; also checks the setup the matrix relies on:
    the fake's default answer is grounded, so a healthy chain answers from the primary."""
    for dialect in ("openai", "anthropic"):
        rig = Rig(s, fake, chain_for(s, dialect), dialect, "low")

        async def body(rig: Rig = rig) -> list[Run]:
            return [await rig.ask(QUESTIONS[r], use_cache=False) for r in ("low", "high")]

        low, high = rig.play(body)
        for risk, run in (("low", low), ("high", high)):
            assert run.end["provider"] == rig.primary, run.events[-1]
            assert run.all("meta")[0]["risk"] == risk and run.text == ANSWERS[risk]
    fake.reset()


def chain_for(s: Services, dialect: str, **overrides: Any) -> AnswerDeps:
    """The answer dependencies with a fresh `dialect:primary -> other:secondary` chain."""
    settings = s.settings.model_copy(
        update={"chain": f"{dialect}:primary -> {other(dialect)}:secondary", **overrides}
    )
    return build_answers(settings, s.db, s.retriever, s.embedder, s.cache_index)


@dataclass
class Run:
    """One answer as a client saw it: events with their times (s since the request)."""

    events: list[tuple[str, dict[str, Any]]]
    times: list[float]
    started: float  # time.monotonic() at the request
    elapsed: float

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.events]

    @property
    def answer_id(self) -> str:
        return str(self.events[0][1]["answer_id"])

    @property
    def end(self) -> dict[str, Any]:
        return self.events[-1][1]

    def all(self, name: str) -> list[dict[str, Any]]:
        return [d for n, d in self.events if n == name]

    def first_time(self, name: str, **match: Any) -> float | None:
        for (n, d), t in zip(self.events, self.times, strict=True):
            if n == name and all(d.get(k) == v for k, v in match.items()):
                return t
        return None

    def statuses(self) -> list[str]:
        return [str(d.get("state")) for d in self.all("status")]

    @property
    def text(self) -> str:
        """What the reader is left with: the deltas after the last reset."""
        names = self.names
        start = len(names) - 1 - names[::-1].index("reset") if "reset" in names else 0
        return "".join(d["text"] for n, d in self.events[start:] if n == "delta")

    @property
    def shown_before_reset(self) -> str:
        if "reset" not in self.names:
            return ""
        stop = self.names.index("reset")
        return "".join(d["text"] for n, d in self.events[:stop] if n == "delta")


@dataclass
class Rig:
    """One test's provider chain over the shared services and the fake."""

    s: Services
    fake: FakeLLM
    deps: AnswerDeps
    dialect: str
    risk: str

    @property
    def primary(self) -> str:
        return f"{self.dialect}:primary"

    @property
    def secondary(self) -> str:
        return f"{other(self.dialect)}:secondary"

    @property
    def question(self) -> str:
        return QUESTIONS[self.risk]

    async def ask(self, question: str | None = None, *, use_cache: bool = True) -> Run:
        request = ChatRequest(question=question or self.question, use_cache=use_cache)
        events: list[tuple[str, dict[str, Any]]] = []
        times: list[float] = []
        started = time.monotonic()
        try:
            async with asyncio.timeout(CAP_S), aclosing(answer(self.deps, TENANT, request)) as agen:
                async for event in agen:
                    events.append((event.event, event.data))
                    times.append(time.monotonic() - started)
        except TimeoutError:
            pytest.fail(f"the answer did not end within {CAP_S} s: {[n for n, _ in events]}")
        return Run(events, times, started, time.monotonic() - started)

    def play(self, body: Callable[[], Awaitable[T]]) -> T:
        """Run ``body`` in one event loop (the SDK clients' connection pools belong to it),
        then close the clients and the answer path's thread pools."""

        async def main() -> T:
            try:
                return await body()
            finally:
                seen: set[int] = set()
                for tier in self.deps.tiers.values():
                    for provider in tier:
                        close = getattr(provider, "aclose", None)
                        if id(provider) not in seen and close is not None:
                            seen.add(id(provider))
                            await close()
                self.deps.lanes.close()

        return asyncio.run(main())

    def attempts(self, run: Run | None = None, model: str | None = None) -> list[Attempt]:
        """The fake's attempts for one answer (matched by the request id Docent sends)."""
        found = self.fake.attempts(model)
        if run is None:
            return found
        return [a for a in found if a.request_id == run.answer_id]

    def counts(self, run: Run) -> dict[str, int]:
        return dict(Counter(a.model for a in self.attempts(run)))

    def audit(self, run: Run) -> AnswerRecord:
        self.s.answers.lanes.flush_writes()  # the row is written off the event loop
        with self.s.db.session() as db:
            row = db.get(AnswerRecord, run.answer_id)
            assert row is not None, "every answer leaves an audit row"
            db.expunge(row)
            return row

    def path(self, run: Run) -> list[tuple[str, str]]:
        return [(str(p["provider"]), str(p["outcome"])) for p in self.path_rows(run)]

    def path_rows(self, run: Run) -> list[dict[str, Any]]:
        rows = json.loads(self.audit(run).provider_path)
        assert isinstance(rows, list)
        return rows

    def cached(self, run: Run) -> bool:
        with self.s.db.session() as db:
            entry = db.scalar(select(CacheEntry).where(CacheEntry.answer_id == run.answer_id))
            return entry is not None

    def reviews(self, run: Run) -> list[ReviewItem]:
        with self.s.db.session() as db:
            rows = list(db.scalars(select(ReviewItem).where(ReviewItem.answer_id == run.answer_id)))
            db.expunge_all()
            return rows


@pytest.fixture
def transport() -> str:
    """The transport of tests not parametrized over TRANSPORTS: the default one."""
    return "aiohttp"


@pytest.fixture
def rigs(base: Services, fake: FakeLLM, transport: str) -> Iterator[Callable[..., Rig]]:
    """rigs(dialect, risk, **settings overrides) -> a Rig with a fresh provider chain."""
    fake.reset()
    fake.default_step = ok()
    with base.db.session() as db:
        db.execute(delete(CacheEntry))
        db.execute(delete(ReviewItem))

    def make(dialect: str, risk: str = "low", **overrides: Any) -> Rig:
        overrides.setdefault("provider_http", transport)
        return Rig(base, fake, chain_for(base, dialect, **overrides), dialect, risk)

    yield make
    errors = list(fake.errors)
    fake.reset()
    assert errors == [], "the fake server hit an unexpected error"


# --- the common criteria ----------------------------------------------------------------------

_LEAKS = ("Traceback", "JSONDecodeError", "Expecting value", "Expecting ',' delimiter", "httpx")


def check_contract(rig: Rig, run: Run, bound: float) -> None:
    """(a), (b), (e), (f) and the risk-tier rules, for any run."""
    names = run.names
    assert names and names[0] == "meta", names
    # (b) exactly one terminal event, last, in time.
    assert [i for i, n in enumerate(names) if n in TERMINAL] == [len(names) - 1], names
    assert run.elapsed <= bound, f"took {run.elapsed:.2f} s, bound {bound:.2f} s"
    # (a) an answer, a labelled cache answer, or a clear error.
    end = run.end
    if names[-1] == "error":
        assert {"code", "message", "retryable", "request_id"} <= end.keys(), end
        assert isinstance(end["code"], str) and end["code"]
        assert isinstance(end["retryable"], bool)
        assert end["request_id"] == run.answer_id
        assert isinstance(end["message"], str) and len(end["message"]) > 20
    else:
        assert end["text"] and run.text == end["text"], "the deltas shown add up to the answer"
        if end["cache"]["status"] in ("hit", "fallback"):
            assert {"created_at", "age_s"} <= end["cache"].keys(), "a cache answer says so"
    # Parser and transport errors never reach the reader.
    for name, data in run.events:
        if name in ("delta", "error", "done"):
            shown = json.dumps(data)
            assert not any(leak in shown for leak in _LEAKS), (name, data)
    # Risk tiers.
    if rig.risk == "high":
        assert "reset" not in names, "a high-risk failure is invisible"
        assert names[2] == "status" and run.events[2][1]["state"] == "validating"
        if "delta" in names:
            first = names.index("delta")
            assert set(names[first:-1]) <= {"delta", "citations", "grounding"}, names
    # (e) the audit row.
    row = rig.audit(run)
    path = rig.path_rows(run)
    assert all({"provider", "outcome", "ms", "retry"} <= p.keys() for p in path)
    if names[-1] == "error":
        assert row.outcome in ("error", "interrupted") and row.error_code == end["code"]
    else:
        assert row.outcome == end["outcome"]
    # (f) only complete, validated answers are cached.
    if names[-1] == "error" or end.get("truncated") or end["outcome"] != "answered":
        assert not rig.cached(run), "a failed, truncated or unvalidated answer was cached"


def check_degraded_status(rig: Rig, run: Run, detect_s: float = 0.0) -> None:
    """(d) low risk: a retrying/fallback status before the answer, soon after the fault."""
    if rig.risk != "low":
        return
    times = [t for (n, d), t in zip(run.events, run.times, strict=True) if n == "status"]
    states = run.statuses()
    assert any(s in DEGRADED for s in states), states
    first = next(t for t, s in zip(times, states, strict=True) if s in DEGRADED)
    delta = run.first_time("delta")
    assert delta is None or first < delta, "the status comes before the answer"
    assert first <= detect_s + STATUS_WITHIN_S, f"status after {first:.2f} s"


def check_answered_by(rig: Rig, run: Run, provider: str) -> None:
    end = run.end
    assert run.names[-1] == "done", run.events[-1]
    assert end["provider"] == provider and end["outcome"] == "answered", end
    assert run.text == ANSWERS[rig.risk] and not end["truncated"]
    assert rig.cached(run), "a complete validated answer is cached"


def closed_within(fake: FakeLLM, attempt: Attempt, since: float, within: float = 1.0) -> float:
    """Seconds from ``since`` until the fake saw the client close ``attempt``."""
    assert fake.wait_closed(attempt, within + 1.0), f"{attempt.model} was never closed"
    assert attempt.client_closed_at is not None
    took = attempt.client_closed_at - since
    assert took <= within, f"upstream closed {took:.2f} s after the client left"
    return took


# --- D-01 connect faults ----------------------------------------------------------------------


@contextlib.contextmanager
def blackhole() -> Iterator[int]:
    """A port that swallows SYNs: a listener with backlog 0 whose accept queue is filled by
    one connection that is never accepted. Linux then drops further SYNs, so a connect hangs
    until the client's connect timeout (checked below, before it is used)."""
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = int(listener.getsockname()[1])
        for _ in range(8):
            filler = socket.socket()
            filler.settimeout(0.1)
            try:
                filler.connect(("127.0.0.1", port))
            except TimeoutError:
                filler.close()
                break
            fillers.append(filler)
        probe = socket.socket()
        probe.settimeout(0.1)
        with pytest.raises(TimeoutError), probe:
            probe.connect(("127.0.0.1", port))
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def refused_port() -> int:
    """A port nothing listens on: connect fails at once with ECONNREFUSED."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def primary_url(dialect: str, port: int) -> dict[str, str]:
    if dialect == "openai":
        return {"chat_openai_base_url": f"http://127.0.0.1:{port}/v1"}
    return {"anthropic_base_url": f"http://127.0.0.1:{port}"}


@TRANSPORTS
@DIALECTS
@RISKS
def test_d01_connect_blackhole_falls_back_after_the_connect_timeout(
    rigs: Callable[..., Rig], dialect: str, risk: str
) -> None:
    with blackhole() as port:
        rig = rigs(dialect, risk, **primary_url(dialect, port))
        run = rig.play(rig.ask)
    # A connect timeout is not retried: one timeout, then the fallback.
    check_contract(rig, run, bound=CONNECT_S + SLACK_S + 1.0)
    check_answered_by(rig, run, rig.secondary)
    assert rig.counts(run) == {"secondary": 1}, "the primary never answered a SYN"
    assert rig.path(run) == [(rig.primary, "connect"), (rig.secondary, "ok")]
    check_degraded_status(rig, run, detect_s=CONNECT_S)
    first = run.first_time("delta")
    assert first is not None and first <= CONNECT_S + SLACK_S


@TRANSPORTS
@DIALECTS
@RISKS
def test_d01_connection_refused_falls_back_at_once(
    rigs: Callable[..., Rig], dialect: str, risk: str
) -> None:
    rig = rigs(dialect, risk, **primary_url(dialect, refused_port()))
    run = rig.play(rig.ask)
    check_contract(rig, run, bound=1.5 + SLACK_S)
    check_answered_by(rig, run, rig.secondary)
    assert rig.counts(run) == {"secondary": 1}
    assert rig.path(run) == [(rig.primary, "connect")] * 2 + [(rig.secondary, "ok")]
    check_degraded_status(rig, run)


@DIALECTS
def test_d01_a_blackholed_provider_costs_one_connect_timeout(
    rigs: Callable[..., Rig], dialect: str
) -> None:
    # A first-token deadline well above the connect timeout, as in RELIABILITY.md (1 s vs
    # 8 s); with the module's short one, the first-token timer would fire first.
    connect = 0.6
    with blackhole() as port:
        rig = rigs(
            dialect,
            "low",
            connect_timeout_s=connect,
            first_token_low_s=8.0,
            **primary_url(dialect, port),
        )
        run = rig.play(rig.ask)
    check_contract(rig, run, bound=3 * connect + SLACK_S)
    assert run.names[-1] == "done"
    assert rig.path(run) == [(rig.primary, "connect"), (rig.secondary, "ok")]
    first = run.first_time("delta")
    # D-01: first token <= connect timeout + fallback TTFT (here ~0) + 0.5 s.
    assert first is not None and first <= connect + 0.5 + 0.3


# --- faults before the first token, secondary healthy ------------------------------------------


@dataclass(frozen=True)
class Early:
    """A primary that fails before sending text; the secondary is healthy."""

    id: str
    steps: Callable[[], list[Step]]
    kinds: tuple[str, ...]  # the primary's failure kinds in the audit path, one per attempt
    detect_s: float = 0.0  # how long the fault takes to show

    @property
    def attempts(self) -> int:
        return len(self.kinds)


EARLY = [
    # D-02 / D-03: the first-token deadline; a timeout is never retried.
    Early("D-02 headers never arrive", lambda: [hang_before_headers()], ("timeout",), TTFT_S),
    Early("D-03 headers then silence", lambda: [headers_then_hang()], ("timeout",), TTFT_S),
    # D-06: a Retry-After beyond max_retry_wait_s is not waited for.
    Early(
        "D-06 429 retry-after 120", lambda: [status(429, {"retry-after": "120"})], ("rate_limited",)
    ),
    Early("D-06 429 without retry-after", lambda: [status(429)], ("rate_limited",)),
    # D-08 / D-09: one same-provider retry, then the fallback.
    Early("D-08 500", lambda: [status(500)] * 2, ("server", "server")),
    Early("D-08 502", lambda: [status(502)] * 2, ("server", "server")),
    Early("D-08 503", lambda: [status(503)] * 2, ("server", "server")),
    Early("D-09 529", lambda: [status(529)] * 2, ("overloaded", "overloaded")),
    Early(
        "D-09 in-band overloaded_error",
        lambda: [inband_error_after(0, "overloaded_error")] * 2,
        ("overloaded", "overloaded"),
    ),
    # D-10 / D-11 / D-12: never retried.
    Early("D-10 400", lambda: [status(400)], ("bad_request",)),
    Early("D-10 404", lambda: [status(404)], ("bad_request",)),
    Early("D-10 422", lambda: [status(422)], ("bad_request",)),
    Early("D-11 401", lambda: [status(401)], ("auth",)),
    Early("D-11 403", lambda: [status(403)], ("auth",)),
    Early(
        "D-12 503 x-should-retry false",
        lambda: [status(503, {"x-should-retry": "false"})],
        ("server",),
    ),
    # D-13: unreadable stream data is a provider failure, not a user-visible error.
    Early("D-13 malformed JSON in data", lambda: [malformed_json(0)] * 2, ("malformed",)),
    # D-15: an in-band error on HTTP 200, classified by its type.
    Early(
        "D-15 in-band invalid_request_error",
        lambda: [inband_error_after(0, "invalid_request_error")],
        ("bad_request",),
    ),
    Early(
        "D-15 in-band api_error",
        lambda: [inband_error_after(0, "api_error")] * 2,
        ("server", "server"),
    ),
    # D-16 / D-17: the stream ends without its terminal event before any text, cleanly or
    # by a TCP reset: interrupted, not retried (R1 would allow one retry; none is made).
    Early("D-16 FIN before text", lambda: [fin_after(0)] * 2, ("interrupted",)),
    Early("D-17 RST before text", lambda: [rst_after(0)] * 2, ("interrupted",)),
]


@TRANSPORTS
@pytest.mark.parametrize("case", EARLY, ids=[c.id for c in EARLY])
@DIALECTS
@RISKS
def test_early_fault_falls_back_to_the_secondary(
    rigs: Callable[..., Rig], dialect: str, risk: str, case: Early
) -> None:
    rig = rigs(dialect, risk)
    rig.fake.script("primary", *case.steps())
    run = rig.play(rig.ask)
    check_contract(rig, run, bound=case.detect_s + 1.5 + SLACK_S)
    check_answered_by(rig, run, rig.secondary)
    # (c) the retry policy, from the fake's log.
    assert rig.counts(run) == {"primary": case.attempts, "secondary": 1}
    # (e) the path and the failure kinds.
    assert rig.path(run) == [(rig.primary, k) for k in case.kinds] + [(rig.secondary, "ok")]
    # (d) said while it happens.
    states = [s for s in run.statuses() if s in DEGRADED]
    assert states == ["retrying"] * (case.attempts - 1) + ["fallback"]
    check_degraded_status(rig, run, case.detect_s)
    if case.detect_s:  # abandoned attempts are closed, not leaked
        abandoned = rig.attempts(run, "primary")[0]
        assert rig.fake.wait_closed(abandoned, 1.0)
        first_status = run.first_time("status", state="fallback")
        assert first_status is not None and first_status >= TTFT_S - 0.05
    if case.kinds == ("auth",):
        assert rig.deps.chain.alerts["provider_auth"] == 1, "D-11: the provider_auth alert"


# --- D-10: a prompt longer than the model's context ------------------------------------------


def context_too_long(dialect: str) -> Step:
    """The 400 each vendor sends for a prompt beyond the model's context window."""
    if dialect == "openai":
        error = {
            "message": "This model's maximum context length is 8192 tokens. However, your "
            "messages resulted in 9120 tokens. Please reduce the length of the messages.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
        return status(400, body={"error": error})
    error = {"type": "invalid_request_error", "message": "prompt is too long: 9120 tokens > 8192"}
    return status(400, body={"type": "error", "error": error})


def sources_sent(attempt: Attempt) -> int:
    return json.dumps(attempt.body).count("<source ")


@DIALECTS
@RISKS
def test_d10_context_length_shortens_the_prompt_once_on_the_same_model(
    rigs: Callable[..., Rig], dialect: str, risk: str
) -> None:
    rig = rigs(dialect, risk)
    rig.fake.script("primary", context_too_long(dialect))
    run = rig.play(rig.ask)
    check_contract(rig, run, bound=1.5 + SLACK_S)
    check_answered_by(rig, run, rig.primary)
    assert rig.path(run) == [(rig.primary, "context_length"), (rig.primary, "ok")]
    first, second = rig.attempts(run, "primary")
    retrieved = len(run.all("sources")[0]["sources"])
    assert sources_sent(first) == retrieved >= 2
    assert sources_sent(second) == retrieved // 2, "the better-ranked half of the sources"
    # The answer is checked against the sources the model saw.
    kept = retrieved // 2
    assert all(c["n"] <= kept for c in run.all("citations")[0]["citations"])
    assert all(
        s["source"] is None or s["source"] <= kept for s in run.all("grounding")[0]["sentences"]
    )
    assert "context_shortened" in [d.get("reason") for n, d in run.events if n == "status"]


@DIALECTS
@RISKS
def test_d10_context_still_too_long_falls_back_to_the_next_model(
    rigs: Callable[..., Rig], dialect: str, risk: str
) -> None:
    rig = rigs(dialect, risk)
    rig.fake.script("primary", context_too_long(dialect), context_too_long(dialect))
    run = rig.play(rig.ask)
    check_contract(rig, run, bound=1.5 + SLACK_S)
    check_answered_by(rig, run, rig.secondary)
    assert rig.counts(run) == {"primary": 2, "secondary": 1}
    assert rig.path(run) == [
        (rig.primary, "context_length"),
        (rig.primary, "context_length"),
        (rig.secondary, "ok"),
    ]


# --- D-14 / D-25: oddities that are not failures ------------------------------------------------


@DIALECTS
@RISKS
def test_d14_garbage_sse_line_is_ignored(rigs: Callable[..., Rig], dialect: str, risk: str) -> None:
    rig = rigs(dialect, risk)
    rig.fake.script("primary", garbage_sse_line(2))
    run = rig.play(rig.ask)
    check_contract(rig, run, bound=1.0 + SLACK_S)
    check_answered_by(rig, run, rig.primary)
    assert rig.counts(run) == {"primary": 1}
    assert not any(s in DEGRADED for s in run.statuses())


@DIALECTS
@RISKS
def test_d25_duplicated_chunk_still_ends_in_one_answer(
    rigs: Callable[..., Rig], dialect: str, risk: str
) -> None:
    """Neither wire format numbers its text deltas, so a repeated chunk cannot be told from
    a repeated word; what must hold is the contract: one answer from the primary."""
    rig = rigs(dialect, risk)
    rig.fake.script("primary", duplicate_chunk(2))
    run = rig.play(rig.ask)
    check_contract(rig, run, bound=1.0 + SLACK_S)
    assert run.names[-1] == "done" and run.end["provider"] == rig.primary
    assert rig.counts(run) == {"primary": 1}


@DIALECTS
@RISKS
def test_d25_missing_usage_is_estimated_and_flagged(
    rigs: Callable[..., Rig], dialect: str, risk: str
) -> None:
    rig = rigs(dialect, risk)
    rig.fake.script("primary", missing_usage())
    run = rig.play(rig.ask)
    check_contract(rig, run, bound=1.0 + SLACK_S)
    check_answered_by(rig, run, rig.primary)
    usage = run.end["usage"]
    assert usage["estimated"] is True and usage["output_tokens"] > 0
    assert rig.audit(run).usage_estimated is True


# --- D-05 / D-07 Retry-After ------------------------------------------------------------------


def _wall(monotonic_at: float) -> float:
    return time.time() - (time.monotonic() - monotonic_at)


RETRY_AFTER = [
    (form, risk)
    for form in ("D-05 retry-after: 1", "D-07 retry-after-ms: 400", "D-07 retry-after HTTP-date")
    for risk in ("low", "high")
    if risk == "low" or "HTTP-date" not in form  # parsing does not depend on the tier
]


@pytest.mark.parametrize(("form", "risk"), RETRY_AFTER)
@DIALECTS
def test_retry_after_is_honoured_then_the_retry_succeeds(
    rigs: Callable[..., Rig], dialect: str, risk: str, form: str
) -> None:
    if "HTTP-date" in form:
        headers = {"retry-after": retry_after_date(1.8)}  # whole seconds: 0.8-1.8 s from now
    elif "-ms" in form:
        headers = {"retry-after-ms": "400"}
    else:
        headers = {"retry-after": "1"}
    rig = rigs(dialect, risk)
    rig.fake.script("primary", status(429, headers))
    run = rig.play(rig.ask)
    check_contract(rig, run, bound=2.0 + 2 * TTFT_S + 0.5 + SLACK_S)
    check_answered_by(rig, run, rig.primary)
    assert rig.counts(run) == {"primary": 2}
    first, second = rig.attempts(run, "primary")
    assert first.headers_sent_at is not None
    if "HTTP-date" in form:
        when = email.utils.parsedate_to_datetime(headers["retry-after"]).timestamp()
        expected = when - _wall(first.headers_sent_at)
    else:
        expected = 0.4 if "-ms" in form else 1.0
    waited = second.started_at - first.headers_sent_at
    assert expected - 0.05 <= waited <= expected + 0.3, (waited, expected)
    retrying = [d for d in run.all("status") if d["state"] == "retrying"]
    assert len(retrying) == 1 and abs(retrying[0]["wait_s"] - expected) <= 0.2
    assert rig.path(run) == [(rig.primary, "rate_limited"), (rig.primary, "ok")]
    assert rig.path_rows(run)[1]["retry"] is True
    check_degraded_status(rig, run)


# --- faults after the first token -------------------------------------------------------------


@dataclass(frozen=True)
class Late:
    id: str
    step: Callable[[], Step]
    kind: str
    detect_s: float = 0.0


K = 3  # tokens the primary sends before the fault
LATE = [
    Late("D-04 stall", lambda: stall_after(K), "timeout", STALL_S),
    Late("D-13 malformed JSON", lambda: malformed_json(K), "malformed"),
    Late("D-15 in-band overloaded_error", lambda: inband_error_after(K), "overloaded"),
    Late("D-16 FIN", lambda: fin_after(K), "interrupted"),
    Late("D-17 RST", lambda: rst_after(K), "interrupted"),
]


@TRANSPORTS
@pytest.mark.parametrize("case", LATE, ids=[c.id for c in LATE])
@DIALECTS
@RISKS
def test_mid_stream_fault(rigs: Callable[..., Rig], dialect: str, risk: str, case: Late) -> None:
    """Low risk: what was shown is withdrawn (``reset``) and the secondary's answer follows.
    High risk: nothing had been shown, so the secondary's validated answer is all there is."""
    rig = rigs(dialect, risk)
    rig.fake.script("primary", case.step())
    run = rig.play(rig.ask)
    check_contract(rig, run, bound=case.detect_s + 1.5 + SLACK_S)
    check_answered_by(rig, run, rig.secondary)
    assert rig.counts(run) == {"primary": 1, "secondary": 1}, "no retry after text was sent"
    assert rig.path(run) == [(rig.primary, case.kind), (rig.secondary, "ok")]
    if risk == "low":
        names = run.names
        assert names.count("reset") == 1
        reset = names.index("reset")
        assert "delta" in names[:reset], "the primary's first words were shown"
        assert ANSWERS["low"].startswith(run.shown_before_reset)
        reset_at = run.first_time("reset")
        assert reset_at is not None and reset_at <= case.detect_s + STATUS_WITHIN_S
    else:
        retrying = [d for d in run.all("status") if d["state"] == "retrying"]
        assert retrying and retrying[0]["provider"] == rig.primary
    if case.kind == "timeout":  # the fake holds a stalled stream open: Docent must close it
        assert rig.fake.wait_closed(rig.attempts(run, "primary")[0], 1.0)


@DIALECTS
def test_mid_stream_fallback_is_announced_by_a_status(
    rigs: Callable[..., Rig], dialect: str
) -> None:
    rig = rigs(dialect, "low")
    rig.fake.script("primary", fin_after(K))
    run = rig.play(rig.ask)
    check_contract(rig, run, bound=1.5 + SLACK_S)
    check_answered_by(rig, run, rig.secondary)
    after = run.names[run.names.index("reset") :]
    assert "status" in after[: after.index("delta")], after


@TRANSPORTS
@DIALECTS
@RISKS
def test_d04_stall_with_no_replacement_is_a_clear_error(
    rigs: Callable[..., Rig], dialect: str, risk: str
) -> None:
    """Both providers stall after a few words (stall deadline 0.5 s here)."""
    stall = 0.5
    rig = rigs(dialect, risk, stall_s=stall)
    rig.fake.script("primary", stall_after(K))
    rig.fake.script("secondary", stall_after(K))
    run = rig.play(rig.ask)
    check_contract(rig, run, bound=2 * stall + 1.0 + SLACK_S)
    assert run.names[-1] == "error"
    error = run.end
    assert error["retryable"] is True
    assert rig.counts(run) == {"primary": 1, "secondary": 1}
    assert rig.path(run) == [(rig.primary, "timeout"), (rig.secondary, "timeout")]
    if risk == "low":
        # Shown text is marked incomplete.
        assert error["code"] == "interrupted" and error["partial"] is True
        assert "incomplete" in error["message"]
    else:
        assert error["code"] == "all_providers_unavailable" and "delta" not in run.names
    assert rig.audit(run).outcome in ("interrupted", "error")


# --- D-18 / D-19 finish reasons ----------------------------------------------------------------


@DIALECTS
@RISKS
def test_d18_length_is_marked_truncated_low_and_withheld_high(
    rigs: Callable[..., Rig], dialect: str, risk: str
) -> None:
    rig = rigs(dialect, risk)
    rig.fake.script("primary", finish_reason("length", after=5))
    run = rig.play(rig.ask)
    check_contract(rig, run, bound=1.0 + SLACK_S)
    assert run.names[-1] == "done"
    assert rig.counts(run) == {"primary": 1}, "a length stop is an answer, not a failure"
    assert not rig.cached(run)
    if risk == "low":
        assert run.end["truncated"] is True and run.end["outcome"] == "truncated"
        assert run.text == " ".join(ANSWERS["low"].split()[:5]) + " "
        assert rig.audit(run).outcome == "truncated"
    else:
        # Not released: the safe answer, and the draft waits for a person.
        assert run.text == SAFE_ANSWER and run.end["outcome"] == "queued"
        assert "1200" not in "".join(d["text"] for d in run.all("delta"))
        reviews = rig.reviews(run)
        assert len(reviews) == 1 and reviews[0].status == "pending"
        assert reviews[0].draft.startswith("The maximum dose")
        assert run.end["review"]["id"] == reviews[0].id


@DIALECTS
@RISKS
def test_d19_refusal_is_a_clear_message_without_fallback(
    rigs: Callable[..., Rig], dialect: str, risk: str
) -> None:
    rig = rigs(dialect, risk)
    rig.fake.script("primary", finish_reason("content_filter", after=0))
    run = rig.play(rig.ask)
    check_contract(rig, run, bound=1.0 + SLACK_S)
    assert run.names[-1] == "done" and run.end["outcome"] == "refused"
    assert run.text == REFUSED
    assert rig.counts(run) == {"primary": 1}, "no fallback that circumvents the refusal"
    assert not rig.cached(run)


@DIALECTS
def test_d19_refusal_after_some_text_replaces_it_with_the_message(
    rigs: Callable[..., Rig], dialect: str
) -> None:
    rig = rigs(dialect, "low")
    rig.fake.script("primary", finish_reason("content_filter", after=3))
    run = rig.play(rig.ask)
    check_contract(rig, run, bound=1.0 + SLACK_S)
    assert run.end["outcome"] == "refused" and rig.counts(run) == {"primary": 1}
    assert run.text == REFUSED, f"the reader is left with {run.text!r}"


@RISKS
def test_d19_policy_error_does_not_fall_back(rigs: Callable[..., Rig], risk: str) -> None:
    rig = rigs("openai", risk)
    body = {
        "error": {
            "message": "Your request was rejected by the content policy.",
            "type": "invalid_request_error",
            "param": None,
            "code": "content_policy_violation",
        }
    }
    rig.fake.script("primary", status(400, body=body))
    run = rig.play(rig.ask)
    check_contract(rig, run, bound=1.0 + SLACK_S)
    assert rig.counts(run) == {"primary": 1}, "the secondary was asked after a policy refusal"


# --- D-20 total deadline ------------------------------------------------------------------------

SHORT_TOTAL = 1.0


@DIALECTS
@RISKS
def test_d20_slow_stream_hits_the_total_deadline(
    rigs: Callable[..., Rig], dialect: str, risk: str
) -> None:
    """5 tokens/s never stalls (gap 0.2 s < stall 0.8 s) but cannot finish in 1.0 s. The
    deadline is the answer's, not the attempt's: no time is left for the secondary."""
    rig = rigs(dialect, risk, total_low_s=SHORT_TOTAL, total_high_s=SHORT_TOTAL)
    rig.fake.script("primary", slow(5))
    run = rig.play(rig.ask)
    check_contract(rig, run, bound=SHORT_TOTAL + 1.0 + SLACK_S)
    assert run.names[-1] == "error"
    assert run.elapsed <= SHORT_TOTAL + 0.5 + SLACK_S, f"answer took {run.elapsed:.2f} s"
    assert rig.path(run)[0] == (rig.primary, "timeout")
    slow_attempt = rig.attempts(run, "primary")[0]
    assert rig.fake.wait_closed(slow_attempt, 1.0), "the slow stream was abandoned, not closed"
    error = run.end
    if risk == "low":
        assert error["code"] == "interrupted" and error["partial"], "partial text is marked"
    else:
        assert "delta" not in run.names and error["code"] == "all_providers_unavailable"


@RISKS
def test_d20_total_deadline_bounds_the_whole_answer(rigs: Callable[..., Rig], risk: str) -> None:
    rig = rigs("openai", risk, total_low_s=SHORT_TOTAL, total_high_s=SHORT_TOTAL)
    rig.fake.script("primary", slow(5))
    rig.fake.script("secondary", slow(5))
    run = rig.play(rig.ask)
    check_contract(rig, run, bound=2 * SHORT_TOTAL + 1.0 + SLACK_S)
    assert run.names[-1] == "error"
    assert run.elapsed <= SHORT_TOTAL + 0.5, f"answer took {run.elapsed:.2f} s"


# --- D-21 circuit breaker -----------------------------------------------------------------------


class Clock:
    """time.monotonic plus a jump, to pass a breaker's cooldown without waiting for it."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


def install_breakers(rig: Rig) -> Clock:
    clock = Clock()
    for name in list(rig.deps.chain.breakers):
        rig.deps.chain.breakers[name] = CircuitBreaker(clock)
    return clock


@DIALECTS
def test_d21_flapping_primary_opens_its_circuit(rigs: Callable[..., Rig], dialect: str) -> None:
    """50% failures: each request fails once and succeeds on the retry."""
    rig = rigs(dialect, "low")
    clock = install_breakers(rig)
    for _ in range(15):
        rig.fake.script("primary", status(503), ok())

    async def body() -> tuple[list[Run], list[Run]]:
        before = [await rig.ask(use_cache=False) for _ in range(8)]
        clock.offset += 31.0  # past the 30 s cooldown
        probes = await asyncio.gather(*(rig.ask(use_cache=False) for _ in range(3)))
        return before, list(probes)

    before, probes = rig.play(body)
    primary = [rig.counts(r).get("primary", 0) for r in before]
    # Five requests (ten outcomes, half failed) open the circuit; then the primary gets 0.
    assert primary == [2] * 5 + [0] * 3, primary
    for r in before:
        check_contract(rig, r, bound=1.5 + SLACK_S)
        assert r.names[-1] == "done"
    for r in before[5:]:
        assert r.end["provider"] == rig.secondary
        assert (rig.primary, "skipped") in rig.path(r)
        assert r.elapsed <= 1.0, "an open circuit adds no latency"
    # Half-open: one probe among concurrent requests.
    assert sum(rig.counts(r).get("primary", 0) for r in probes) == 1
    for r in probes:
        check_contract(rig, r, bound=2.0 + SLACK_S)


@DIALECTS
def test_d21_dead_primary_costs_at_most_three_requests(
    rigs: Callable[..., Rig], dialect: str
) -> None:
    """A primary that never answers (first-token timeouts, 0.5 s here) opens after 3
    consecutive failures."""
    ttft = 0.5
    rig = rigs(dialect, "low", first_token_low_s=ttft)
    for _ in range(10):
        rig.fake.script("primary", hang_before_headers())

    async def body() -> list[Run]:
        return [await rig.ask(use_cache=False) for _ in range(6)]

    runs = rig.play(body)
    slow_ones = [r for r in runs if rig.counts(r).get("primary", 0)]
    assert len(slow_ones) == 3, [rig.counts(r) for r in runs]
    for r in runs:
        check_contract(rig, r, bound=ttft + 1.0 + SLACK_S)
        assert r.end["provider"] == rig.secondary
    fastest_slow = min(r.elapsed for r in runs[:3])
    for r in runs[3:]:
        assert (rig.primary, "skipped") in rig.path(r)
        assert r.elapsed < fastest_slow, "no primary-timeout latency once the circuit is open"


# --- D-23 / D-24 all providers down -----------------------------------------------------------


@DIALECTS
@RISKS
def test_d23_all_down_serves_the_labelled_cached_answer(
    rigs: Callable[..., Rig], dialect: str, risk: str
) -> None:
    rig = rigs(dialect, risk)

    async def body() -> tuple[Run, Run]:
        healthy = await rig.ask()
        rig.fake.script("primary", status(503), status(503))
        rig.fake.script("secondary", status(503), status(503))
        # use_cache=False: no ordinary hit, so the providers are asked and fail.
        return healthy, await rig.ask(use_cache=False)

    healthy, run = rig.play(body)
    check_answered_by(rig, healthy, rig.primary)
    check_contract(rig, run, bound=3.0)
    assert run.names[-1] == "done"
    assert run.end["cache"]["status"] == "fallback" and run.end["outcome"] == "cached"
    assert run.end["cache"]["answer_id"] == healthy.answer_id
    assert run.text == ANSWERS[risk]
    assert "cache" in run.statuses(), "the reader is told it is an earlier answer"
    assert rig.counts(run) == {"primary": 2, "secondary": 2}
    # The cited document versions are the live ones.
    live = {s["document_id"]: s["version"] for s in run.all("sources")[0]["sources"]}
    for citation in run.all("citations")[0]["citations"]:
        assert live.get(citation["document_id"]) == citation["version"]
    row = rig.audit(run)
    assert row.cache_status == "fallback"
    assert [k for _, k in rig.path(run)] == ["server"] * 4


@DIALECTS
@RISKS
def test_d24_all_down_without_cache_is_a_clear_retryable_error(
    rigs: Callable[..., Rig], dialect: str, risk: str
) -> None:
    rig = rigs(dialect, risk)
    for model in ("primary", "secondary"):
        for _ in range(4):
            rig.fake.script(model, status(503))

    async def body() -> list[Run]:
        return [await rig.ask() for _ in range(3)]

    first, second, third = rig.play(body)
    for run in (first, second, third):
        check_contract(rig, run, bound=3.0)
        assert run.names[-1] == "error"
        error = run.end
        assert error["code"] == "all_providers_unavailable" and error["retryable"] is True
        assert error["retry_after"] > 0 and "Try again" in error["message"]
        assert "delta" not in run.names
    assert rig.counts(first) == {"primary": 2, "secondary": 2}
    assert rig.counts(second) == {"primary": 1, "secondary": 1}, "3 in a row open the circuit"
    # Both circuits open: a fast, clear answer without calling anyone.
    assert rig.counts(third) == {} and third.elapsed <= 0.5
    assert rig.path(third) == [(rig.primary, "skipped"), (rig.secondary, "skipped")]


# --- R5: the client leaves ----------------------------------------------------------------------


async def _wait_for(predicate: Callable[[], bool]) -> None:
    """Poll the fake's log (another thread's state) for up to 5 s."""
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the fake never reached the expected state")


@TRANSPORTS
@DIALECTS
def test_disconnect_mid_stream_closes_the_upstream(rigs: Callable[..., Rig], dialect: str) -> None:
    rig = rigs(dialect, "low")
    rig.fake.script("primary", slow(3))

    async def body() -> tuple[list[str], float, str]:
        agen = answer(rig.deps, TENANT, ChatRequest(question=rig.question))
        seen: list[str] = []
        answer_id = ""
        async with asyncio.timeout(CAP_S):
            async for event in agen:
                seen.append(event.event)
                answer_id = answer_id or str(event.data.get("answer_id", ""))
                if event.event == "delta":
                    break
        left = time.monotonic()
        await agen.aclose()
        attempt = rig.fake.attempts("primary")[0]
        await asyncio.to_thread(closed_within, rig.fake, attempt, left)
        return seen, left, answer_id

    seen, _, answer_id = rig.play(body)
    assert seen[-1] == "delta"
    attempt = rig.fake.attempts("primary")[0]
    assert attempt.outcome == "client_closed" and attempt.tokens_sent_after_close <= 1
    assert attempt.tokens_sent < len(ANSWERS["low"].split()), "the stream was cut short"
    rig.s.answers.lanes.flush_writes()
    with rig.s.db.session() as db:
        row = db.get(AnswerRecord, answer_id)
        assert row is not None and row.outcome == "abandoned"
        assert db.scalar(select(CacheEntry).where(CacheEntry.answer_id == answer_id)) is None


async def _leave_while(
    rig: Rig, ready: Callable[[], bool]
) -> tuple[list[tuple[str, dict[str, Any]]], Attempt]:
    """Consume the answer in a task, as the web layer does, and cancel it once ``ready``."""
    seen: list[tuple[str, dict[str, Any]]] = []
    agen = answer(rig.deps, TENANT, ChatRequest(question=rig.question))

    async def consume() -> None:
        async for event in agen:
            seen.append((event.event, event.data))

    task = asyncio.create_task(consume())
    await _wait_for(lambda: bool(rig.fake.attempts("primary")) and ready())
    left = time.monotonic()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await agen.aclose()
    attempt = rig.fake.attempts("primary")[0]
    await asyncio.to_thread(closed_within, rig.fake, attempt, left)
    return seen, attempt


def _abandoned(rig: Rig, seen: list[tuple[str, dict[str, Any]]]) -> AnswerRecord:
    assert seen and seen[0][0] == "meta"
    rig.s.answers.lanes.flush_writes()
    with rig.s.db.session() as db:
        row = db.get(AnswerRecord, seen[0][1]["answer_id"])
        assert row is not None and row.outcome == "abandoned", "the audit row is written"
        db.expunge(row)
        return row


@TRANSPORTS
@DIALECTS
def test_disconnect_during_the_first_token_wait_closes_the_upstream(
    rigs: Callable[..., Rig], dialect: str
) -> None:
    rig = rigs(dialect, "low")
    rig.fake.script("primary", hang_before_headers())
    seen, attempt = rig.play(lambda: _leave_while(rig, lambda: True))
    assert "delta" not in [n for n, _ in seen] and attempt.headers_sent_at is None
    assert attempt.outcome == "client_closed"
    assert rig.fake.attempts("secondary") == [], "no fallback for a client that left"
    _abandoned(rig, seen)


@DIALECTS
def test_disconnect_during_high_risk_buffering_closes_the_upstream(
    rigs: Callable[..., Rig], dialect: str
) -> None:
    rig = rigs(dialect, "high")
    rig.fake.script("primary", slow(3))

    def buffering() -> bool:
        return rig.fake.attempts("primary")[0].tokens_sent >= 2

    seen, attempt = rig.play(lambda: _leave_while(rig, buffering))
    names = [n for n, _ in seen]
    assert names[:3] == ["meta", "sources", "status"] and seen[2][1]["state"] == "validating"
    assert "delta" not in names, "nothing is shown while a high-risk answer is buffered"
    assert attempt.outcome == "client_closed" and attempt.tokens_sent_after_close <= 1
    assert rig.fake.attempts("secondary") == []
    _abandoned(rig, seen)
    with rig.s.db.session() as db:
        assert db.scalar(select(ReviewItem)) is None
        assert db.scalar(select(CacheEntry)) is None


@DIALECTS
def test_disconnect_records_partial_usage(rigs: Callable[..., Rig], dialect: str) -> None:
    rig = rigs(dialect, "low")
    rig.fake.script("primary", slow(3))

    async def body() -> str:
        agen = answer(rig.deps, TENANT, ChatRequest(question=rig.question))
        answer_id = ""
        deltas = 0
        async with asyncio.timeout(CAP_S):
            async for event in agen:
                answer_id = answer_id or str(event.data.get("answer_id", ""))
                deltas += event.event == "delta"
                if deltas == 2:
                    break
        await agen.aclose()
        return answer_id

    answer_id = rig.play(body)
    rig.s.answers.lanes.flush_writes()
    with rig.s.db.session() as db:
        row = db.get(AnswerRecord, answer_id)
        assert row is not None and row.outcome == "abandoned"
        assert row.output_tokens >= 2, "tokens streamed before the disconnect are recorded"
