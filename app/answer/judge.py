"""Grounding judged by a language model, when one is configured (DOCENT_GROUNDING_JUDGE).

The judge sees the answer's sentences, numbered, and the sources, and returns a verdict per
sentence as JSON. Its verdicts are merged with the offline checker's by taking the stricter of
the two for each sentence, so a lenient judge cannot release what the offline checks caught.
A judge that fails or returns something unreadable yields None: low-risk answers keep the
offline verdicts; high-risk answers fail closed (the caller treats None as a failed check).
"""

from __future__ import annotations

import json
import logging
import re
from contextlib import aclosing
from dataclasses import replace
from typing import Literal

from pydantic import BaseModel, ValidationError

from app.answer.grounding import SentenceGrounding
from app.answer.prompts import judge_prompt
from app.errors import DocentError
from app.models import ChunkHit
from app.providers import Finished, GenerationRequest, Provider
from app.providers.fallback import ChainTrace, Deadlines, FallbackChain

log = logging.getLogger(__name__)

_RANK = {"unsupported": 0, "partial": 1, "supported": 2}


class JudgedSentence(BaseModel):
    sentence: int
    verdict: Literal["supported", "partial", "unsupported"]
    source: int | None = None
    reason: str = ""


class Judgement(BaseModel):
    sentences: list[JudgedSentence]


def parse_judgement(text: str, count: int) -> list[JudgedSentence] | None:
    match = re.search(r"\{.*\}", text, re.DOTALL)
    if not match:
        return None
    try:
        judged = Judgement.model_validate(json.loads(match.group(0))).sentences
    except (ValueError, ValidationError):
        return None
    by_index = {j.sentence: j for j in judged}
    if set(by_index) != set(range(1, count + 1)):
        return None
    return [by_index[i] for i in range(1, count + 1)]


def merge(
    offline: list[SentenceGrounding], judged: list[JudgedSentence]
) -> list[SentenceGrounding]:
    """Per sentence, the stricter verdict; the judge's reason is added when it is stricter."""
    out: list[SentenceGrounding] = []
    for mine, theirs in zip(offline, judged, strict=True):
        if not mine.claim or _RANK[theirs.verdict] >= _RANK[mine.verdict]:
            out.append(replace(mine, reasons=[*mine.reasons, f"judge: {theirs.verdict}"]))
        else:
            why = f"judge: {theirs.verdict}" + (f" ({theirs.reason})" if theirs.reason else "")
            out.append(replace(mine, verdict=theirs.verdict, reasons=[*mine.reasons, why]))
    return out


async def judge_grounding(
    chain: FallbackChain,
    judge: list[Provider],
    verdicts: list[SentenceGrounding],
    sources: list[ChunkHit],
    trace: ChainTrace,
    deadlines: Deadlines,
) -> list[SentenceGrounding] | None:
    if not verdicts:
        return verdicts
    prompt = judge_prompt([v.text for v in verdicts], sources)
    request = GenerationRequest("", sources, system=prompt.system, prompt=prompt.user)
    request.max_tokens = 80 * len(verdicts) + 100
    pieces: list[str] = []
    finished: Finished | None = None
    try:
        stream = chain.stream(request, deadlines, trace, providers=judge)
        async with aclosing(stream):
            async for event in stream:
                if isinstance(event, str):
                    pieces.append(event)
                elif isinstance(event, Finished):
                    finished = event
    except DocentError as exc:
        log.warning("grounding judge unavailable: %s", exc.message)
        return None
    if finished is None or finished.stop_reason != "stop":
        return None
    judged = parse_judgement("".join(pieces), len(verdicts))
    if judged is None:
        log.warning("grounding judge returned no readable verdicts")
        return None
    return merge(verdicts, judged)
