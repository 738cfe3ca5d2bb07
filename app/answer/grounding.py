"""Per-sentence grounding of an answer in its sources, offline.

Each sentence of the answer (its [n] markers stripped) is compared with the passages of the
sources it cites, or of all sources when it cites none: every sentence of those chunks, and
every window of two adjacent sentences. A passage's score blends embedding cosine with the
share of the sentence's content words it contains. Similarity alone cannot tell "14 days" from
"30 days", "Leeds" from "Bristol", "is" from "is not" or "higher" from "lower", so the most
similar passages must also pass hard checks: every number of the sentence appears in the
passage, every name or acronym appears in it (or in the source's title), negation agrees, and
no word the sentence says went up is said to go down there.

    supported    the most similar passage that passes the checks scores >= ``supported_at``
                 (and within ``RESCUE_MARGIN`` of the most similar passage of all)
    partial      the most similar passage passes the checks but scores only >= ``partial_at``;
                 or the sentence is supported, but by a source other than the one it cites
    unsupported  the most similar passages fail a check, or nothing scores >= ``partial_at``

Refusals ("The documents do not answer this question"), fragments ("In short:"), headings and
questions state nothing that could be wrong: they are marked supported with the reason
"not a claim" and ``claim=False``, and ``grounding_pass_rate`` leaves them out.

Sources are split here rather than with ``offline.candidate_sentences``: that one drops what
should not be quoted (short lines, statistics, anything with < or |), but an answer may well
restate exactly those, so every sentence of a source is a passage.

Measured by ``python -m evals.bench_grounding`` (planted errors in SciFact abstracts).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

import numpy as np

from app.embeddings import Embedder, embed_matrix
from app.models import ChunkHit
from app.providers.offline import STOPWORDS, content_words

Verdict = Literal["supported", "partial", "unsupported"]

SUPPORTED_AT = 0.6
"""Score of the best clean passage from which a sentence is supported (tuned on SciFact)."""
PARTIAL_AT = 0.45
"""Score from which a passage counts as similar at all: below it, "no similar passage"."""
COSINE_WEIGHT = 0.6
"""Share of the score from embedding cosine; the rest is content-word overlap."""
RESCUE_MARGIN = 0.05
"""When the most similar passage fails a hard check, another passage supports the sentence
only if it scores at most this much lower: else it is the contradicted passage that matters."""
_CHECKED = 8  # hard checks run on this many of the most similar passages
_SCOPE_WORDS = (6, 3)  # content words after a verbal / a nominal negation that it applies to

NOT_A_CLAIM = "not a claim"


@dataclass(frozen=True)
class SentenceGrounding:
    index: int
    text: str
    """The sentence as written in the answer, markers included: answer[start:end]."""
    start: int
    end: int
    verdict: Verdict
    score: float
    """0..1: how closely the passage below matches the sentence."""
    source: int | None
    """1-based number of the source holding the passage. For a supported or partial sentence
    it supports it; for an unsupported one it is the closest passage, which contradicts it
    (None when nothing was similar)."""
    chunk_id: str | None
    span: tuple[int, int] | None
    """The passage: start and end in that chunk's text."""
    reasons: list[str] = field(default_factory=list)
    claim: bool = True
    """False for refusals and fragments, which cannot be wrong."""

    def to_event(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "text": self.text,
            "start": self.start,
            "end": self.end,
            "verdict": self.verdict,
            "score": round(self.score, 3),
            "source": self.source,
            "chunk_id": self.chunk_id,
            "span": list(self.span) if self.span else None,
            "reasons": list(self.reasons),
            "claim": self.claim,
        }


# --- sentences -------------------------------------------------------------------------------

_MARKERS = r"\[\d{1,3}(?:\s*[,;]\s*\d{1,3})*\]"
_MARKER = re.compile(r"\s*" + _MARKERS)
_BLOCK_START = re.compile(r"[ \t]*(?:#{1,6}[ \t]+|[-*+•][ \t]+|\d{1,3}[.)][ \t]+|>[ \t]*|\|)")
_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?:\s*" + _MARKERS + r")*(?=\s|$)")
_DOTTED = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]")
_ABBREVIATION = re.compile(
    r"al|approx|ca|cf|dr|eq|etc|figs?|inc|jr|ltd|mrs?|ms|nos?|prof|refs?|resp|sr|st|vol|vs", re.I
)


def _blocks(text: str) -> list[tuple[int, int]]:
    """Paragraphs, list items, headings and table rows: hard-wrapped lines stay together."""
    blocks: list[tuple[int, int]] = []
    start: int | None = None
    offset = 0
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        markup = _BLOCK_START.match(body)
        if not body.strip() or markup:
            if start is not None:
                blocks.append((start, offset))
            start = offset + markup.end() if markup and body[markup.end() :].strip() else None
        elif start is None:
            start = offset
        offset += len(line)
        if markup and body.lstrip().startswith(("#", "|")) and start is not None:
            blocks.append((start, offset))  # a heading or table row is a block of its own
            start = None
    if start is not None:
        blocks.append((start, offset))
    return blocks


def _is_boundary(text: str, end: int, stop: int, punct_at: int) -> bool:
    rest = text[end:stop].lstrip()
    if rest and rest[0].islower():
        return False
    word = re.search(r"(\S*)$", text[:punct_at])
    token = word.group(1).lstrip("([\"'") if word else ""
    if _DOTTED.fullmatch(token) or _ABBREVIATION.fullmatch(token):
        return False  # e.g., U.S., et al., Fig.
    if len(token) == 1 and token.isupper():
        before = text[: punct_at - 1].rstrip().rsplit(maxsplit=1)
        return bool(before) and not before[-1][:1].isupper()  # "J. Smith" but "hepatitis B."
    return True


def _sentence_spans(text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for b_start, b_end in _blocks(text):
        cursor = b_start
        for m in _END.finditer(text, b_start, b_end):
            if m.end() < b_end and not _is_boundary(text, m.end(), b_end, m.start()):
                continue
            spans.append((cursor, m.end()))
            cursor = m.end()
        spans.append((cursor, b_end))
    trimmed = []
    for s, e in spans:
        piece = text[s:e]
        s, e = s + len(piece) - len(piece.lstrip()), e - len(piece) + len(piece.rstrip())
        if e > s:
            trimmed.append((s, e))
    return trimmed


def split_answer(text: str) -> list[tuple[int, int, str]]:
    """Sentences of an answer as (start, end, text[start:end]); [n] markers after a sentence's
    full stop stay with it, list items and headings are sentences of their own."""
    return [(s, e, text[s:e]) for s, e in _sentence_spans(text)]


# --- what a sentence states ------------------------------------------------------------------

# Digits not glued to Latin letters (not "microm2", "CD4"); Greek ones separate ("β2", "3β").
_NUMBER = re.compile(
    r"(?<![A-Za-z0-9_.])(\d{1,3}(?:,\d{3})+(?!\d)|\d+(?:\.\d+)?|\.\d+)(?![A-Za-z0-9_])"
)
_WRITTEN = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
]
_NUMBER_WORDS = {word: str(value) for value, word in enumerate(_WRITTEN)}
_NUMBER_WORDS |= {
    word: str(10 * tens)
    for tens, word in enumerate(
        ("thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"), start=3
    )
}
# Written numbers from eleven up are never pronouns or articles ("one", "two groups" may be
# paraphrased as "it", "both"): a claim's "forty weeks" must be found in its passage.
_CLAIM_NUMBER_WORDS = {w: v for w, v in _NUMBER_WORDS.items() if int(v) > 10}
_TOKEN = re.compile(r"[^\W_]+")
# Lower case or capitalised only: "NO" is as likely nitric oxide as a negation.
_NEGATION = re.compile(
    r"\b(?:[Nn](?:ot|o|ever|one|or|either|obody|othing)|[Ww]ithout|[Cc]annot|[Uu]nable\s+to"
    r"|[Ff]ail(?:s|ed|ing)?\s+to|[Ll]ack(?:s|ed|ing)?)\b|n't\b"
)
# Negation words that do not negate: "not only", "no more than 5", "whether or not".
_NOT_NEGATION = re.compile(
    r"\bnot\s+(?:only|just|merely)\b|\bno\s+(?:more|less|fewer|later|earlier)\s+than\b"
    r"|\bwhether\s+or\s+not\b",
    re.IGNORECASE,
)
_SCOPE_END = re.compile(r"[,;:.!?]|\b(?:but|whereas|while|although|though|however|except)\b")
# "no", "without", "lack of" negate a noun phrase; "not", "never" a verb phrase.
_NOMINAL_CUE = re.compile(r"(?i)no|none|nor|neither|nobody|nothing|without|lack\w*")
_REFUSAL = re.compile(
    r"\b(?:documents?|sources?|passages?|context|texts?|excerpts?|information)\b.*"
    r"\b(?:not|n't|cannot|never)\b.*\b(?:answer|cover|contain|mention|say|state|specify|"
    r"include|provide|address|discuss|describe|explain)"
    r"|\bno\s+(?:relevant\s+)?(?:documents?|information|sources?|passages?)\b"
    r"|\bI\s+(?:do\s+not|don't|cannot|can't|could\s+not|couldn't|am\s+unable\s+to)\s+"
    r"(?:know|find|answer|determine|tell|say)\b"
    r"|\b(?:try\s+rephrasing|ask\s+again|upload\s+(?:a|some)\b)",
    re.IGNORECASE,
)
# Words saying which way something went (+ or -; signs apart), keyed by their stems.
_DIRECTION_WORDS = {
    "+": "higher greater larger more longer faster better high above elevated increase increases "
    "increased increasing rise rises rose risen improve improves improved upregulated gain gains "
    "gained enhanced",
    "-": "lower smaller less fewer shorter slower worse low below decrease decreases decreased "
    "decreasing reduce reduces reduced reducing reduction fall falls fell fallen decline declines "
    "declined worsen worsened downregulated loss lost diminished",
    "+sign": "positive positively",
    "-sign": "negative negatively",
}
# Between a direction word and what it qualifies: "mortality was significantly reduced".
_DIRECTION_SKIPS = frozenset({
    "is", "are", "was", "were", "be", "been", "being", "has", "have", "had", "a", "an", "the",
    "than", "significantly", "much", "slightly", "markedly", "substantially", "somewhat",
})  # fmt: skip
_MARKDOWN = re.compile(r"\*\*|__|`")  # bold and code marks; a lone * may be an allele


def _numbers(text: str, *, words: bool) -> dict[str, str]:
    """Normalised value -> as written. Written-out numbers up to ten count only in passages
    (words=True): "one" is as often a pronoun as a number; larger ones count everywhere."""
    found: dict[str, str] = {}
    for m in _NUMBER.finditer(text):
        raw = m.group(1)
        value = raw.replace(",", "")
        if "." in value:
            value = value.rstrip("0").rstrip(".")
        whole, _, frac = value.partition(".")
        found.setdefault((whole.lstrip("0") or "0") + ("." + frac if frac else ""), raw)
    table = _NUMBER_WORDS if words else _CLAIM_NUMBER_WORDS
    for token in _TOKEN.findall(text.lower()):
        if token in table:
            found.setdefault(table[token], token)
    return found


def _names(text: str) -> list[str]:
    """Acronyms and identifiers anywhere (HIV, mRNA, p53); capitalised words except the first
    word of the sentence or of a clause after a colon."""
    names: list[str] = []
    for m in _TOKEN.finditer(text):
        token = m.group()
        upper = sum(ch.isupper() for ch in token)
        if upper >= 2 or (token[0].isalpha() and any(ch.isdigit() for ch in token)):
            names.append(token)
            continue
        if not token[0].isupper() or token.lower() in STOPWORDS or token in ("A", "I"):
            continue
        before = text[: m.start()].rstrip()
        if before and before[-1] not in ".:;!?" and not token[1:].isupper():
            names.append(token)
    return list(dict.fromkeys(names))


@lru_cache(maxsize=50_000)
def _stem(word: str) -> str | None:
    """content_words' stem of one word, a little further: "reduce" and "reduces" meet."""
    stems = content_words(word)
    if not stems:
        return None
    stem = next(iter(stems))
    return stem[:-1] if stem.endswith("e") and len(stem) > 4 else stem


def _words(text: str) -> list[str]:
    stems = (_stem(raw) for raw in re.findall(r"[a-z0-9]+", text.lower()))
    return [s for s in stems if s]


_DIRECTION = {stem: way for way, words in _DIRECTION_WORDS.items() for stem in _words(words)}


def _negated_scopes(text: str) -> list[list[str]]:
    """Content words each negation applies to, in order: a few after it, within its clause
    and before the next negation."""
    masked = _NOT_NEGATION.sub(lambda m: " " * len(m.group()), text)
    cues = list(_NEGATION.finditer(masked))
    scopes = []
    for n, cue in enumerate(cues):
        stop = _SCOPE_END.search(masked, cue.end())
        end = min(
            stop.start() if stop else len(masked),
            cues[n + 1].start() if n + 1 < len(cues) else len(masked),
        )
        words = [w for w in _words(masked[cue.end() : end]) if not w.isdigit()]
        limit = _SCOPE_WORDS[bool(_NOMINAL_CUE.fullmatch(cue.group()))]
        scopes.append(list(dict.fromkeys(words))[:limit])
    return scopes


@dataclass
class _Text:
    """What the checks need of a claim or a passage."""

    words: set[str]
    numbers: dict[str, str]
    tokens: set[str]
    negations: list[list[str]]
    directions: dict[tuple[str, str], str]

    @classmethod
    def of(cls, text: str, *, passage: bool) -> _Text:
        return cls(
            words=set(_words(text)),
            numbers=_numbers(text, words=passage),
            tokens={t.lower() for t in _TOKEN.findall(text)},
            negations=_negated_scopes(text),
            directions=_directions(text),
        )

    def joined(self, other: _Text) -> _Text:
        return _Text(
            self.words | other.words,
            {**other.numbers, **self.numbers},
            self.tokens | other.tokens,
            self.negations + other.negations,
            {**other.directions, **self.directions},
        )


def _directions(text: str) -> dict[tuple[str, str], str]:
    """(which way, the word next to the one saying so) -> that word: "lower mortality" and
    "mortality was lower" both give ("-", "mortality") -> "lower"."""
    raws = re.findall(r"[a-z0-9]+", text.lower())
    found: dict[tuple[str, str], str] = {}
    for i, raw in enumerate(raws):
        way = _DIRECTION.get(_stem(raw) or "")
        if not way:
            continue
        for step in (-1, 1):
            j = i + step
            while 0 <= j < len(raws) and (raws[j] in _DIRECTION_SKIPS or raws[j].isdigit()):
                j += step
            near = _stem(raws[j]) if 0 <= j < len(raws) else None
            if near and near not in _DIRECTION:
                found.setdefault((way, near), raw)
    return found


def _direction_flipped(claim: _Text, passage: _Text) -> str | None:
    """The claim says something is higher (or rose) where the passage says lower (or fell)."""
    for (way, near), said in sorted(claim.directions.items()):
        opposite = (("-" if way[0] == "+" else "+") + way[1:], near)
        if opposite in passage.directions and (way, near) not in passage.directions:
            return f"{said} vs {passage.directions[opposite]}"
    return None


def _has_token(tokens: set[str], name: str) -> bool:
    key = name.lower()
    return key in tokens or key + "s" in tokens or (key.endswith("s") and key[:-1] in tokens)


def _negation_differs(claim: _Text, passage: _Text) -> bool:
    """The claim denies what the passage asserts, or asserts what the passage denies.

    A negation on one side is compared with the other side when most of the words it applies
    to appear there; the first of them (usually the verb or noun it negates) must then be
    negated there too."""
    if claim.negations and not passage.negations:
        return True
    for ours, theirs in ((claim, passage), (passage, claim)):
        denied = {w for scope in theirs.negations for w in scope}
        for scope in ours.negations:
            shared = [w for w in scope if w in theirs.words]
            if len(shared) >= max(1, math.ceil(len(scope) / 2)) and shared[0] not in denied:
                return True
    return False


def _hard_failures(claim: _Text, names: list[str], passage: _Text, title: set[str]) -> list[str]:
    reasons = [
        f"number {raw} not in the source"
        for value, raw in claim.numbers.items()
        if value not in passage.numbers
    ]
    reasons += [
        f"name {name} not in the source"
        for name in names
        if not _has_token(passage.tokens, name) and not _has_token(title, name)
    ]
    if _negation_differs(claim, passage):
        reasons.append("negation differs")
    flipped = _direction_flipped(claim, passage)
    if flipped:
        reasons.append(f"direction differs ({flipped})")
    return reasons


def _is_claim(text: str, heading: bool) -> bool:
    if heading or text.endswith("?") or _REFUSAL.search(text):
        return False
    if text.endswith(":") and len(text.split()) <= 8 and not any(c.isdigit() for c in text):
        return False  # a lead-in such as "The steps are:"
    return len(content_words(text)) >= 2


# --- grounding -------------------------------------------------------------------------------


@dataclass
class _Passage:
    source: int
    span: tuple[int, int]
    facts: _Text
    rows: tuple[int, ...]  # rows of the embedding matrix it is made of


@lru_cache(maxsize=20_000)
def _passage_text(text: str) -> _Text:
    """Popular passages are cited by answer after answer: analyse each once. Read-only."""
    return _Text.of(text, passage=True)


@lru_cache(maxsize=4_096)
def _source_sentences(
    text: str,
) -> tuple[tuple[tuple[tuple[int, int], str, _Text], ...], tuple[_Text, ...]]:
    """A source's sentences (span, text with its spaces evened, facts) and the facts of each
    pair of neighbours: found once per chunk text, not once per answer that cites it (finding
    sentence ends was a third of the grounding's CPU). Read-only."""
    sentences = []
    for s, e in _sentence_spans(text):
        clean = " ".join(text[s:e].split())
        sentences.append(((s, e), clean, _passage_text(clean)))
    pairs = tuple(a[2].joined(b[2]) for a, b in itertools.pairwise(sentences))
    return tuple(sentences), pairs


def _passages(sources: list[ChunkHit], row_of: dict[str, int]) -> list[_Passage]:
    passages: list[_Passage] = []
    for n, hit in enumerate(sources, start=1):
        found, pairs = _source_sentences(hit.text)
        sentences = [
            _Passage(n, span, facts, (row_of.setdefault(clean, len(row_of)),))
            for span, clean, facts in found
        ]
        passages.extend(sentences)
        for (a, b), facts in zip(itertools.pairwise(sentences), pairs, strict=True):
            passages.append(_Passage(n, (a.span[0], b.span[1]), facts, a.rows + b.rows))
    return passages


@dataclass
class _Match:
    verdict: Verdict
    score: float
    passage: _Passage | None
    reasons: list[str]


@dataclass
class _Claim:
    facts: _Text
    names: list[str]
    vector: np.ndarray[Any, np.dtype[np.float32]]


@dataclass
class _Evidence:
    """The sources' passages with the embeddings of their sentences."""

    passages: list[_Passage]
    matrix: np.ndarray[Any, np.dtype[np.float32]]
    titles: list[set[str]]
    supported_at: float
    partial_at: float
    _directions: np.ndarray[Any, np.dtype[np.float32]] | None = None

    def match(self, claim: _Claim, among: set[int]) -> _Match:
        """The verdict of the most similar passage of the sources ``among`` that passes the
        hard checks; unsupported if the most similar one fails them and none close passes."""
        chosen = [i for i, p in enumerate(self.passages) if p.source in among]
        if not chosen:
            return _Match("unsupported", 0.0, None, ["no similar passage"])
        passages = [self.passages[i] for i in chosen]
        scores = self._scores(claim, chosen)
        order = sorted(range(len(passages)), key=lambda i: scores[i], reverse=True)
        top = order[0]
        if scores[top] < self.partial_at:
            return _Match("unsupported", scores[top], None, ["no similar passage"])
        top_failures: list[str] | None = None
        for i in order[:_CHECKED]:
            if scores[i] < max(self.partial_at, scores[top] - RESCUE_MARGIN):
                break
            p = passages[i]
            failures = _hard_failures(claim.facts, claim.names, p.facts, self.titles[p.source - 1])
            if top_failures is None:
                top_failures = failures
            if not failures and scores[i] >= self.supported_at:
                return _Match("supported", scores[i], p, [])
            if not failures and i == top:
                return _Match("partial", scores[i], p, ["only loosely similar to the source"])
        return _Match("unsupported", scores[top], passages[top], top_failures or [])

    def _scores(self, claim: _Claim, chosen: list[int]) -> list[float]:
        if self._directions is None:
            # A window's direction is the sum of its sentences' vectors, normalised.
            sums = np.stack([self.matrix[list(p.rows)].sum(axis=0) for p in self.passages])
            norms = np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-9)
            self._directions = sums / norms
        cosines = self._directions[chosen] @ claim.vector
        words = claim.facts.words
        out: list[float] = []
        for i, cosine in zip(chosen, cosines.tolist(), strict=True):
            overlap = len(words & self.passages[i].facts.words) / len(words) if words else 0.0
            out.append(min(1.0, max(0.0, COSINE_WEIGHT * cosine + (1 - COSINE_WEIGHT) * overlap)))
        return out


def ground_sentences(
    answer: str,
    sources: list[ChunkHit],
    embedder: Embedder,
    *,
    supported_at: float = SUPPORTED_AT,
    partial_at: float = PARTIAL_AT,
) -> list[SentenceGrounding]:
    """A verdict for every sentence of ``answer`` against the sources it cites ([n], 1-based
    into ``sources``), or against all of them when it cites none."""
    sentences = split_answer(answer)
    claims = [" ".join(_MARKDOWN.sub("", _MARKER.sub("", t)).split()) for _, _, t in sentences]
    if not sentences:
        return []
    row_of: dict[str, int] = {}
    passages = _passages(sources, row_of)
    claim_rows = [row_of.setdefault(c, len(row_of)) for c in claims]
    texts = list(row_of)  # one batched call for the answer and all its sources
    matrix = embed_matrix(embedder, texts)
    matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-9)
    titles = [{t.lower() for t in _TOKEN.findall(hit.title)} for hit in sources]
    evidence = _Evidence(passages, matrix, titles, supported_at, partial_at)

    results = []
    for index, ((start, end, text), claim) in enumerate(zip(sentences, claims, strict=True)):
        line = answer[answer.rfind("\n", 0, start) + 1 : start]
        if not _is_claim(claim, heading=line.lstrip().startswith("#")):
            results.append(
                SentenceGrounding(
                    index=index, text=text, start=start, end=end, verdict="supported",
                    score=1.0, source=None, chunk_id=None, span=None, reasons=[NOT_A_CLAIM],
                    claim=False,
                )
            )  # fmt: skip
            continue
        checked = _Claim(_Text.of(claim, passage=False), _names(claim), matrix[claim_rows[index]])
        markers = [int(n) for m in _MARKER.findall(text) for n in re.findall(r"\d+", m)]
        cited = {n for n in markers if 1 <= n <= len(sources)}
        found = _cited_match(evidence, checked, cited, sorted(set(markers) - cited))
        p = found.passage
        results.append(
            SentenceGrounding(
                index=index,
                text=text,
                start=start,
                end=end,
                verdict=found.verdict,
                score=round(found.score, 4),
                source=p.source if p else None,
                chunk_id=sources[p.source - 1].chunk_id if p else None,
                span=p.span if p else None,
                reasons=found.reasons,
            )
        )
    return results


def _cited_match(
    evidence: _Evidence, claim: _Claim, cited: set[int], dangling: list[int]
) -> _Match:
    """Against the cited sources first. Content that is right under the wrong marker is a
    citation error, not an invention: partial, with the source that does support it."""
    everything = set(range(1, len(evidence.titles) + 1))
    found = evidence.match(claim, cited or everything)
    if cited and found.verdict != "supported":
        elsewhere = evidence.match(claim, everything - cited)
        if elsewhere.verdict == "supported" and elsewhere.passage:
            wrong = ", ".join(f"[{n}]" for n in sorted(cited))
            because = f"cites {wrong}, but source [{elsewhere.passage.source}] supports it"
            return _Match("partial", elsewhere.score, elsewhere.passage, [because])
    if dangling:
        wrong = ", ".join(f"[{n}]" for n in dangling)
        note = f"cites {wrong}, which {'is' if len(dangling) == 1 else 'are'} not a source"
        verdict: Verdict = (
            "partial" if not cited and found.verdict == "supported" else found.verdict
        )
        return _Match(verdict, found.score, found.passage, [*found.reasons, note])
    return found


def grounding_pass_rate(verdicts: Sequence[SentenceGrounding]) -> float:
    """Share of the answer's claims that are supported (1.0 when it makes none)."""
    claims = [v for v in verdicts if v.claim]
    if not claims:
        return 1.0
    return sum(v.verdict == "supported" for v in claims) / len(claims)


def all_grounded(verdicts: Sequence[SentenceGrounding], *, allow_partial: bool) -> bool:
    """True when no claim is unsupported (nor partial, unless ``allow_partial``)."""
    passing = ("supported", "partial") if allow_partial else ("supported",)
    return all(v.verdict in passing for v in verdicts)
