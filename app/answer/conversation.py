"""Conversations: stored messages, and follow-ups condensed into standalone questions.

Retrieval and the cache see one self-contained question. "And for contractors?" after "How
many vacation days do employees get?" must search for contractors' vacation days. A language
model rewrites the follow-up when one is configured; otherwise (or when it fails) a rule joins
the follow-up to the question it follows.
"""

from __future__ import annotations

import json
import re
import uuid
from contextlib import aclosing
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.answer.prompts import condense_prompt
from app.db import Database
from app.db.tables import AnswerRecord, Chunk, Conversation, Document, Message, utcnow
from app.errors import DocentError, NotFound
from app.providers import Finished, GenerationRequest
from app.providers.fallback import ChainTrace, Deadlines, FallbackChain

_FOLLOW_UP = re.compile(
    r"^(and|or|but|also|what about|how about|same for|and for|why|how so|then)\b|"
    r"\b(it|its|it's|that|this|those|these|they|them|their|he|she|him|her|there)\b",
    re.IGNORECASE,
)


def looks_like_follow_up(question: str) -> bool:
    return len(question.split()) <= 12 and bool(_FOLLOW_UP.search(question))


def rule_condense(question: str, history: list[tuple[str, str]]) -> str:
    """The follow-up joined to the user's previous question, when it looks like one."""
    previous = next((c for r, c in reversed(history) if r == "user"), None)
    if previous is None or not looks_like_follow_up(question):
        return question
    return f"{previous.rstrip()} {question.strip()}"


async def condense(
    question: str,
    history: list[tuple[str, str]],
    chain: FallbackChain | None,
    trace: ChainTrace,
) -> tuple[str, str]:
    """(standalone question, method): 'as asked', 'model' or 'rule'."""
    if not history:
        return question, "as asked"
    if chain is not None and not all(p.name == "offline" for p in chain.providers):
        prompt = condense_prompt(question, history[-6:])
        request = GenerationRequest(question, [], system=prompt.system, prompt=prompt.user)
        request.max_tokens = 200
        deadlines = Deadlines(first_token_s=5.0, stall_s=5.0, total_s=10.0)
        pieces: list[str] = []
        llm = [p for p in chain.providers if p.name != "offline"]
        try:
            stream = chain.stream(request, deadlines, trace, providers=llm)
            async with aclosing(stream):
                async for event in stream:
                    if isinstance(event, str):
                        pieces.append(event)
                    elif isinstance(event, Finished) and event.stop_reason != "stop":
                        pieces.clear()
        except DocentError:
            pieces.clear()
        text = " ".join("".join(pieces).split()).strip().strip('"')
        if 3 <= len(text) <= 600:
            return text, "model"
    condensed = rule_condense(question, history)
    return condensed, ("rule" if condensed != question else "as asked")


class Conversations:
    def __init__(self, db: Database) -> None:
        self._db = db

    def history(
        self, tenant: str, conversation_id: str, owner: str | None = None
    ) -> list[tuple[str, str]]:
        """Earlier turns, oldest first. An id with no stored turn yet (its first answer
        failed, so nothing was stored) starts empty: Docent handed it out in a meta event."""
        with self._db.session() as s:
            conv = s.get(Conversation, conversation_id)
            if conv is None:
                try:
                    uuid.UUID(conversation_id)
                except ValueError:
                    raise NotFound("That conversation does not exist. Start a new one.") from None
                return []
            if conv.tenant != tenant or conv.owner != owner:
                raise NotFound("That conversation does not exist. Start a new one.")
            rows = s.scalars(
                select(Message)
                .where(Message.tenant == tenant, Message.conversation_id == conversation_id)
                .order_by(Message.created_at)
            )
            return [(m.role, m.content) for m in rows]

    @staticmethod
    def new_id() -> str:
        """An id for a conversation whose row is written with its first turn, after the
        answer: starting one costs the first token nothing."""
        return str(uuid.uuid4())

    def list(
        self, tenant: str, owner: str | None = None, limit: int = 50
    ) -> list[dict[str, object]]:
        """The owner's conversations, newest first (each person sees only their own)."""
        mine = Conversation.owner.is_(None) if owner is None else Conversation.owner == owner
        with self._db.session() as s:
            rows = s.scalars(
                select(Conversation)
                .where(Conversation.tenant == tenant, mine)
                .order_by(Conversation.updated_at.desc())
                .limit(limit)
            )
            return [
                {"id": c.id, "title": c.title, "updated_at": c.updated_at.isoformat()} for c in rows
            ]

    def transcript(
        self, tenant: str, conversation_id: str, owner: str | None = None
    ) -> dict[str, Any]:
        """A conversation's turns; an answer comes with its sources (as numbered when it was
        written) and grounding verdicts, from its audit row."""
        with self._db.session() as s:
            conv = s.get(Conversation, conversation_id)
            if conv is None or conv.tenant != tenant or conv.owner != owner:
                raise NotFound("That conversation does not exist. Start a new one.")
            messages = list(
                s.scalars(
                    select(Message)
                    .where(Message.tenant == tenant, Message.conversation_id == conversation_id)
                    .order_by(Message.created_at)
                )
            )
            ids = [m.answer_id for m in messages if m.answer_id]
            audits = {
                a.id: a
                for a in s.scalars(select(AnswerRecord).where(AnswerRecord.id.in_(ids)))
                if a.tenant == tenant
            }
            chunk_ids = {c for a in audits.values() for c in json.loads(a.chunk_ids)}
            chunks = {
                c.id: (c, d)
                for c, d in s.execute(
                    select(Chunk, Document)
                    .join(Document, Document.id == Chunk.document_id)
                    .where(Chunk.id.in_(chunk_ids), Chunk.tenant == tenant)
                )
            }
            turns: list[dict[str, Any]] = []
            for m in messages:
                turn: dict[str, Any] = {"role": m.role, "content": m.content}
                audit = audits.get(m.answer_id or "")
                if m.role == "assistant":
                    turn["answer_id"] = m.answer_id
                    turn["sources"], turn["grounding"] = [], []
                if audit is not None:
                    for n, chunk_id in enumerate(json.loads(audit.chunk_ids), start=1):
                        found = chunks.get(chunk_id)
                        turn["sources"].append(
                            {
                                "n": n,
                                "chunk_id": chunk_id,
                                "title": found[1].title if found else "(deleted document)",
                                "page": found[0].page if found else None,
                                "snippet": " ".join(found[0].text.split())[:280] if found else "",
                            }
                        )
                    turn["grounding"] = json.loads(audit.grounding)
                turns.append(turn)
            return {"id": conv.id, "title": conv.title, "messages": turns}


def add_turn(
    s: Session,
    tenant: str,
    conversation_id: str,
    question: str,
    answer: str,
    answer_id: str,
    owner: str | None = None,
) -> None:
    """A question and its answer, in session ``s``; the conversation's row is made with its
    first turn. Nothing is written to another tenant's or another owner's conversation."""
    now = utcnow()
    conv = s.get(Conversation, conversation_id)
    if conv is None:
        title = " ".join(question.split())[:120]
        conv = Conversation(id=conversation_id, tenant=tenant, owner=owner, title=title)
        s.add(conv)
        s.flush()
    elif conv.tenant != tenant or conv.owner != owner:
        return
    turn = [("user", question, None), ("assistant", answer, answer_id)]
    for i, (role, content, answer_ref) in enumerate(turn):
        s.add(
            Message(
                id=str(uuid.uuid4()),
                tenant=tenant,
                conversation_id=conversation_id,
                role=role,
                content=content,
                answer_id=answer_ref,
                created_at=now + timedelta(microseconds=i),  # keeps their order
            )
        )
    conv.updated_at = now
