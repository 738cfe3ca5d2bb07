"""Delivery by risk: the same provider stream, consumed two ways.

- ``streamed`` (low risk): pieces go out as they arrive; a provider that dies mid-answer is
  replaced after a ``reset`` if time allows, otherwise the partial text is marked incomplete.
- ``buffered`` (high risk): nothing is shown until the whole answer passed validation; one
  stricter retry; then a safe answer and a review item.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing

from app.answer.audit import Trail, queue_review
from app.answer.deps import AnswerDeps
from app.answer.grounding import SentenceGrounding, ground_sentences
from app.answer.judge import judge_grounding
from app.answer.payloads import REFUSED, SAFE_ANSWER, release_pieces, source_payload
from app.answer.prompts import answer_prompt
from app.answer.validate import strip_forged_markers, validate
from app.errors import StreamInterrupted
from app.models import AnswerEvent, ChunkHit
from app.providers import Finished, GenerationRequest, Provider, Usage
from app.providers.fallback import ChainStatus, ChainTrace, Committed, Deadlines

log = logging.getLogger(__name__)


class Outcome:
    """What a generation run ended with."""

    def __init__(self) -> None:
        self.finished: Finished | None = None
        self.text = ""
        self.forged = 0
        """Markers already removed from ``text`` (high risk releases the cleaned text)."""
        self.verdicts: list[SentenceGrounding] | None = None
        self.grounding_method = ""


def ground_offline(deps: AnswerDeps, text: str, sources: list[ChunkHit]) -> list[SentenceGrounding]:
    if deps.config.supported_at is not None:
        return ground_sentences(text, sources, deps.embedder, supported_at=deps.config.supported_at)
    return ground_sentences(text, sources, deps.embedder)


async def ground_later(
    deps: AnswerDeps, text: str, sources: list[ChunkHit]
) -> list[SentenceGrounding]:
    """Grounding nobody waits for: in a worker process if there is one, else a thread."""
    if deps.grounding_pool is not None:
        try:
            return await deps.grounding_pool.ground(text, sources, deps.config.supported_at)
        except Exception:
            log.exception("grounding in a worker process failed; grounding in a thread")
    return await deps.lanes.after(ground_offline, deps, text, sources)


JUDGE_UNAVAILABLE = "offline; the judge model was unavailable"


async def check_grounding(
    deps: AnswerDeps, text: str, sources: list[ChunkHit], trace: ChainTrace, *, fast: bool
) -> tuple[list[SentenceGrounding], str]:
    """Offline verdicts, made stricter by the judge model when one is configured. ``fast``:
    the verdicts stand between the question and its first byte (high risk)."""
    if fast:
        verdicts = await deps.lanes.fast(ground_offline, deps, text, sources)
    else:
        verdicts = await ground_later(deps, text, sources)
    if not deps.judge:
        return verdicts, "offline"
    judged = await judge_grounding(
        deps.chain, deps.judge, verdicts, sources, trace, deps.config.judge_deadlines
    )
    if judged is None:
        return verdicts, JUDGE_UNAVAILABLE
    return judged, "offline+judge"


async def generate(
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


async def streamed(
    deps: AnswerDeps,
    trail: Trail,
    generation: GenerationRequest,
    deadlines: Deadlines,
    providers: Sequence[Provider],
    trace: ChainTrace,
    outcome: Outcome,
) -> AsyncGenerator[AnswerEvent, None]:
    """Low risk: pieces go out as they arrive."""
    skip: list[str] = []
    while True:
        shown: list[str] = []
        try:
            run = generate(deps, trail, generation, deadlines, providers, trace, skip)
            async with aclosing(run) as events:
                try:
                    async for item in events:
                        if isinstance(item, AnswerEvent):
                            yield item
                        elif isinstance(item, Finished):
                            outcome.finished = item
                        else:
                            if not shown and not outcome.text:
                                trail.mark("first_token")
                            shown.append(item)
                            yield AnswerEvent(event="delta", data={"text": item})
                finally:
                    # Joined once, however this attempt ends (joining at every piece was
                    # quadratic in the answer's length).
                    if shown:
                        outcome.text = "".join(shown)
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
        for event in fixed_answer(deps, trail, REFUSED, "refused", outcome.finished.usage):
            yield event
        outcome.finished = None


async def buffered(
    deps: AnswerDeps,
    trail: Trail,
    generation: GenerationRequest,
    deadlines: Deadlines,
    providers: Sequence[Provider],
    trace: ChainTrace,
    outcome: Outcome,
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
                run = generate(deps, trail, generation, deadlines, providers, trace, skip)
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
        sources = generation.sources  # fewer if the chain shortened the prompt
        usage.input_tokens += finished.usage.input_tokens
        usage.output_tokens += finished.usage.output_tokens
        usage.estimated = usage.estimated or finished.usage.estimated
        draft = "".join(pieces)
        if finished.stop_reason == "refused":
            for event in fixed_answer(deps, trail, REFUSED, "refused", usage):
                yield event
            return
        truncated = finished.stop_reason == "length"
        cleaned, _ = strip_forged_markers(draft, sources)
        verdicts, method = await check_grounding(deps, cleaned, sources, trace, fast=True)
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
            for piece in release_pieces(check.text):
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
    verdicts = await ground_later(deps, cleaned, sources)
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
    trail.grounding = grounding
    trail.validation["review_id"] = review_id
    trail.mark("first_token")
    *before, done = fixed_answer(deps, trail, SAFE_ANSWER, "queued", usage)
    done.data["review"] = {"id": review_id, "reasons": reasons}
    for event in [*before, done]:
        yield event


def fixed_answer(
    deps: AnswerDeps, trail: Trail, text: str, outcome: str, usage: Usage
) -> list[AnswerEvent]:
    """The events of a message given instead of a model's answer (a refusal, a safe answer,
    "no documents yet"): the text, no citations, nothing to ground, done."""
    trail.outcome, trail.text = outcome, text
    return [
        AnswerEvent(event="delta", data={"text": text}),
        AnswerEvent(event="citations", data={"citations": [], "dangling": 0}),
        AnswerEvent(event="grounding", data={"sentences": [], "pass_rate": None}),
        done_event(deps, trail, text, usage, False),
    ]


def done_event(
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


def remember(trail: Trail, question: str, text: str) -> None:
    """Add the question and answer to the conversation when the audit row is written (one
    transaction on the writer thread; the answer's stream ends after it is committed)."""
    trail.turn = (question, text)
