"""Golden sets: questions with the evidence that answers them, and the documents to ask.

- ``docent``: questions about Docent's own documentation (README and docs/), written by hand
  in ``evals/data/golden_docent.jsonl``; answerable ones carry verbatim quotes as evidence,
  unanswerable ones none. Every quote is checked against its file when the set is loaded.
- ``scifact``: the SciFact training claims (BEIR layout, ``--data``) over their abstracts: the
  gold abstracts of the claims asked and a seeded sample of the others. Evidence is whole
  abstracts: an answer about a claim should cite its evidence abstract.

Evidence becomes gold chunks after ingestion (``gold_chunks``): the chunks of the live
version that hold a quote, or every chunk of an evidence document when there is no quote.
"""

from __future__ import annotations

import csv
import json
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from pathlib import Path
from typing import Literal

from app.errors import InvalidRequest

Kind = Literal["answerable", "unanswerable"]


@dataclass(frozen=True)
class Evidence:
    doc: str
    """The file name the document was uploaded under."""
    quote: str | None = None
    """Words of the document that answer the question; None: the whole document."""


@dataclass
class GoldenQuestion:
    id: str
    question: str
    kind: Kind
    evidence: list[Evidence]
    answer: str = ""
    """A reference answer (for string measures); empty when there is none."""
    risk: Literal["low", "high"] | None = None
    """The risk tier the question should get; None: not judged."""
    topic: str = ""
    relevant_docs: list[str] = field(default_factory=list)
    """Files relevant for retrieval when that differs from the evidence (SciFact's qrels)."""


@dataclass
class GoldenSet:
    name: str
    questions: list[GoldenQuestion]
    documents: list[tuple[str, bytes]]
    """(file name, content) to upload before asking."""
    source: str
    """Where the questions came from, for the report."""


def data_dir() -> Path:
    """``evals/data`` of a checkout, or its copy bundled into an installed package."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "_bundled" / "evals", here.parent / "evals" / "data"):
        if (candidate / "golden_docent.jsonl").is_file():
            return candidate
    raise InvalidRequest("Docent's golden sets are missing from this installation.")


def load_docent(path: Path | None = None, docs: Iterable[Path] | None = None) -> GoldenSet:
    """The golden set of Docent's documentation. Raises InvalidRequest naming any quote that
    is no longer in its file: the set must follow the docs it tests."""
    from app.services import own_docs

    path = path or data_dir() / "golden_docent.jsonl"
    files = {p.name: p for p in (own_docs() if docs is None else docs)}
    texts = {name: p.read_text(encoding="utf-8") for name, p in files.items()}
    questions: list[GoldenQuestion] = []
    stale: list[str] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        evidence = [Evidence(g["doc"], g["quote"]) for g in row["gold"]]
        for e in evidence:
            if e.doc not in texts or (e.quote and e.quote not in texts[e.doc]):
                stale.append(f"line {n} ({row['id']}): {e.doc}: {e.quote!r}")
        questions.append(
            GoldenQuestion(
                id=row["id"],
                question=row["question"],
                kind=row["kind"],
                evidence=evidence,
                answer=row.get("answer", ""),
                risk=row.get("risk"),
                topic=row.get("topic", ""),
            )
        )
    if stale:
        raise InvalidRequest(
            f"{len(stale)} gold quote(s) of {path.name} are no longer in the docs; update the "
            "golden set with the docs:\n  " + "\n  ".join(stale[:10])
        )
    return GoldenSet(
        name="docent",
        questions=questions,
        documents=[(name, p.read_bytes()) for name, p in files.items()],
        source=str(path),
    )


def load_scifact(
    root: Path, limit: int | None = None, others: int = 1000, seed: int = 0
) -> GoldenSet:
    """SciFact's training claims (those with judgements), ``limit`` of them in a seeded
    order, over their judged abstracts plus ``others`` more drawn with the same seed."""
    if not (root / "corpus.jsonl").is_file():
        raise InvalidRequest(
            f"No SciFact data at {root}: it needs corpus.jsonl, queries.jsonl, qrels/train.tsv "
            "and claims_train.csv (BEIR layout)."
        )
    corpus: dict[str, tuple[str, str]] = {}
    with (root / "corpus.jsonl").open(encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            corpus[str(d["_id"])] = (d.get("title", ""), d.get("text", ""))
    claims: dict[str, str] = {}
    with (root / "queries.jsonl").open(encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            claims[str(d["_id"])] = d["text"]
    judged: dict[str, list[str]] = {}
    with (root / "qrels" / "train.tsv").open(encoding="utf-8") as f:
        for row in csv.reader(f, delimiter="\t"):
            if len(row) >= 3 and row[0] != "query-id" and row[2].strip() not in ("", "0"):
                judged.setdefault(row[0], []).append(row[1])
    evidence: dict[str, set[str]] = {}
    with (root / "claims_train.csv").open(encoding="utf-8") as f:
        for claim in csv.DictReader(f):
            if claim.get("evidence_doc_id"):
                evidence.setdefault(claim["id"], set()).add(claim["evidence_doc_id"])
    ids = sorted((q for q in judged if q in claims), key=int)
    random.Random(seed).shuffle(ids)
    ids = ids[:limit] if limit else ids
    wanted = {d for q in ids for d in judged[q]} | {d for q in ids for d in evidence.get(q, ())}
    rest = sorted(set(corpus) - wanted)
    random.Random(seed + 1).shuffle(rest)
    chosen = sorted(wanted & set(corpus)) + rest[:others]
    questions = [
        GoldenQuestion(
            id=f"scifact-{q}",
            question=claims[q],
            # A claim with an evidence abstract can be answered from it; the others are
            # judged for retrieval only.
            kind="answerable" if evidence.get(q) else "unanswerable",
            evidence=[Evidence(f"{d}.txt") for d in sorted(evidence.get(q, ()))],
            relevant_docs=[f"{d}.txt" for d in judged[q]],
        )
        for q in ids
    ]
    documents = [(f"{d}.txt", f"{corpus[d][0]}\n\n{corpus[d][1]}\n".encode()) for d in chosen]
    return GoldenSet("scifact", questions, documents, str(root))


_MARKUP = re.compile(r"[*`#>|_\[\]()]+")
_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Lower case, markdown marks dropped, white space collapsed: a quote copied from a file
    still matches the chunk text made from it."""
    return _SPACE.sub(" ", _MARKUP.sub(" ", text.lower())).strip()


def holds(chunk_text: str, quote: str, share: float = 0.6) -> bool:
    """Whether a chunk holds a quote: all of it, or (where a chunk boundary cut it) an
    unbroken ``share`` of it."""
    chunk, wanted = normalise(chunk_text), normalise(quote)
    if not wanted:
        return False
    if wanted in chunk:
        return True
    match = SequenceMatcher(None, chunk, wanted, autojunk=False).find_longest_match(
        0, len(chunk), 0, len(wanted)
    )
    return match.size >= share * len(wanted)


def gold_chunks(evidence: Evidence, chunks: list[tuple[str, str]]) -> set[str]:
    """Ids of the chunks (id, text) of ``evidence.doc``'s live version that show it."""
    if evidence.quote is None:
        return {cid for cid, _ in chunks}
    return {cid for cid, text in chunks if holds(text, evidence.quote)}
