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
import uuid
from collections.abc import AsyncGenerator, Iterator
from contextlib import aclosing
from functools import partial

from app.answer.audit import Trail, record
from app.answer.cache import CachedAnswer, partition
from app.answer.conversation import condense
from app.answer.delivery import (
    Outcome,
    buffered,
    check_grounding,
    done_event,
    fixed_answer,
    remember,
    streamed,
)
from app.answer.deps import AnswerConfig, AnswerDeps, Lanes, Retrieval
from app.answer.grounding import grounding_pass_rate
from app.answer.payloads import (
    REFUSED,
    SAFE_ANSWER,
    error_event,
    meta_event,
    resolve_citations,
    source_payload,
)
from app.answer.prompts import answer_prompt
from app.answer.risk import choose_tier
from app.answer.validate import strip_forged_markers, validate
from app.embeddings import embed_queries
from app.errors import AllProvidersFailed, DocentError, StreamInterrupted, Unavailable
from app.models import AnswerEvent, ChatRequest
from app.providers import GenerationRequest, Usage
from app.providers.fallback import ChainTrace
from app.providers.offline import NO_SOURCES

__all__ = ["REFUSED", "SAFE_ANSWER", "AnswerConfig", "AnswerDeps", "Lanes", "answer"]

log = logging.getLogger(__name__)


# --- the use case -----------------------------------------------------------------------------


async def answer(
    deps: AnswerDeps, tenant: str, request: ChatRequest, owner: str | None = None
) -> AsyncGenerator[AnswerEvent, None]:
    """``owner``: who asks; a conversation can be continued only by whoever started it."""
    trail = Trail(
        answer_id=str(uuid.uuid4()),
        tenant=tenant,
        owner=owner,
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
        yield error_event(exc, trail.answer_id)
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
        # Submitted, not awaited here: this runs for answers a client abandoned too, where an
        # await could be cancelled again.
        written = deps.lanes.write_later(record, deps.db, trail)
    # An answer that ran to its end ends its stream once its row and its conversation turn
    # are committed: a follow-up asked at once finds the turn.
    await asyncio.shield(asyncio.wrap_future(written))


# Longer questions are embedded on their own: padding a batch of short ones to their length
# would cost more than batching saves.
BATCH_CHARS = 300


def retrieve_batch(
    items: list[tuple[AnswerDeps, str, str, str | None]],
) -> Iterator[Retrieval | BaseException]:
    """Each question's embedding (the cache looks it up too) and its search. Questions that
    arrived together (``deps.query_lane``): the short ones embedded as one batch per embedder,
    then each searched and handed on in turn."""
    vectors: dict[int, list[float] | BaseException] = {}
    by_embedder: dict[int, list[int]] = {}
    for i, (deps, _, question, _) in enumerate(items):
        if len(question) <= BATCH_CHARS:
            by_embedder.setdefault(id(deps.embedder), []).append(i)
    for group in by_embedder.values():
        try:
            rows = embed_queries(items[group[0]][0].embedder, [items[i][2] for i in group])
            vectors.update(zip(group, rows, strict=True))
        except Exception as exc:  # each caller reports it (retrieval down)
            vectors.update((i, exc) for i in group)
    for i, (deps, tenant, question, collection) in enumerate(items):
        try:
            vector = vectors.get(i)
            if vector is None:
                vector = deps.embedder.embed_query(question)
            if isinstance(vector, BaseException):
                yield vector
                continue
            hits = deps.retriever.search(
                tenant, question, deps.config.sources, collection, vector=vector
            )
            yield vector, hits
        except Exception as exc:
            yield exc


async def _retrieve(
    deps: AnswerDeps, tenant: str, question: str, collection: str | None
) -> Retrieval:
    item = (deps, tenant, question, collection)
    if deps.query_lane is not None:
        return await deps.query_lane.submit(item)
    # One thread hop for both: on a busy server every hop waits for the interpreter lock.
    (result,) = await deps.lanes.fast(lambda: list(retrieve_batch([item])))
    if isinstance(result, BaseException):
        raise result
    return result


async def _answer(
    deps: AnswerDeps, trail: Trail, request: ChatRequest
) -> AsyncGenerator[AnswerEvent, None]:
    cfg = deps.config
    # 1. The conversation, and a standalone question.
    history: list[tuple[str, str]] = [(m.role, m.content) for m in request.history]
    if request.conversation_id:
        history = await deps.lanes.fast(
            deps.conversations.history, trail.tenant, request.conversation_id, trail.owner
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
        vector, sources = await _retrieve(deps, trail.tenant, question, request.collection)
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
        return meta_event(trail, [p.name for p in providers], cache)

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
        trail.mark("first_token")
        for event in fixed_answer(deps, trail, NO_SOURCES, "no_sources", Usage(estimated=True)):
            yield event
        remember(trail, request.question, NO_SOURCES)
        return

    # 5. Generation.
    generation = GenerationRequest(
        question=question,
        sources=sources,
        system=prompt.system,
        prompt=prompt.user,
        max_tokens=cfg.max_tokens,
        request_id=trail.answer_id,
        shorten=partial(_keep_best_sources, high_risk=risk == "high"),
    )
    deadlines = cfg.high if risk == "high" else cfg.low
    trail.budget_start = deps.chain.clock()
    chain_trace = ChainTrace(list(condense_trace.attempts))
    outcome = Outcome()
    try:
        if risk == "high":
            run = buffered(deps, trail, generation, deadlines, providers, chain_trace, outcome)
        else:
            run = streamed(deps, trail, generation, deadlines, providers, chain_trace, outcome)
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

    # 7. Citations, grounding, cache: against the sources the model was given (fewer than
    # were retrieved if its context was too small for all of them).
    sources = generation.sources
    text = outcome.text
    truncated = outcome.finished.stop_reason == "length"
    cleaned, forged = strip_forged_markers(text, sources)
    forged += outcome.forged
    citations, _ = resolve_citations(cleaned, sources)
    yield AnswerEvent(event="citations", data={"citations": citations, "dangling": forged})
    if outcome.verdicts is not None:
        verdicts, method = outcome.verdicts, outcome.grounding_method
    else:
        verdicts, method = await check_grounding(deps, cleaned, sources, chain_trace, fast=False)
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
    yield done_event(deps, trail, text, outcome.finished.usage, truncated)
    remember(trail, request.question, text)
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


def _keep_best_sources(request: GenerationRequest, *, high_risk: bool) -> bool:
    """A prompt too long for the model's context: keep the better-ranked half of the sources
    (their numbers do not change) and render the prompt again."""
    if len(request.sources) < 2:
        return False
    kept = request.sources[: len(request.sources) // 2]
    prompt = answer_prompt(request.question, kept, strict=request.strict, high_risk=high_risk)
    request.sources, request.system, request.prompt = kept, prompt.system, prompt.user
    return True


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
    trail.prompt_version = version
    yield meta_event(trail, [], "fallback")
    async for event in _serve_cached(deps, trail, hit, "fallback", request.question):
        yield event


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
    done = done_event(deps, trail, hit.text, Usage(), False)
    done.data["cache"] = label
    yield done
    remember(trail, asked, hit.text)
