"""The human review queue: high-risk answers that could not be validated wait here.

A reviewer sees the question, the draft, its sources and the grounding verdicts, and decides:

- approve: the draft was right;
- edit: the reviewer's text replaces it (the draft is kept beside it, before and after);
- reject: the draft was wrong.

An approved or edited answer can be promoted into the answer cache as a curated answer, in the
partition the question was asked in (collection, prompt version, model tier, risk): the next
person who asks gets it, labelled as curated. Like every cache entry it dies when a document it
cites changes.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select

from app.answer.cache import AnswerCache, partition
from app.answer.payloads import cited_numbers
from app.db import Database
from app.db.tables import AnswerRecord, ReviewItem, utcnow
from app.errors import InvalidRequest, NotFound

Action = Literal["approve", "edit", "reject"]


def _item(row: ReviewItem, full: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row.id,
        "answer_id": row.answer_id,
        "question": row.question,
        "draft": row.draft,
        "reason": row.reason,
        "status": row.status,
        "final_text": row.final_text,
        "reviewer": row.reviewer,
        "decided_at": _iso(row.decided_at),
        "created_at": _iso(row.created_at),
        "curated_cache_entry": row.cache_entry_id,
    }
    if full:
        out["sources"] = json.loads(row.sources)
        out["grounding"] = json.loads(row.grounding)
    return out


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() + "Z" if when else None


def list_items(db: Database, tenant: str, status: str | None = "pending") -> list[dict[str, Any]]:
    with db.session() as s:
        query = select(ReviewItem).where(ReviewItem.tenant == tenant)
        if status:
            query = query.where(ReviewItem.status == status)
        rows = s.scalars(query.order_by(ReviewItem.created_at.desc()).limit(200))
        return [_item(r, full=False) for r in rows]


def get_item(db: Database, tenant: str, item_id: str) -> dict[str, Any]:
    with db.session() as s:
        row = s.get(ReviewItem, item_id)
        if row is None or row.tenant != tenant:
            raise NotFound("No such review item.")
        return _item(row, full=True)


def cited(text: str, sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sources (payloads) a text's [n] markers point at, in order of first use."""
    return [sources[n - 1] for n in cited_numbers(text, len(sources))[0]]


def decide(
    db: Database,
    cache: AnswerCache | None,
    tenant: str,
    item_id: str,
    action: Action,
    reviewer: str,
    text: str | None = None,
    promote: bool = False,
) -> dict[str, Any]:
    """Record a decision on a pending item; with ``promote``, put the approved text in the
    answer cache as a curated answer."""
    if action not in ("approve", "edit", "reject"):
        raise InvalidRequest("The action is 'approve', 'edit' or 'reject'.")
    with db.session() as s:
        row = s.get(ReviewItem, item_id)
        if row is None or row.tenant != tenant:
            raise NotFound("No such review item.")
        if row.status != "pending":
            raise InvalidRequest(
                f"This item was already decided ({row.status} by {row.reviewer or 'someone'})."
            )
        if action == "edit":
            if not text or not text.strip():
                raise InvalidRequest("An edit needs the corrected answer's text.")
            final: str | None = text.strip()
        else:
            final = row.draft if action == "approve" else None
        sources = json.loads(row.sources)
        if promote and final is not None and not cited(final, sources):
            raise InvalidRequest(
                "A curated answer must cite at least one source with [n] markers, so readers "
                "can check it."
            )
        audit = s.get(AnswerRecord, row.answer_id)
        row.status = {"approve": "approved", "edit": "edited", "reject": "rejected"}[action]
        row.final_text, row.reviewer, row.decided_at = final, reviewer, utcnow()
        question, grounding = row.question, json.loads(row.grounding)
        collection = audit.collection if audit else None
        prompt_version = audit.prompt_version if audit else "answer-v1"
        tier = audit.tier if audit else "large"
    if promote and final is not None:
        if cache is None:
            raise InvalidRequest("The answer cache is switched off (DOCENT_CACHE_ENABLED).")
        entry = cache.store(
            tenant=tenant,
            question=question,
            part=partition(collection, prompt_version, tier, "high"),
            answer_id=item_id,
            text=final,
            sources=sources,
            citations=cited(final, sources),
            # The offline verdicts were made on the draft; an edited text is vouched for by
            # the reviewer instead.
            grounding=grounding if action == "approve" else [],
            risk="high",
            model=f"curated by {reviewer}",
            curated=True,
        )
        with db.session() as s:
            stored = s.get(ReviewItem, item_id)
            if stored is not None:
                stored.cache_entry_id = entry
    return get_item(db, tenant, item_id)
