"""The record of one answer, kept as it is built, and written once at the end (also when the
client left or something failed): an answer can be explained from its row alone."""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from app.answer.conversation import add_turn
from app.db import Database
from app.db.tables import AnswerRecord, Feedback, ReviewItem
from app.errors import NotFound

log = logging.getLogger(__name__)


@dataclass
class Trail:
    answer_id: str
    tenant: str
    question: str
    started: float = field(default_factory=time.perf_counter)
    conversation_id: str | None = None
    owner: str | None = None
    """Who asked ('user:<id>', 'key:<name>'); None when no sign-in is set up."""
    condensed_question: str = ""
    condense_method: str = "as asked"
    collection: str | None = None
    chunk_ids: list[str] = field(default_factory=list)
    prompt_version: str = ""
    prompt_hash: str = ""
    risk: str = "low"
    risk_reasons: list[str] = field(default_factory=list)
    tier: str = "small"
    tier_reasons: list[str] = field(default_factory=list)
    provider: str | None = None
    model: str | None = None
    provider_path: list[dict[str, object]] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    usage_estimated: bool = False
    cost_usd: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    cache_status: str = "miss"
    grounding: list[dict[str, Any]] = field(default_factory=list)
    validation: dict[str, Any] = field(default_factory=dict)
    outcome: str = "incomplete"
    error_code: str | None = None
    text: str = ""
    generated_chars: int = 0
    """Text received from providers, all attempts together: the basis of usage when an
    answer ends before its provider reported any (a client that left, a failure)."""
    budget_start: float | None = None
    turn: tuple[str, str] | None = None
    """The question and answer to add to the conversation, written with the audit row."""

    def mark(self, step: str) -> None:
        """Time since the start at which ``step`` finished, in ms."""
        self.timings[f"{step}_ms"] = round((time.perf_counter() - self.started) * 1000, 1)

    def elapsed_ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 1)


def record(db: Database, trail: Trail) -> None:
    """Write the audit row and the conversation's new turn, in one transaction (blocking: the
    answer submits it to its writer thread). A turn that cannot be written does not cost the
    audit row."""
    trail.timings.setdefault("total_ms", trail.elapsed_ms())
    if trail.output_tokens == 0 and trail.generated_chars:
        trail.output_tokens = (trail.generated_chars + 3) // 4
        trail.usage_estimated = True
    try:
        with db.session() as s:
            if trail.turn is not None and trail.conversation_id:
                try:
                    with s.begin_nested():
                        add_turn(
                            s,
                            trail.tenant,
                            trail.conversation_id,
                            *trail.turn,
                            trail.answer_id,
                            trail.owner,
                        )
                except Exception:
                    log.exception("could not add answer %s to its conversation", trail.answer_id)
            s.add(
                AnswerRecord(
                    id=trail.answer_id,
                    tenant=trail.tenant,
                    conversation_id=trail.conversation_id,
                    question=trail.question,
                    condensed_question=trail.condensed_question or trail.question,
                    collection=trail.collection,
                    chunk_ids=json.dumps(trail.chunk_ids),
                    prompt_version=trail.prompt_version,
                    prompt_hash=trail.prompt_hash,
                    risk=trail.risk,
                    risk_reasons=json.dumps(trail.risk_reasons),
                    tier=trail.tier,
                    tier_reasons=json.dumps(trail.tier_reasons),
                    provider=trail.provider,
                    model=trail.model,
                    provider_path=json.dumps(trail.provider_path),
                    input_tokens=trail.input_tokens,
                    output_tokens=trail.output_tokens,
                    usage_estimated=trail.usage_estimated,
                    cost_usd=trail.cost_usd,
                    timings=json.dumps({**trail.timings, "condense_method": trail.condense_method}),
                    cache_status=trail.cache_status,
                    grounding=json.dumps(trail.grounding),
                    validation=json.dumps(trail.validation),
                    outcome=trail.outcome,
                    error_code=trail.error_code,
                    text=trail.text,
                )
            )
    except Exception:
        log.exception("could not write the audit row of answer %s", trail.answer_id)


def queue_review(
    db: Database,
    trail: Trail,
    draft: str,
    reason: str,
    sources: list[dict[str, Any]],
    grounding: list[dict[str, Any]],
) -> str:
    """Put a high-risk answer that failed validation in front of a person. Raises if it
    cannot be stored: the caller then does not release anything (fail closed)."""
    item_id = str(uuid.uuid4())
    with db.session() as s:
        s.add(
            ReviewItem(
                id=item_id,
                tenant=trail.tenant,
                answer_id=trail.answer_id,
                question=trail.condensed_question or trail.question,
                draft=draft,
                reason=reason,
                sources=json.dumps(sources),
                grounding=json.dumps(grounding),
            )
        )
    return item_id


def record_feedback(
    db: Database, tenant: str, answer_id: str, rating: str, comment: str | None
) -> None:
    """Keep a reader's verdict on an answer (the latest replaces an earlier one)."""
    with db.session() as s:
        answer = s.get(AnswerRecord, answer_id)
        if answer is None or answer.tenant != tenant:
            raise NotFound("No such answer. Feedback can be given on answers of this site only.")
        row = s.scalars(
            select(Feedback).where(Feedback.tenant == tenant, Feedback.answer_id == answer_id)
        ).one_or_none()
        if row is None:
            row = Feedback(id=str(uuid.uuid4()), tenant=tenant, answer_id=answer_id, rating="")
            s.add(row)
        row.rating = rating
        row.comment = (comment or "").strip() or row.comment
