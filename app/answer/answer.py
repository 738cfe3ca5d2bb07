"""Answering a question, as a stream of events (ARCHITECTURE.md, "SSE event contract").

    meta -> sources -> status* -> delta* -> [reset -> delta*] -> citations -> grounding -> done
                                                                   (or error, at any point)

Read top to bottom, one answer is:

1. condense a follow-up into a standalone question (``conversation.condense``);
2. retrieve sources (hybrid search, tenant-scoped, live versions only);
3. classify risk from the question and the sources' collections, and pick a model tier;
4. look in the answer cache (exact, then semantic with the near-miss guard);
5. generate through the fallback chain, with a versioned prompt:
   - low risk: text streams as it arrives; if the provider dies mid-answer, ``reset`` and a
     replacement from the next provider, else a clear error;
   - high risk: buffered, validated (citations, grounding, structure); one stricter retry;
     then released, or replaced by a safe answer and queued for human review;
6. every provider failed: a cached answer (labelled with its age) or a message saying what
   to do;
7. citations and per-sentence grounding; validated complete answers go into the cache;
8. the audit row is written whatever happened, including a client that left.

Cancellation (a client that leaves) reaches the provider stream, which is iterated inside this
generator through ``aclosing``: the upstream HTTP request closes with it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncGenerator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from app.answer.audit import Trail, queue_review, record
from app.answer.cache import AnswerCache, CachedAnswer, partition
from app.answer.conversation import Conversations, condense
from app.answer.grounding import SentenceGrounding, ground_sentences, grounding_pass_rate
from app.answer.judge import judge_grounding
from app.answer.prompts import answer_prompt
from app.answer.retrieve import Retriever
from app.answer.risk import RiskPolicy, choose_tier
from app.answer.validate import strip_forged_markers, validate
from app.db import Database
from app.embeddings import Embedder
from app.errors import AllProvidersFailed, DocentError, StreamInterrupted, Unavailable
from app.models import AnswerEvent, ChatRequest, ChunkHit
from app.providers import Finished, GenerationRequest, Provider, Usage
from app.providers.fallback import ChainStatus, ChainTrace, Committed, Deadlines, FallbackChain
from app.providers.offline import NO_SOURCES

log = logging.getLogger(__name__)
T = TypeVar("T")

_MARKER = re.compile(r"\[(\d{1,3})\]")

SAFE_ANSWER = (
    "I could not check an answer to this question against the documents well enough to show "
    "it, and this topic needs care. A reviewer will look at it. Meanwhile, the passages I "
    "found are listed under Sources."
)
REFUSED = (
    "The language model declined to answer this question. Rephrase it, or ask your "
    "administrator if you think it should be answerable."
)


@dataclass
class AnswerConfig:
    sources: int = 5
    low: Deadlines = field(default_factory=Deadlines)
    high: Deadlines = field(default_factory=lambda: Deadlines(first_token_s=15.0, total_s=90.0))
    max_tokens: int = 1024
    allow_partial_high: bool = False
    supported_at: float | None = None
    prices: dict[str, tuple[float, float]] = field(default_factory=dict)
    judge_deadlines: Deadlines = field(
        default_factory=lambda: Deadlines(first_token_s=15.0, stall_s=10.0, total_s=30.0)
    )


class Lanes:
    """Threads for blocking work. What stands between a question and its first token (SQL
    reads, embedding the question, search, high-risk validation) has its own threads, so it
    never queues behind the grounding, cache and audit writes of answers that are finishing."""

    def __init__(self, fast: int = 8, after: int = 2) -> None:
        self._fast = ThreadPoolExecutor(fast, thread_name_prefix="answer-fast")
        self._after = ThreadPoolExecutor(after, thread_name_prefix="answer-after")

    async def fast(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            self._fast, partial(fn, *args, **kwargs)
        )

    async def after(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            self._after, partial(fn, *args, **kwargs)
        )

    def close(self) -> None:
        self._fast.shutdown(wait=False, cancel_futures=True)
        self._after.shutdown(wait=False, cancel_futures=True)


@dataclass
class AnswerDeps:
    retriever: Retriever
    chain: FallbackChain
    tiers: dict[str, list[Provider]]
    """Providers in chain order for each model tier ('small', 'large')."""
    embedder: Embedder
    db: Database
    conversations: Conversations
    risk: RiskPolicy = field(default_factory=RiskPolicy)
    cache: AnswerCache | None = None
    judge: list[Provider] | None = None
    """Providers for the LLM grounding judge (DOCENT_GROUNDING_JUDGE), if configured."""
    config: AnswerConfig = field(default_factory=AnswerConfig)
    lanes: Lanes = field(default_factory=Lanes)


# --- payloads ---------------------------------------------------------------------------------


def _snippet(text: str, limit: int = 280) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def source_payload(n: int, hit: ChunkHit) -> dict[str, Any]:
    return {
        "n": n,
        "chunk_id": hit.chunk_id,
        "document_id": hit.document_id,
        "title": hit.title,
        "collection": hit.collection,
        "version": hit.version,
        "page": hit.page,
        "start": hit.start,
        "end": hit.end,
        "score": hit.score,
        "snippet": _snippet(hit.text),
    }


def resolve_citations(text: str, sources: list[ChunkHit]) -> tuple[list[dict[str, Any]], int]:
    """Markers that point at a retrieved source, in order of first use, and how many did not."""
    cited: list[dict[str, Any]] = []
    seen: set[int] = set()
    dangling = 0
    for match in _MARKER.finditer(text):
        n = int(match.group(1))
        if not 1 <= n <= len(sources):
            dangling += 1
            continue
        if n in seen:
            continue
        seen.add(n)
        cited.append(source_payload(n, sources[n - 1]))
    return cited, dangling


def _pieces(text: str, words: int = 4) -> list[str]:
    """Validated text released in small pieces, so it still reads as a stream."""
    parts = text.split(" ")
    return [
        (" " if i else "") + " ".join(parts[i : i + words]) for i in range(0, len(parts), words)
    ]


def _error(exc: DocentError, answer_id: str) -> AnswerEvent:
    data: dict[str, Any] = {
        "code": exc.code,
        "message": exc.message,
        "retryable": exc.status >= 500,
        "request_id": answer_id,
    }
    if isinstance(exc, AllProvidersFailed):
        data["retry_after"] = 30
    if isinstance(exc, StreamInterrupted):
        data["retryable"] = True
        data["partial"] = True
        data["message"] = (
            "The language model stopped in the middle of this answer, so what is shown is "
            "incomplete. Ask again to get a whole answer."
        )
    return AnswerEvent(event="error", data=data)


class _Outcome:
    """What a generation run ended with."""

    def __init__(self) -> None:
        self.finished: Finished | None = None
        self.text = ""
        self.forged = 0
        """Markers already removed from ``text`` (high risk releases the cleaned text)."""
        self.verdicts: list[SentenceGrounding] | None = None
        self.grounding_method = ""


# --- the use case -----------------------------------------------------------------------------


async def answer(
    deps: AnswerDeps, tenant: str, request: ChatRequest
) -> AsyncGenerator[AnswerEvent, None]:
    trail = Trail(
        answer_id=str(uuid.uuid4()),
        tenant=tenant,
        question=request.question,
        collection=request.collection,
        outcome="abandoned",
    )
    try:
        async with aclosing(_answer(deps, trail, request)) as events:
            async for event in events:
                yield event
    except DocentError as exc:
        trail.outcome = "interrupted" if isinstance(exc, StreamInterrupted) else "error"
        trail.error_code = exc.code
        yield _error(exc, trail.answer_id)
    except Exception:
        log.exception("answer %s failed", trail.answer_id)
        trail.outcome, trail.error_code = "error", "internal"
        yield AnswerEvent(
            event="error",
            data={
                "code": "internal",
                "message": "Something went wrong while answering. Try again; if it keeps "
                "happening, tell your administrator the request id.",
                "retryable": True,
                "request_id": trail.answer_id,
            },
        )
    finally:
        record(deps.db, trail)


async def _answer(
    deps: AnswerDeps, trail: Trail, request: ChatRequest
) -> AsyncGenerator[AnswerEvent, None]:
    cfg = deps.config
    # 1. The conversation, and a standalone question.
    history: list[tuple[str, str]] = [(m.role, m.content) for m in request.history]
    if request.conversation_id:
        history = await deps.lanes.fast(
            deps.conversations.history, trail.tenant, request.conversation_id
        )
        trail.conversation_id = request.conversation_id
    else:
        trail.conversation_id = deps.conversations.new_id()
    condense_trace = ChainTrace()
    question, trail.condense_method = await condense(
        request.question, history, deps.chain, condense_trace
    )
    trail.condensed_question = question
    trail.mark("condense")

    # 2. Sources. Without the embedder or the index, the exact-match cache is the only way
    # to answer (it needs neither); otherwise the failure is reported (R8).
    try:
        vector = await deps.lanes.fast(deps.embedder.embed_query, question)
        sources = await deps.lanes.fast(
            deps.retriever.search,
            trail.tenant,
            question,
            cfg.sources,
            request.collection,
            vector=vector,
        )
    except Exception as exc:
        log.warning("retrieval failed for answer %s: %s", trail.answer_id, exc)
        async for event in _retrieval_down(deps, trail, request, question, exc):
            yield event
        return
    trail.chunk_ids = [h.chunk_id for h in sources]
    trail.mark("retrieve")
    source_events = [source_payload(n, h) for n, h in enumerate(sources, start=1)]

    # 3. Risk and model tier: from the question and the sources' metadata, never the model.
    risk, trail.risk_reasons = deps.risk.classify(f"{request.question}\n{question}", sources)
    tier, trail.tier_reasons = choose_tier(question, sources, follow_up=bool(history))
    trail.risk, trail.tier = risk, tier
    prompt = answer_prompt(question, sources, high_risk=risk == "high")
    trail.prompt_version, trail.prompt_hash = prompt.version, prompt.sha256
    part = partition(request.collection, prompt.version, tier, risk)
    providers = deps.tiers.get(tier) or deps.chain.providers

    def meta(cache: str) -> AnswerEvent:
        return AnswerEvent(
            event="meta",
            data={
                "answer_id": trail.answer_id,
                "conversation_id": trail.conversation_id,
                "question": question,
                "risk": risk,
                "risk_reasons": trail.risk_reasons,
                "tier": tier,
                "tier_reasons": trail.tier_reasons,
                "chain": [p.name for p in providers],
                "cache": cache,
                "prompt_version": prompt.version,
            },
        )

    # 4. The cache.
    use_cache = deps.cache is not None and request.use_cache and bool(sources)
    if use_cache and deps.cache is not None:
        hit = await deps.lanes.fast(
            deps.cache.lookup,
            trail.tenant,
            question,
            part,
            min_similarity=request.min_cache_similarity,
            vector=vector,
        )
        trail.mark("cache")
        if hit is not None:
            yield meta("hit")
            async for event in _serve_cached(deps, trail, hit, "hit", request.question):
                yield event
            return
    yield meta("miss" if use_cache else "off")
    yield AnswerEvent(event="sources", data={"sources": source_events})

    if not sources:
        trail.outcome, trail.text = "no_sources", NO_SOURCES
        trail.mark("first_token")
        yield AnswerEvent(event="delta", data={"text": NO_SOURCES})
        yield AnswerEvent(event="citations", data={"citations": [], "dangling": 0})
        yield AnswerEvent(event="grounding", data={"sentences": [], "pass_rate": None})
        yield _done(deps, trail, NO_SOURCES, Usage(estimated=True), None)
        await _remember(deps, trail, request.question, NO_SOURCES)
        return

    # 5. Generation.
    generation = GenerationRequest(
        question=question,
        sources=sources,
        system=prompt.system,
        prompt=prompt.user,
        max_tokens=cfg.max_tokens,
        request_id=trail.answer_id,
    )
    deadlines = cfg.high if risk == "high" else cfg.low
    trail.budget_start = deps.chain.clock()
    chain_trace = ChainTrace(list(condense_trace.attempts))
    outcome = _Outcome()
    try:
        if risk == "high":
            run = _buffered(deps, trail, generation, deadlines, providers, chain_trace, outcome)
        else:
            run = _streamed(deps, trail, generation, deadlines, providers, chain_trace, outcome)
        async with aclosing(run) as events:
            async for event in events:
                yield event
    except AllProvidersFailed as exc:
        # 6. Every provider failed: an earlier validated answer, labelled, or a clear message.
        trail.provider_path = chain_trace.path()
        fallback = None
        if deps.cache is not None:
            fallback = await deps.lanes.fast(
                deps.cache.lookup, trail.tenant, question, part, fallback=True, vector=vector
            )
        if fallback is None:
            raise
        log.info("all providers failed; serving a cached answer: %s", exc.message)
        if outcome.text:
            yield AnswerEvent(event="reset", data={"reason": "replaced by a cached answer"})
        async for event in _serve_cached(deps, trail, fallback, "fallback", request.question):
            yield event
        return
    finally:
        trail.provider_path = chain_trace.path()
    if outcome.finished is None:  # a safe answer or a refusal was already sent
        return

    # 7. Citations, grounding, cache.
    text = outcome.text
    truncated = outcome.finished.stop_reason == "length"
    cleaned, forged = strip_forged_markers(text, sources)
    forged += outcome.forged
    citations, _ = resolve_citations(cleaned, sources)
    yield AnswerEvent(event="citations", data={"citations": citations, "dangling": forged})
    if outcome.verdicts is not None:
        verdicts, method = outcome.verdicts, outcome.grounding_method
    else:
        verdicts, method = await _grounding(deps, cleaned, sources, chain_trace, fast=False)
    grounding = [v.to_event() for v in verdicts]
    trail.grounding = grounding
    pass_rate = grounding_pass_rate(verdicts)
    yield AnswerEvent(
        event="grounding",
        data={"sentences": grounding, "pass_rate": pass_rate, "method": method},
    )
    trail.mark("grounding")
    check = validate(text, sources, verdicts, allow_partial=True, truncated=truncated)
    if not trail.validation:
        trail.validation = check.model_dump(exclude={"text"})
    trail.outcome = "truncated" if truncated else "answered"
    trail.text = text
    yield _done(deps, trail, text, outcome.finished.usage, truncated)
    await _remember(deps, trail, request.question, text)
    cacheable = (
        use_cache
        and deps.cache is not None
        and check.passed
        and forged == 0
        and bool(citations)
        and pass_rate == 1.0
    )
    if cacheable and deps.cache is not None:
        await deps.lanes.after(
            deps.cache.store,
            tenant=trail.tenant,
            question=question,
            part=part,
            answer_id=trail.answer_id,
            text=text,
            sources=source_events,
            citations=citations,
            grounding=grounding,
            risk=risk,
            model=trail.provider or "",
            vector=vector,
        )


async def _retrieval_down(
    deps: AnswerDeps, trail: Trail, request: ChatRequest, question: str, exc: Exception
) -> AsyncGenerator[AnswerEvent, None]:
    risk, trail.risk_reasons = deps.risk.classify(f"{request.question}\n{question}", [])
    tier, trail.tier_reasons = choose_tier(question, [], follow_up=False)
    trail.risk, trail.tier = risk, tier
    version = answer_prompt(question, []).version
    hit = None
    # Without sources the tier and the collections' risk are unknown: any tier will do, and
    # a high-risk entry (validated more strictly) may answer a question that looks low-risk.
    risks = ["high"] if risk == "high" else ["low", "high"]
    for r in risks:
        for t in (tier, "large" if tier == "small" else "small"):
            if hit is None and deps.cache is not None:
                part = partition(request.collection, version, t, r)
                hit = await deps.lanes.fast(deps.cache.lookup_exact, trail.tenant, question, part)
    if hit is None:
        raise Unavailable(
            "Docent cannot search the documents right now (the search index or the embedding "
            "model is unavailable), so it cannot answer. Try again in a minute; if it keeps "
            "happening, ask your administrator to check the server log."
        ) from exc
    yield AnswerEvent(
        event="meta",
        data={
            "answer_id": trail.answer_id,
            "conversation_id": trail.conversation_id,
            "question": question,
            "risk": risk,
            "risk_reasons": trail.risk_reasons,
            "tier": tier,
            "tier_reasons": trail.tier_reasons,
            "chain": [],
            "cache": "fallback",
            "prompt_version": version,
        },
    )
    async for event in _serve_cached(deps, trail, hit, "fallback", request.question):
        yield event


def _ground(deps: AnswerDeps, text: str, sources: list[ChunkHit]) -> list[SentenceGrounding]:
    if deps.config.supported_at is not None:
        return ground_sentences(text, sources, deps.embedder, supported_at=deps.config.supported_at)
    return ground_sentences(text, sources, deps.embedder)


JUDGE_UNAVAILABLE = "offline; the judge model was unavailable"


async def _grounding(
    deps: AnswerDeps, text: str, sources: list[ChunkHit], trace: ChainTrace, *, fast: bool
) -> tuple[list[SentenceGrounding], str]:
    """Offline verdicts, made stricter by the judge model when one is configured."""
    lane = deps.lanes.fast if fast else deps.lanes.after
    verdicts = await lane(_ground, deps, text, sources)
    if not deps.judge:
        return verdicts, "offline"
    judged = await judge_grounding(
        deps.chain, deps.judge, verdicts, sources, trace, deps.config.judge_deadlines
    )
    if judged is None:
        return verdicts, JUDGE_UNAVAILABLE
    return judged, "offline+judge"


async def _generate(
    deps: AnswerDeps,
    trail: Trail,
    generation: GenerationRequest,
    deadlines: Deadlines,
    providers: Sequence[Provider],
    trace: ChainTrace,
    skip: Sequence[str],
) -> AsyncGenerator[AnswerEvent | str | Finished, None]:
    """The chain's output as status events, text pieces and one Finished. Every generation
    of one answer (retries, replacements, the stricter attempt) shares its total deadline."""
    stream = deps.chain.stream(
        generation, deadlines, trace, skip=skip, providers=providers, since=trail.budget_start
    )
    async with aclosing(stream):
        async for event in stream:
            if isinstance(event, ChainStatus):
                yield AnswerEvent(
                    event="status",
                    data={
                        "state": event.state,
                        "provider": event.provider,
                        "reason": event.reason,
                        "wait_s": event.wait_s,
                    },
                )
            elif isinstance(event, Committed):
                trail.provider, trail.model = event.provider, event.model
            else:
                if isinstance(event, str):
                    trail.generated_chars += len(event)
                yield event


async def _streamed(
    deps: AnswerDeps,
    trail: Trail,
    generation: GenerationRequest,
    deadlines: Deadlines,
    providers: Sequence[Provider],
    trace: ChainTrace,
    outcome: _Outcome,
) -> AsyncGenerator[AnswerEvent, None]:
    """Low risk: pieces go out as they arrive."""
    skip: list[str] = []
    while True:
        shown: list[str] = []
        try:
            run = _generate(deps, trail, generation, deadlines, providers, trace, skip)
            async with aclosing(run) as events:
                async for item in events:
                    if isinstance(item, AnswerEvent):
                        yield item
                    elif isinstance(item, Finished):
                        outcome.finished = item
                    else:
                        if not shown and not outcome.text:
                            trail.mark("first_token")
                        shown.append(item)
                        outcome.text = "".join(shown)
                        yield AnswerEvent(event="delta", data={"text": item})
        except StreamInterrupted as exc:
            skip.append(exc.provider)
            assert trail.budget_start is not None
            left = deadlines.total_s - (deps.chain.clock() - trail.budget_start)
            # Withdraw the text only if a replacement can still arrive in time; otherwise the
            # partial text stays, marked incomplete by the error.
            can_replace = left > min(deadlines.first_token_s, 2.0)
            if len(skip) == 1 and can_replace and any(p.name not in skip for p in providers):
                yield AnswerEvent(
                    event="reset",
                    data={
                        "reason": f"{exc.provider} stopped mid-answer ({exc.kind}); "
                        "a replacement answer follows"
                    },
                )
                yield AnswerEvent(
                    event="status",
                    data={"state": "fallback", "provider": exc.provider, "reason": exc.kind},
                )
                outcome.text = ""
                continue
            trail.text = outcome.text
            raise
        break
    assert outcome.finished is not None
    if outcome.finished.stop_reason == "refused":
        if outcome.text:  # what was shown is withdrawn: a refusal mid-answer is a refusal
            yield AnswerEvent(event="reset", data={"reason": "the model declined to answer"})
        yield AnswerEvent(event="delta", data={"text": REFUSED})
        trail.outcome, trail.text = "refused", REFUSED
        yield AnswerEvent(event="citations", data={"citations": [], "dangling": 0})
        yield AnswerEvent(event="grounding", data={"sentences": [], "pass_rate": None})
        yield _done(deps, trail, trail.text, outcome.finished.usage, False)
        outcome.finished = None


async def _buffered(
    deps: AnswerDeps,
    trail: Trail,
    generation: GenerationRequest,
    deadlines: Deadlines,
    providers: Sequence[Provider],
    trace: ChainTrace,
    outcome: _Outcome,
) -> AsyncGenerator[AnswerEvent, None]:
    """High risk: nothing is shown until the whole answer passed validation."""
    cfg = deps.config
    sources = generation.sources
    yield AnswerEvent(
        event="status",
        data={"state": "validating", "message": "Checking the answer against the sources."},
    )
    skip: list[str] = []
    reasons: list[str] = []
    draft = ""
    usage = Usage()
    for attempt in ("first", "strict"):
        finished: Finished | None = None
        pieces: list[str] = []
        while True:
            pieces.clear()
            try:
                run = _generate(deps, trail, generation, deadlines, providers, trace, skip)
                async with aclosing(run) as events:
                    async for item in events:
                        if isinstance(item, AnswerEvent):
                            yield item
                        elif isinstance(item, Finished):
                            finished = item
                        else:
                            pieces.append(item)
            except StreamInterrupted as exc:
                # Nothing was shown: restart on the next provider, invisibly.
                skip.append(exc.provider)
                yield AnswerEvent(
                    event="status",
                    data={"state": "retrying", "provider": exc.provider, "reason": exc.kind},
                )
                continue
            break
        assert finished is not None
        usage.input_tokens += finished.usage.input_tokens
        usage.output_tokens += finished.usage.output_tokens
        usage.estimated = usage.estimated or finished.usage.estimated
        draft = "".join(pieces)
        if finished.stop_reason == "refused":
            trail.outcome, trail.text = "refused", REFUSED
            yield AnswerEvent(event="delta", data={"text": REFUSED})
            yield AnswerEvent(event="citations", data={"citations": [], "dangling": 0})
            yield AnswerEvent(event="grounding", data={"sentences": [], "pass_rate": None})
            yield _done(deps, trail, REFUSED, usage, False)
            return
        truncated = finished.stop_reason == "length"
        cleaned, _ = strip_forged_markers(draft, sources)
        verdicts, method = await _grounding(deps, cleaned, sources, trace, fast=True)
        check = validate(
            draft, sources, verdicts, allow_partial=cfg.allow_partial_high, truncated=truncated
        )
        if method == JUDGE_UNAVAILABLE:  # high risk fails closed without its configured check
            check.passed = False
            check.reasons.append("the grounding judge model was unavailable")
        trail.validation = {"attempt": attempt, **check.model_dump(exclude={"text"})}
        trail.mark(f"validate_{attempt}")
        if check.passed:
            trail.mark("first_token")
            for piece in _pieces(check.text):
                yield AnswerEvent(event="delta", data={"text": piece})
            outcome.text = check.text
            outcome.forged = check.forged_markers
            outcome.verdicts, outcome.grounding_method = verdicts, method
            outcome.finished = Finished(finished.stop_reason, usage)
            return
        reasons = check.reasons
        if truncated or attempt == "strict":
            break
        yield AnswerEvent(
            event="status",
            data={"state": "retrying", "reason": "validation", "details": reasons[:3]},
        )
        strict = answer_prompt(generation.question, sources, strict=True, high_risk=True)
        generation.system, generation.prompt, generation.strict = strict.system, strict.user, True

    # Not verified: a safe answer, and a person reviews the draft. If the review item cannot be
    # stored, queue_review raises and nothing at all is released (fail closed).
    cleaned, _ = strip_forged_markers(draft, sources)
    verdicts = await deps.lanes.after(_ground, deps, cleaned, sources)
    grounding = [v.to_event() for v in verdicts]  # offline: what the reviewer sees first
    review_id = await deps.lanes.after(
        queue_review,
        deps.db,
        trail,
        draft,
        "; ".join(reasons) or "validation failed",
        [source_payload(n, h) for n, h in enumerate(sources, start=1)],
        grounding,
    )
    trail.outcome, trail.text, trail.grounding = "queued", SAFE_ANSWER, grounding
    trail.validation["review_id"] = review_id
    trail.mark("first_token")
    yield AnswerEvent(event="delta", data={"text": SAFE_ANSWER})
    yield AnswerEvent(event="citations", data={"citations": [], "dangling": 0})
    yield AnswerEvent(event="grounding", data={"sentences": [], "pass_rate": None})
    done = _done(deps, trail, SAFE_ANSWER, usage, False)
    done.data["review"] = {"id": review_id, "reasons": reasons}
    yield done


async def _serve_cached(
    deps: AnswerDeps, trail: Trail, hit: CachedAnswer, status: str, asked: str
) -> AsyncGenerator[AnswerEvent, None]:
    label = {
        "status": status,
        "match": hit.match,
        "similarity": hit.similarity,
        "question": hit.question,
        "created_at": hit.created_at.isoformat() + "Z",
        "age_s": round(hit.age_s),
        "curated": hit.curated,
        "answer_id": hit.answer_id,
    }
    trail.cache_status, trail.provider, trail.model = status, "cache", hit.model
    trail.outcome, trail.text, trail.grounding = "cached", hit.text, hit.grounding
    if status == "fallback":
        yield AnswerEvent(
            event="status",
            data={
                "state": "cache",
                "message": "Docent cannot generate a new answer right now; this is an "
                "earlier checked answer to the same or a similar question.",
            },
        )
    # The cached text's [n] refer to the sources it was written from.
    yield AnswerEvent(event="sources", data={"sources": hit.sources})
    trail.mark("first_token")
    yield AnswerEvent(event="delta", data={"text": hit.text})
    yield AnswerEvent(event="citations", data={"citations": hit.citations, "dangling": 0})
    pass_rate = None
    if hit.grounding:
        claims = [g for g in hit.grounding if g.get("claim", True)]
        pass_rate = (
            sum(g["verdict"] == "supported" for g in claims) / len(claims) if claims else 1.0
        )
    yield AnswerEvent(event="grounding", data={"sentences": hit.grounding, "pass_rate": pass_rate})
    done = _done(deps, trail, hit.text, Usage(), False)
    done.data["cache"] = label
    yield done
    await _remember(deps, trail, asked, hit.text)


def _done(
    deps: AnswerDeps, trail: Trail, text: str, usage: Usage, truncated: bool | None
) -> AnswerEvent:
    price = deps.config.prices.get(trail.provider or "")
    cost = (
        (usage.input_tokens * price[0] + usage.output_tokens * price[1]) / 1_000_000
        if price
        else 0.0
    )
    trail.input_tokens, trail.output_tokens = usage.input_tokens, usage.output_tokens
    trail.usage_estimated, trail.cost_usd = usage.estimated, round(cost, 6)
    trail.timings["total_ms"] = trail.elapsed_ms()
    return AnswerEvent(
        event="done",
        data={
            "answer_id": trail.answer_id,
            "conversation_id": trail.conversation_id,
            "text": text,
            "provider": trail.provider,
            "model": trail.model,
            "risk": trail.risk,
            "tier": trail.tier,
            "truncated": bool(truncated),
            "outcome": trail.outcome,
            "usage": {
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "estimated": usage.estimated,
            },
            "cost_usd": trail.cost_usd,
            "priced": price is not None,
            "cache": {"status": trail.cache_status},
            "prompt": {"version": trail.prompt_version, "sha256": trail.prompt_hash},
            "timings": dict(trail.timings),
        },
    )


async def _remember(deps: AnswerDeps, trail: Trail, question: str, text: str) -> None:
    if trail.conversation_id:
        await deps.lanes.after(
            deps.conversations.add_turn,
            trail.tenant,
            trail.conversation_id,
            question,
            text,
            trail.answer_id,
        )
