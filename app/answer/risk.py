"""Risk tier and model tier of a question, decided before any model runs.

Risk comes from the question's words and the retrieved documents' metadata (their
collections), never from model output (RELIABILITY.md R12): a model cannot talk its way out
of validation. High-risk answers are buffered and validated before anyone sees them.

The model tier is a rule-based guess at how hard the question is: simple look-ups go to the
small model, comparisons, explanations and multi-part questions to the large one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from app.models import ChunkHit

Risk = Literal["low", "high"]
Tier = Literal["small", "large"]

TOPIC_WORDS: dict[str, tuple[str, ...]] = {
    "medical": (
        "dose", "doses", "dosage", "medic*", "drug", "prescription", "diagnos*",
        "symptom", "treatment", "therapy", "pregnan*", "allerg*", "side effect", "overdose",
        "vaccin*", "surgery", "disease", "patient", "clinical", "mg", "injur*",
    ),
    "legal": (
        "legal", "lawsuit", "sue", "liabilit*", "contract", "court", "attorney", "lawyer",
        "compliance", "regulation", "gdpr", "hipaa", "terminate", "dismissal", "visa",
        "immigration", "copyright", "patent", "law",
    ),
    "financial": (
        "invest*", "loan", "mortgage", "tax*", "pension", "retirement", "stock", "bond",
        "interest rate", "credit", "debt", "insurance", "refund", "salary", "payroll",
        "wire transfer", "bank", "fee", "price",
    ),
}  # fmt: skip


def _pattern(term: str) -> re.Pattern[str]:
    # "stem*" matches words that start with it (diagnos* -> diagnosis, diagnosed); other terms
    # match whole words or phrases, with an optional plural s.
    if term.endswith("*"):
        return re.compile(r"\b" + re.escape(term[:-1]) + r"\w*", re.IGNORECASE)
    return re.compile(r"\b" + re.escape(term) + r"s?\b", re.IGNORECASE)


@dataclass
class RiskPolicy:
    topics: list[str] = field(default_factory=lambda: ["medical", "legal", "financial"])
    collections: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._patterns: list[tuple[str, re.Pattern[str]]] = []
        for topic in self.topics:
            for term in TOPIC_WORDS.get(topic, (topic,)):
                self._patterns.append((topic, _pattern(term)))

    def classify(self, question: str, sources: list[ChunkHit]) -> tuple[Risk, list[str]]:
        reasons: list[str] = []
        for topic, pattern in self._patterns:
            match = pattern.search(question)
            if match and not any(r.startswith(f"{topic} topic") for r in reasons):
                reasons.append(f"{topic} topic ('{match.group(0)}')")
        marked = sorted({h.collection for h in sources} & set(self.collections))
        reasons += [f"source in high-risk collection '{c}'" for c in marked]
        return ("high" if reasons else "low"), reasons


_COMPLEX = re.compile(
    r"\b(compare|comparison|difference|differ|versus|vs\.?|why|explain|trade-?offs?|pros and "
    r"cons|summari[sz]e|analy[sz]e|implications?|step[- ]by[- ]step|all the|every)\b",
    re.IGNORECASE,
)


def choose_tier(question: str, sources: list[ChunkHit], follow_up: bool) -> tuple[Tier, list[str]]:
    """Large for questions that need reasoning across sources; small for look-ups."""
    reasons: list[str] = []
    words = len(question.split())
    if words > 30:
        reasons.append(f"long question ({words} words)")
    if question.count("?") > 1 or re.search(r"\band (also|then)\b", question, re.IGNORECASE):
        reasons.append("several questions in one")
    match = _COMPLEX.search(question)
    if match:
        reasons.append(f"asks for reasoning ('{match.group(0)}')")
    documents = len({h.document_id for h in sources})
    if documents >= 3:
        reasons.append(f"sources from {documents} documents")
    if follow_up:
        reasons.append("follow-up in a conversation")
    # One weak signal alone (a follow-up, many documents) does not justify the large model.
    strong = [r for r in reasons if not r.startswith(("sources from", "follow-up"))]
    if strong or len(reasons) >= 2:
        return "large", reasons
    return "small", reasons or ["short look-up"]
