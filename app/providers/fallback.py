"""The provider chain: the one place that retries, falls back, and enforces deadlines.

For each provider in order (skipping those whose circuit is open):

- wait at most ``first_token_s`` for the first piece of text; a provider that does not send
  one in time is abandoned, not retried;
- on a retryable failure before the first piece (connection, 5xx, 529, 429 whose Retry-After
  is at most ``max_retry_wait_s``), retry the same provider once, if the total deadline allows;
- when the prompt is longer than the model's context, shorten it once (``request.shorten``:
  fewer sources) and ask the same provider again; a model with a larger context comes next;
- otherwise move to the next provider, and say so with a ``ChainStatus``.

Once a piece of text has been passed on (``Committed``), a failure is not hidden by splicing
in another model's words: it is raised as ``StreamInterrupted`` with the partial text, and the
caller decides (buffered answers restart on the next provider; streamed ones show a reset).
Between pieces a stall longer than ``stall_s``, or passing the total deadline, is a failure.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Literal

from app.errors import AllProvidersFailed, ProviderError, StreamInterrupted
from app.providers import Finished, GenerationRequest, Provider, Usage

log = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclass(frozen=True)
class Deadlines:
    connect_s: float = 1.0
    first_token_s: float = 8.0
    stall_s: float = 10.0
    total_s: float = 60.0
    max_retry_wait_s: float = 2.0


class CircuitBreaker:
    """Per provider and model: opens after ``consecutive`` failures in a row, or when at least
    ``ratio`` of the last ``min_requests``+ calls within ``window_s`` failed; after
    ``cooldown_s`` one probe is let through (half-open), whose outcome closes or reopens it."""

    def __init__(
        self,
        clock: Clock = time.monotonic,
        consecutive: int = 3,
        ratio: float = 0.5,
        min_requests: int = 10,
        window_s: float = 60.0,
        cooldown_s: float = 30.0,
    ) -> None:
        self._clock = clock
        self._consecutive_limit = consecutive
        self._ratio = ratio
        self._min_requests = min_requests
        self._window_s = window_s
        self._cooldown_s = cooldown_s
        self._outcomes: deque[tuple[float, bool]] = deque()
        self._consecutive = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> Literal["closed", "open", "half_open"]:
        if self._opened_at is None:
            return "closed"
        if self._probing or self._clock() - self._opened_at >= self._cooldown_s:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._probing:
            self._probing = True
            return True
        return False

    def record(self, ok: bool) -> None:
        now = self._clock()
        if self._probing:
            self._probing = False
            self._opened_at = None if ok else now
            self._consecutive = 0
            self._outcomes.clear()
            return
        self._outcomes.append((now, ok))
        while self._outcomes and now - self._outcomes[0][0] > self._window_s:
            self._outcomes.popleft()
        self._consecutive = 0 if ok else self._consecutive + 1
        failures = sum(1 for _, good in self._outcomes if not good)
        if self._consecutive >= self._consecutive_limit or (
            len(self._outcomes) >= self._min_requests
            and failures / len(self._outcomes) >= self._ratio
        ):
            self._opened_at = now
            self._outcomes.clear()
            self._consecutive = 0


@dataclass
class ChainStatus:
    """A degradation worth telling the user about while they wait."""

    state: Literal["retrying", "fallback"]
    provider: str
    reason: str
    wait_s: float = 0.0


@dataclass
class Committed:
    """The first piece of text from ``provider`` follows: no more fallback."""

    provider: str
    model: str


@dataclass
class Attempt:
    provider: str
    outcome: str
    """``ok``, ``skipped`` (circuit open), or the ProviderError kind."""
    ms: float
    retry: bool = False
    detail: str = ""


@dataclass
class ChainTrace:
    """What the chain did for one answer; goes into the audit row."""

    attempts: list[Attempt] = field(default_factory=list)

    def path(self) -> list[dict[str, object]]:
        return [a.__dict__ for a in self.attempts]


ChainEvent = ChainStatus | Committed | str | Finished


class Watchdog:
    """Deadlines for the waits of one task: ``start(seconds)`` before a wait, ``stop()`` after
    it; a wait that outlasts its deadline is cancelled, and ``timed_out()`` says so.

    One timer serves every wait. It is re-armed only when it fires during a wait that still
    has time, or when a wait must end sooner than the timer is set for. (An ``asyncio.timeout``
    around each wait cost a context manager, a timer handle and its cancellation for every
    token of every stream; this costs two assignments.) The cancellation is asyncio's own, as
    ``asyncio.timeout`` does it: ``timed_out`` uncancels the task, so a cancellation from
    elsewhere (a client that left) at the same time still propagates."""

    # Timers may fire up to a millisecond early (libuv counts milliseconds).
    _SLACK = 0.001

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task[object] | None = None
        self._base = 0
        self._due: float | None = None
        self._armed_at = float("inf")
        self._handle: asyncio.TimerHandle | None = None
        self._expired = False

    def start(self, seconds: float) -> None:
        task = asyncio.current_task()
        if task is not self._task:
            assert task is not None, "a watchdog serves a task"
            self._task, self._base = task, task.cancelling()
        due = self._loop.time() + seconds
        self._due = due
        if due < self._armed_at:
            if self._handle is not None:
                self._handle.cancel()
            self._handle, self._armed_at = self._loop.call_at(due, self._fire), due

    def stop(self) -> None:
        self._due = None

    def _fire(self) -> None:
        self._handle, self._armed_at = None, float("inf")
        due = self._due
        if due is None or self._task is None:
            return  # not waiting: the next start arms the timer again
        if self._loop.time() >= due - self._SLACK:
            self._expired = True
            self._task.cancel()
        else:
            self._handle, self._armed_at = self._loop.call_at(due, self._fire), due

    def timed_out(self) -> bool:
        """After a CancelledError: True if it was this watchdog's alone (it is absorbed)."""
        if not self._expired or self._task is None:
            return False
        self._expired = False
        return self._task.uncancel() <= self._base

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class FallbackChain:
    def __init__(
        self,
        providers: Sequence[Provider],
        clock: Clock = time.monotonic,
        breaker: Callable[[], CircuitBreaker] | None = None,
    ) -> None:
        self.providers = list(providers)
        self.clock = clock
        make = breaker or (lambda: CircuitBreaker(clock))
        self.breakers = {p.name: make() for p in self.providers}
        self.alerts: dict[str, int] = {"provider_auth": 0}

    async def stream(
        self,
        request: GenerationRequest,
        deadlines: Deadlines,
        trace: ChainTrace,
        skip: Sequence[str] = (),
        providers: Sequence[Provider] | None = None,
        since: float | None = None,
    ) -> AsyncGenerator[ChainEvent, None]:
        """The answer from the first provider that can give one; see the module docstring.
        ``since``: when the answer began (``clock()``), if this is not its first generation:
        retries, replacements and stricter attempts share one total deadline."""
        started = self.clock() if since is None else since
        shortened = False
        failures: list[ProviderError] = []
        skipped: list[str] = []
        chain = [p for p in (providers or self.providers) if p.name not in skip]
        for position, provider in enumerate(chain):
            breaker = self.breakers.setdefault(provider.name, CircuitBreaker(self.clock))
            if not breaker.allow():
                skipped.append(provider.name)
                trace.attempts.append(Attempt(provider.name, "skipped", 0.0))
                continue
            retried = False
            while True:
                remaining = deadlines.total_s - (self.clock() - started)
                if remaining <= 0:
                    raise AllProvidersFailed(failures, skipped)
                attempt_started = self.clock()
                committed = False
                try:
                    attempt = self._attempt(provider, request, deadlines, remaining)
                    async with aclosing(attempt):
                        async for event in attempt:
                            if isinstance(event, Committed):
                                committed = True
                            yield event
                    breaker.record(True)
                    trace.attempts.append(
                        Attempt(provider.name, "ok", self._ms(attempt_started), retried)
                    )
                    return
                except ProviderError as exc:
                    # A refusal or a prompt too long for the model is not an outage.
                    breaker.record(exc.kind in ("refused", "context_length"))
                    trace.attempts.append(
                        Attempt(
                            provider.name, exc.kind, self._ms(attempt_started), retried, exc.message
                        )
                    )
                    if exc.kind == "auth":
                        self.alerts["provider_auth"] += 1
                        log.warning("provider_auth alert: %s", exc.message)
                    else:
                        log.info("provider attempt failed: %s", exc.message)
                    if committed or isinstance(exc, StreamInterrupted):
                        raise
                    if exc.kind == "refused":
                        # A policy refusal is an answer: another model must not get around it.
                        yield Committed(provider.name, provider.model)
                        yield Finished("refused", Usage(estimated=True))
                        return
                    failures.append(exc)
                    if exc.kind == "context_length" and not shortened and request.shorten:
                        shortened = True
                        if request.shorten(request):
                            yield ChainStatus("retrying", provider.name, "context_shortened")
                            continue
                    wait = self._retry_wait(exc, retried, deadlines, started)
                    if wait is None or breaker.state != "closed":
                        break
                    retried = True
                    yield ChainStatus("retrying", provider.name, exc.kind, wait)
                    await asyncio.sleep(wait)
            if position + 1 < len(chain):
                yield ChainStatus("fallback", provider.name, failures[-1].kind)
        raise AllProvidersFailed(failures, skipped)

    def _retry_wait(
        self, exc: ProviderError, retried: bool, deadlines: Deadlines, started: float
    ) -> float | None:
        """Seconds to wait before the one same-provider retry, or None for no retry."""
        if retried or not exc.retryable or exc.kind in ("timeout", "interrupted"):
            return None
        wait = exc.retry_after
        if exc.kind == "rate_limited" and wait is None:
            return None
        wait = wait or 0.0
        if wait > deadlines.max_retry_wait_s:
            return None
        if self.clock() - started + wait >= deadlines.total_s:
            return None
        return wait

    async def _attempt(
        self, provider: Provider, request: GenerationRequest, deadlines: Deadlines, budget: float
    ) -> AsyncGenerator[ChainEvent, None]:
        end = self.clock() + budget
        pieces: list[str] = []
        stream = provider.stream(request)
        watchdog = Watchdog()
        try:
            first = True
            while True:
                wait = deadlines.first_token_s if first else deadlines.stall_s
                failure: Exception | None = None
                try:
                    watchdog.start(max(min(wait, end - self.clock()), 0.0))
                    try:
                        event = await anext(stream)
                    finally:
                        watchdog.stop()
                except asyncio.CancelledError:
                    if not watchdog.timed_out():
                        raise
                    failure = TimeoutError()
                except Exception as exc:
                    # A library that turned the watchdog's cancellation into its own error:
                    # it was still the deadline, and the task must not stay cancelled.
                    failure = TimeoutError() if watchdog.timed_out() else exc
                if failure is not None:
                    error = self._failure(provider, failure, first, end)
                    if pieces:
                        raise StreamInterrupted(error, "".join(pieces)) from failure
                    if error is failure:
                        raise failure
                    raise error from failure
                if first:
                    first = False
                    yield Committed(provider.name, provider.model)
                if isinstance(event, Finished):
                    yield event
                    return
                pieces.append(event)
                yield event
        finally:
            watchdog.close()
            # Closing the provider's generator closes its HTTP stream, at once.
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()

    def _failure(
        self, provider: Provider, exc: Exception, first: bool, end: float
    ) -> ProviderError:
        """What went wrong while waiting for the next piece of ``provider``'s stream."""
        if isinstance(exc, ProviderError):
            return exc
        if isinstance(exc, StopAsyncIteration):
            return ProviderError(
                f"{provider.name} ended its stream without finishing",
                provider=provider.name,
                kind="interrupted",
                retryable=True,
            )
        if isinstance(exc, TimeoutError):
            what = "the first token" if first else "the next token"
            if not first and self.clock() >= end:
                what = "the answer's end"
            return ProviderError(
                f"{provider.name} did not send {what} in time",
                provider=provider.name,
                kind="timeout",
                retryable=False,
            )
        # An adapter bug must not take the answer down.
        log.exception("%s raised an untranslated error", provider.name, exc_info=exc)
        return ProviderError(
            f"{provider.name} failed unexpectedly ({type(exc).__name__})",
            provider=provider.name,
            kind="malformed",
            retryable=False,
        )

    def _ms(self, since: float) -> float:
        return round((self.clock() - since) * 1000, 1)
