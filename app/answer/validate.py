"""Checks an answer must pass before a high-risk answer is released or any answer is cached.

- every [n] marker refers to a retrieved source; forged or dangling markers are removed from
  the text and counted;
- every claim is grounded in the source it cites (app/answer/grounding.py);
- the structure holds (``CheckedAnswer``, a pydantic model): text present, at least one
  citation unless the answer says the documents do not answer, no truncation.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field, ValidationError, model_validator

from app.answer.grounding import SentenceGrounding
from app.models import ChunkHit

_MARKER = re.compile(r"\s?\[(\d{1,3})\]")


def strip_forged_markers(text: str, sources: list[ChunkHit]) -> tuple[str, int]:
    """The text without markers that point at no retrieved source, and how many there were."""
    removed = 0

    def keep(match: re.Match[str]) -> str:
        nonlocal removed
        if 1 <= int(match.group(1)) <= len(sources):
            return match.group(0)
        removed += 1
        return ""

    return _MARKER.sub(keep, text), removed


class CheckedAnswer(BaseModel):
    text: str = Field(min_length=1)
    cited: list[int]
    sources: int = Field(ge=0)
    refusal: bool
    truncated: bool

    @model_validator(mode="after")
    def _shape(self) -> CheckedAnswer:
        if self.truncated:
            raise ValueError("the answer was cut off at the token limit")
        if not self.refusal and not self.cited:
            raise ValueError("the answer cites no source")
        if any(not 1 <= n <= self.sources for n in self.cited):
            raise ValueError("a citation points outside the sources")
        return self


class Validation(BaseModel):
    passed: bool
    reasons: list[str] = Field(default_factory=list)
    forged_markers: int = 0
    text: str
    """The answer with forged markers removed: what may be released."""
    supported: int = 0
    partial: int = 0
    unsupported: int = 0


def is_refusal(verdicts: list[SentenceGrounding]) -> bool:
    return bool(verdicts) and all(not v.claim for v in verdicts)


def validate(
    text: str,
    sources: list[ChunkHit],
    verdicts: list[SentenceGrounding],
    *,
    allow_partial: bool,
    truncated: bool,
) -> Validation:
    """``verdicts`` are those of the text with its forged markers stripped."""
    cleaned, forged = strip_forged_markers(text, sources)
    structure: list[str] = []
    cited = sorted({int(m.group(1)) for m in _MARKER.finditer(cleaned)})
    try:
        CheckedAnswer(
            text=cleaned.strip(),
            cited=cited,
            sources=len(sources),
            refusal=is_refusal(verdicts),
            truncated=truncated,
        )
    except ValidationError as exc:
        structure += [str(e["msg"]).removeprefix("Value error, ") for e in exc.errors()]
    reasons = list(structure)
    if forged:
        reasons.append(f"{forged} citation marker(s) pointed at no source and were removed")
    counts = {"supported": 0, "partial": 0, "unsupported": 0}
    for v in verdicts:
        counts[v.verdict] += 1
        if v.verdict == "unsupported" or (v.verdict == "partial" and not allow_partial):
            why = "; ".join(v.reasons) or v.verdict
            reasons.append(f"sentence {v.index + 1} is {v.verdict}: {why}")
    grounded = counts["unsupported"] == 0 and (allow_partial or counts["partial"] == 0)
    return Validation(
        passed=grounded and not structure,
        reasons=reasons,
        forged_markers=forged,
        text=cleaned,
        **counts,
    )
