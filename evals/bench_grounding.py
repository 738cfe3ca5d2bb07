"""Grounding benchmark: does ``ground_sentences`` flag planted unsupported sentences?

Run from the repository root::

    python -m evals.bench_grounding [--n 400] [--out evals/results/grounding.json]

For each of ``--n`` SciFact abstracts (BEIR layout, /work/shared/data/scifact; abstracts
ODC-By 1.0, see its README) a seeded generator writes one-sentence answers that cite the
abstract as [1], given as the only source (a ChunkHit):

  supported  verbatim     a sentence of the abstract, as written (two per abstract)
             paraphrase   one lightly rewritten: a leading clause moved to the end, a
                          discourse adverb, fillers or a parenthesis dropped (two per abstract)
  planted    number       one number changed (17 -> 19, 0.016 -> 0.019, 2004 -> 2006)
             name         an acronym or capitalised name swapped for one from another abstract
             negation     "not" inserted after an auxiliary or as "did not <verb>", or an
                          existing negation removed
             invented     a sentence of an unrelated abstract, or a template claim built around
                          two words of the abstract (alternately)
  extra      merged       supported: two adjacent sentences joined with a semicolon
             direction    a word saying which way something went replaced by its antonym
                          (higher -> lower, increased -> decreased, positive -> negative);
                          reported on its own line, outside the headline figures

The abstracts are split in two halves by the seed: thresholds were tuned on the "tune" half
only, and the figures that count are those of the "held-out" half. "Flagged" means the verdict
is not "supported" (partial or unsupported); precision and recall are of flagging planted
sentences. The generator is written independently of the checker: it uses its own sentence
splitter and its own notion of a name, and knows nothing of the checker's rules.

Headline precision and recall cover verbatim, paraphrase and the four planted kinds of the
brief; "merged" and "direction" are reported per kind only. "recall (unsupported only)" counts
a planted sentence as caught only when its verdict is unsupported, which is what a validator
that allows partial verdicts sees.

Embeddings come from the real all-MiniLM-L6-v2 (ONNX). The sweeps reuse vectors from a cache;
the latency figures are measured separately without one: a one-sentence answer embeds its
whole source (an abstract, about ten sentences) each time, so whole answers, which embed it
once, cost much less per sentence.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from app.answer import grounding
from app.embeddings import Embedder
from app.models import ChunkHit

DEFAULT_DATA = Path("/work/shared/data/scifact")
DEFAULT_OUT = Path("evals/results/grounding.json")
SUPPORTED_KINDS = ("verbatim", "paraphrase")
PLANTED_KINDS = ("number", "name", "negation", "invented")
# Reported on their own, outside the headline figures of the brief's kinds.
EXTRA_KINDS = ("merged", "direction")
SWEEP = tuple(round(0.3 + 0.05 * i, 2) for i in range(14))  # supported_at 0.30 .. 0.95

_STARTED = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - _STARTED:6.1f}s] {msg}", flush=True)


# --- the generator (independent of the checker) ----------------------------------------------

_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z(])")
_GEN_NUMBER = re.compile(r"(?<![A-Za-z0-9.\-])\d+(?:\.\d+)?(?![A-Za-z0-9])")
_GEN_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)*")
_LEADS = {
    "in", "among", "for", "during", "after", "before", "at", "using", "with", "within",
    "compared", "when", "while", "by", "from", "across", "following", "under", "throughout",
    "upon", "of", "on", "to", "despite", "unlike",
}  # fmt: skip
_DISCOURSE = {
    "however", "thus", "therefore", "moreover", "furthermore", "finally", "additionally",
    "here", "overall", "together", "importantly", "conversely", "similarly", "consequently",
    "hence", "notably", "collectively", "interestingly", "specifically", "accordingly",
}  # fmt: skip
_FILLERS = {
    "also", "further", "both", "very", "highly", "previously", "recently", "respectively",
    "then", "generally", "currently", "strongly", "markedly", "substantially", "clearly",
    "significantly", "directly", "largely",
}  # fmt: skip
_AUX = re.compile(
    r"\b(is|are|was|were|has|have|had|can|could|may|might|will|would|should|did|does|do)\s+"
    r"(?!not\b)"
)
_VERBS = (
    "suggest", "indicate", "show", "demonstrate", "reveal", "support", "provide", "identify",
    "represent", "remain", "require", "increase", "decrease", "reduce", "improve", "predict",
    "promote", "inhibit", "induce", "cause", "affect", "regulate", "contribute", "correlate",
)  # fmt: skip
_TEMPLATES = (
    "{A} is the most common cause of {b} in adults.",
    "Daily supplementation with {a} prevents {b} in most patients.",
    "The effect of {a} on {b} disappears after the age of sixty.",
    "Most cases of {b} are explained by inherited variants of {a}.",
    "{A} was first identified in a survey of {b} among farmers.",
    "Exposure to {a} protects children against {b}.",
    "{A} and {b} are controlled by the same circadian clock.",
    "Removing {a} from the diet reverses {b} within a month.",
)


def sentences_of(text: str) -> list[str]:
    return [s.strip() for s in _SPLIT.split(text) if 6 <= len(s.split()) <= 60]


def gen_names(sentence: str, lower_words: set[str]) -> list[str]:
    """Acronyms (two capitals or more) and proper nouns: capitalised words after the first that
    the corpus never writes in lower case."""
    found = []
    for m in _GEN_TOKEN.finditer(sentence):
        token = m.group()
        prev = sentence[: m.start()].rstrip()[-1:]
        if sum(c.isupper() for c in token) >= 2 or (
            re.fullmatch(r"[A-Z][a-z]{2,}", token)
            and m.start() > 0
            and prev not in ".:;("
            and token.lower() not in lower_words
        ):
            found.append(token)
    return found


def paraphrase(sentence: str, rng: random.Random) -> str | None:
    def drop_parenthesis(s: str) -> str:
        return re.sub(r"\s+\([^()]*\)(?=[\s,;.])", "", s)

    def move_lead(s: str) -> str:
        if not s.strip():
            return s
        first = s.split(maxsplit=1)[0].lower().rstrip(",")
        m = re.match(r"([^,]{3,90}),\s+(.+)$", s)
        if first in _DISCOURSE and "," in s[:30]:
            rest = s.split(",", 1)[1].strip()
            return rest[:1].upper() + rest[1:]
        if not m or first not in _LEADS or len(m.group(2).split()) < 5:
            return s
        lead, rest = m.group(1), m.group(2).rstrip(".")
        return f"{rest[:1].upper()}{rest[1:]} {lead[:1].lower()}{lead[1:]}."

    def drop_fillers(s: str) -> str:
        words = [w for w in s.split(" ") if w.lower().strip(",") not in _FILLERS]
        if rng.random() < 0.5:
            words = [w for w in words if w.lower() not in ("the", "a", "an")]
        out = " ".join(words)
        return out[:1].upper() + out[1:]

    ops: list[Callable[[str], str]] = [drop_parenthesis, move_lead, drop_fillers]
    rng.shuffle(ops)
    out = sentence
    for op in ops[: rng.randint(1, 3)]:
        out = op(out)
    out = " ".join(out.split())
    return out if out != sentence and len(out.split()) >= 5 else None


def alter_number(sentence: str, rng: random.Random) -> str | None:
    found = list(_GEN_NUMBER.finditer(sentence))
    if not found:
        return None
    m = rng.choice(found)
    raw = m.group()
    if "." in raw:
        places = len(raw.split(".")[1])
        step = 10.0**-places
        value = float(raw)
        options = [value + step * d for d in (1, 2, 3, 5, 7)]
        options += [value - step * d for d in (1, 2, 3) if value - step * d > 0] + [value * 2]
        new = f"{rng.choice(options):.{places}f}"
    else:
        value_i = int(raw)
        if 1900 <= value_i <= 2030:
            new = str(value_i + rng.choice((-3, -2, -1, 1, 2, 3)))
        else:
            ints = [value_i + d for d in (1, 2, 3, 5, 10)] + [value_i * 2 if value_i else 4]
            ints += [value_i - d for d in (1, 2, 3) if value_i - d > 0]
            new = str(rng.choice(ints))
    if new == raw:
        return None
    return sentence[: m.start()] + new + sentence[m.end() :]


def swap_name(sentence: str, rng: random.Random, pool: NamePool) -> str | None:
    names = gen_names(sentence, pool.lower_words)
    if not names:
        return None
    old = rng.choice(names)
    shape = "acronym" if sum(c.isupper() for c in old) >= 2 else "word"
    present = {t.lower() for t in _GEN_TOKEN.findall(sentence)}
    for _ in range(50):
        new = rng.choice(pool.acronyms if shape == "acronym" else pool.proper_nouns)
        if new.lower() not in present:
            swapped = re.sub(rf"(?<![\w-]){re.escape(old)}(?![\w-])", new, sentence)
            return swapped if swapped != sentence else None
    return None


def _lemma(word: str) -> str:
    if word.endswith("ied"):
        return word[:-3] + "y"
    base = word[:-2]
    if len(base) > 3 and base[-1] == base[-2] and base[-1] not in "ls":
        return base[:-1]  # stopped -> stop
    if base.endswith(("c", "v", "z", "s", "at", "ir", "ur", "iz", "uc", "ng", "bl", "rg")):
        return base + "e"  # reduced -> reduce, associated -> associate
    return base


def flip_negation(sentence: str, rng: random.Random) -> str | None:
    removals = (
        (r"\b(is|are|was|were|do|does|did|has|have|had|can|could|may|might|will|would|should)"
         r"\s+not\s+", r"\1 "),
        (r"\bcannot\b", "can"),
        (r"\bnever\s+", ""),
        (r"\bwithout\b", "with"),
        (r"\bnot\s+(?!only\b)", ""),
        (r"\bno\s+(?=[a-z]+[^s\s,.]\b)", "a "),
        (r"\bno\s+", ""),
    )  # fmt: skip
    for pattern, repl in removals:
        flipped = re.sub(pattern, repl, sentence, count=1)
        if flipped != sentence:
            return flipped
    m = _AUX.search(sentence)
    if m:
        return sentence[: m.end()] + "not " + sentence[m.end() :]
    words = list(re.finditer(r"(?<![\w-])[a-z]{3,}ed\b", sentence))
    for w in words:
        before = sentence[: w.start()].split()
        if before and before[-1].lower() not in ("the", "a", "an", "of", "in", "and", "with"):
            return f"{sentence[: w.start()]}did not {_lemma(w.group())}{sentence[w.end() :]}"
    m2 = re.search(r"\b(" + "|".join(_VERBS) + r")(s?)\b", sentence)
    if m2 and m2.start() > 0:
        aux = "does" if m2.group(2) else "do"
        return f"{sentence[: m2.start()]}{aux} not {m2.group(1)}{sentence[m2.end() :]}"
    return None


_ANTONYMS = {
    "higher": "lower", "lower": "higher", "greater": "lower", "larger": "smaller",
    "smaller": "larger", "more": "less", "less": "more", "fewer": "more", "longer": "shorter",
    "shorter": "longer", "better": "worse", "worse": "better", "high": "low", "low": "high",
    "increased": "decreased", "decreased": "increased", "increase": "decrease",
    "decrease": "increase", "increases": "decreases", "decreases": "increases",
    "reduced": "increased", "reduces": "increases", "reduction": "increase",
    "elevated": "reduced", "improved": "worsened", "enhanced": "reduced", "declined": "rose",
    "above": "below", "below": "above", "upregulated": "downregulated",
    "downregulated": "upregulated", "positive": "negative", "negative": "positive",
}  # fmt: skip


def flip_direction(sentence: str, rng: random.Random) -> str | None:
    found = [m for m in re.finditer(r"\b[a-z]+\b", sentence) if m.group() in _ANTONYMS]
    if not found:
        return None
    m = rng.choice(found)
    return sentence[: m.start()] + _ANTONYMS[m.group()] + sentence[m.end() :]


def template_claim(abstract: str, rng: random.Random) -> str | None:
    words = sorted(
        {w for w in re.findall(r"\b[a-z]{6,}\b", abstract) if not w.endswith(("ly", "ed"))}
    )
    if len(words) < 2:
        return None
    a, b = rng.sample(words, 2)
    return rng.choice(_TEMPLATES).format(A=a.capitalize(), a=a, b=b)


@dataclass
class NamePool:
    acronyms: list[str]
    proper_nouns: list[str]
    lower_words: set[str]


@dataclass
class Case:
    doc: str
    kind: str
    planted: bool
    sentence: str
    subkind: str = ""

    @property
    def answer(self) -> str:
        body = self.sentence.rstrip()
        if body.endswith("."):
            return body[:-1] + " [1]."
        return body + " [1]"


def make_cases(
    doc: dict[str, str],
    rng: random.Random,
    pool: NamePool,
    unrelated: list[dict[str, str]],
    turn: int,
) -> list[Case]:
    sents = sentences_of(doc["text"])
    cases: list[Case] = []
    doc_id = doc["_id"]
    order = rng.sample(sents, len(sents))
    for s in order[:2]:
        cases.append(Case(doc_id, "verbatim", False, s))
    made = 0
    for s in order[2:] + order[:2]:
        p = paraphrase(s, rng)
        if p and made < 2:
            cases.append(Case(doc_id, "paraphrase", False, p))
            made += 1
    pairs = list(itertools.pairwise(_SPLIT.split(doc["text"])))
    a, b = rng.choice(pairs)
    if 6 <= len(a.split()) + len(b.split()) <= 80 and a.endswith(".") and b[1:2].islower():
        cases.append(Case(doc_id, "merged", False, f"{a[:-1]}; {b[0].lower()}{b[1:]}"))
    makers: dict[str, Callable[[str], str | None]] = {
        "number": lambda s: alter_number(s, rng),
        "name": lambda s: swap_name(s, rng, pool),
        "negation": lambda s: flip_negation(s, rng),
        "direction": lambda s: flip_direction(s, rng),
    }
    for kind, maker in makers.items():
        for s in rng.sample(sents, len(sents)):
            planted = maker(s)
            if planted:
                cases.append(Case(doc_id, kind, True, planted))
                break
    if turn % 2 == 0:
        other = rng.choice([d for d in unrelated if d["_id"] != doc_id])
        candidates = sentences_of(other["text"])
        if candidates:
            cases.append(Case(doc_id, "invented", True, rng.choice(candidates), "unrelated"))
    else:
        claim = template_claim(doc["text"], rng)
        if claim:
            cases.append(Case(doc_id, "invented", True, claim, "template"))
    return cases


# --- measuring -------------------------------------------------------------------------------


class CachedEmbedder:
    """Remembers vectors so a threshold sweep does not embed the same sentences again."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dimensions = inner.dimensions
        self._cache: dict[str, list[float]] = {}

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            self._cache.update(zip(missing, self.inner.embed_documents(missing), strict=True))
        return [self._cache[t] for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]

    def tokenizer(self) -> Callable[[str], list[Any]]:
        return self.inner.tokenizer()


def source_hit(doc: dict[str, str]) -> ChunkHit:
    return ChunkHit(
        chunk_id=f"scifact-{doc['_id']}",
        document_id=doc["_id"],
        title=doc.get("title", ""),
        collection="scifact",
        version=1,
        page=None,
        start=0,
        end=len(doc["text"]),
        text=doc["text"],
        score=1.0,
    )


_RANK = {"supported": 0, "partial": 1, "unsupported": 2}


def judge(
    cases: list[Case], docs: dict[str, dict[str, str]], embedder: Embedder, supported_at: float
) -> list[tuple[str, list[str]]]:
    """The worst verdict over the answer's sentences, and its reasons, for every case."""
    out: list[tuple[str, list[str]]] = []
    for case in cases:
        found = grounding.ground_sentences(
            case.answer,
            [source_hit(docs[case.doc])],
            embedder,
            supported_at=supported_at,
            partial_at=min(grounding.PARTIAL_AT, supported_at),
        )
        worst = max(found, key=lambda g: _RANK[g.verdict])
        out.append((worst.verdict, worst.reasons))
    return out


def metrics(cases: list[Case], verdicts: list[tuple[str, list[str]]]) -> dict[str, Any]:
    """Headline figures over the supported and the four planted kinds of the brief; per kind
    figures for every kind."""
    per_kind = _per_kind(cases, verdicts)
    headline = [(c, v) for c, v in zip(cases, verdicts, strict=True) if c.kind not in EXTRA_KINDS]
    cases = [c for c, _ in headline]
    flagged = [v != "supported" for _, (v, _) in headline]
    unsupported = sum(v == "unsupported" and c.planted for c, (v, _) in headline)
    tp = sum(f and c.planted for f, c in zip(flagged, cases, strict=True))
    fp = sum(f and not c.planted for f, c in zip(flagged, cases, strict=True))
    planted = sum(c.planted for c in cases)
    clean = len(cases) - planted
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / planted if planted else 1.0
    return {
        "n_planted": planted,
        "n_supported": clean,
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "recall_unsupported_only": round(unsupported / planted, 4) if planted else 1.0,
        "f1": round(2 * precision * recall / (precision + recall), 4) if tp else 0.0,
        "false_flag_rate": round(fp / clean, 4) if clean else 0.0,
        "per_kind": per_kind,
    }


def _per_kind(cases: list[Case], verdicts: list[tuple[str, list[str]]]) -> dict[str, Any]:
    flagged = [v != "supported" for v, _ in verdicts]
    per_kind: dict[str, Any] = {}
    kinds = (*SUPPORTED_KINDS, *PLANTED_KINDS, "invented/unrelated", "invented/template")
    for kind in (*kinds, *EXTRA_KINDS):
        base, _, sub = kind.partition("/")
        idx = [i for i, c in enumerate(cases) if c.kind == base and (not sub or c.subkind == sub)]
        if not idx:
            continue
        n_flagged = sum(flagged[i] for i in idx)
        per_kind[kind] = {
            "n": len(idx),
            ("recall" if cases[idx[0]].planted else "false_flag_rate"): round(
                n_flagged / len(idx), 4
            ),
            "verdicts": dict(Counter(verdicts[i][0] for i in idx)),
        }
    return per_kind


def failures(
    cases: list[Case], verdicts: list[tuple[str, list[str]]], limit: int
) -> list[dict[str, Any]]:
    """Examples of misses and false flags, to read when tuning."""
    wrong = [
        {"kind": c.kind, "sentence": c.sentence, "verdict": v, "reasons": r}
        for c, (v, r) in zip(cases, verdicts, strict=True)
        if (v != "supported") != c.planted
    ]
    return wrong[:limit]


def time_grounding(
    cases: list[Case], docs: dict[str, dict[str, str]], embedder: Embedder
) -> dict[str, Any]:
    """Latency without a cache: one-sentence answers, then one answer per abstract with all of
    its test sentences (the sources are embedded once per answer either way)."""
    single = []
    for case in cases:
        t = time.perf_counter()
        grounding.ground_sentences(case.answer, [source_hit(docs[case.doc])], embedder)
        single.append((time.perf_counter() - t) * 1000)
    by_doc: dict[str, list[Case]] = {}
    for case in cases:
        by_doc.setdefault(case.doc, []).append(case)
    per_sentence = []
    for doc_id, group in by_doc.items():
        answer = " ".join(c.answer for c in group)
        t = time.perf_counter()
        grounding.ground_sentences(answer, [source_hit(docs[doc_id])], embedder)
        per_sentence.append((time.perf_counter() - t) * 1000 / len(group))
    return {
        "one_sentence_answers": {
            "n": len(single),
            "mean_ms": round(statistics.mean(single), 1),
            "p50_ms": round(float(np.percentile(single, 50)), 1),
            "p95_ms": round(float(np.percentile(single, 95)), 1),
        },
        "multi_sentence_answers_ms_per_sentence": {
            "answers": len(per_sentence),
            "mean_ms": round(statistics.mean(per_sentence), 1),
        },
    }


# --- main ------------------------------------------------------------------------------------


def load_corpus(data: Path) -> list[dict[str, str]]:
    with (data / "corpus.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def name_pool(corpus: list[dict[str, str]], exclude: set[str]) -> NamePool:
    """Names to swap in, from abstracts other than the sampled ones."""
    lower_words = {w for d in corpus for w in re.findall(r"\b[a-z]+\b", d["text"])}
    acronyms: set[str] = set()
    proper: set[str] = set()
    for doc in corpus:
        if doc["_id"] in exclude:
            continue
        for s in sentences_of(doc["text"]):
            for name in gen_names(s, lower_words):
                (acronyms if sum(c.isupper() for c in name) >= 2 else proper).add(name)
    return NamePool(sorted(acronyms), sorted(proper), lower_words)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m evals.bench_grounding",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--n", type=int, default=400, help="abstracts (half tune, half held out)")
    p.add_argument("--seed", type=int, default=20240611)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--timing", type=int, default=200, help="held-out sentences timed uncached")
    p.add_argument("--examples", type=int, default=40, help="misses and false flags kept")
    p.add_argument("--models", type=Path, default=Path(".cache/models"))
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from app import minilm

    corpus = load_corpus(args.data)
    usable = [d for d in corpus if len(sentences_of(d["text"])) >= 5]
    rng = random.Random(args.seed)
    chosen = rng.sample(usable, min(args.n, len(usable)))
    chosen_ids = {d["_id"] for d in chosen}
    others = [d for d in corpus if d["_id"] not in chosen_ids]
    pool = name_pool(corpus, chosen_ids)
    halves = {"tune": chosen[: len(chosen) // 2], "held_out": chosen[len(chosen) // 2 :]}
    docs = {d["_id"]: d for d in chosen}
    cases: dict[str, list[Case]] = {}
    for half, members in halves.items():
        cases[half] = [
            c for turn, d in enumerate(members) for c in make_cases(d, rng, pool, others, turn)
        ]
    log(
        f"{len(usable)} usable abstracts; {args.n} chosen; cases: "
        + ", ".join(f"{h} {len(c)}" for h, c in cases.items())
    )

    started = time.perf_counter()
    model = minilm.load("onnx", args.models)
    log(f"loaded {model.name} in {time.perf_counter() - started:.1f}s")
    cached = CachedEmbedder(model)

    results: dict[str, Any] = {
        "meta": {
            "command": "python -m evals.bench_grounding " + " ".join(sys.argv[1:]),
            "seed": args.seed,
            "abstracts": len(chosen),
            "embedder": model.name,
            "defaults": {
                "supported_at": grounding.SUPPORTED_AT,
                "partial_at": grounding.PARTIAL_AT,
                "cosine_weight": grounding.COSINE_WEIGHT,
                "rescue_margin": grounding.RESCUE_MARGIN,
            },
            "data": "BEIR SciFact corpus (abstracts ODC-By 1.0)",
        },
        "defaults": {},
        "sweep": {},
    }
    for half, half_cases in cases.items():
        verdicts = judge(half_cases, docs, cached, grounding.SUPPORTED_AT)
        results["defaults"][half] = metrics(half_cases, verdicts)
        results["defaults"][half]["examples"] = failures(half_cases, verdicts, args.examples)
        log(f"{half} at defaults: {_line(results['defaults'][half])}")
    for half, half_cases in cases.items():
        results["sweep"][half] = {
            str(t): metrics(half_cases, judge(half_cases, docs, cached, t)) for t in SWEEP
        }
        for row in results["sweep"][half].values():
            row.pop("per_kind")
    best = max(SWEEP, key=lambda t: results["sweep"]["tune"][str(t)]["f1"])
    results["best_on_tune"] = {
        "supported_at": best,
        "tune": results["sweep"]["tune"][str(best)],
        "held_out": results["sweep"]["held_out"][str(best)],
    }
    timed = cases["held_out"][: args.timing]
    results["latency"] = time_grounding(timed, docs, model)
    log("timed " + json.dumps(results["latency"]))

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print_table(results)
    print(f"\nwrote {args.out}")
    return 0


def _line(m: dict[str, Any]) -> str:
    return (
        f"precision {m['precision']:.3f} recall {m['recall']:.3f} "
        f"false flags {m['false_flag_rate']:.3f} ({m['n_planted']} planted, "
        f"{m['n_supported']} supported)"
    )


def print_table(results: dict[str, Any]) -> None:
    print("\nsweep of supported_at (flagged = partial or unsupported)")
    print(f"{'supported_at':>12}  {'tune P':>7} {'tune R':>7} {'held P':>7} {'held R':>7}")
    for t in SWEEP:
        a, b = results["sweep"]["tune"][str(t)], results["sweep"]["held_out"][str(t)]
        mark = " <- default" if t == grounding.SUPPORTED_AT else ""
        print(
            f"{t:>12.3f}  {a['precision']:>7.3f} {a['recall']:>7.3f} "
            f"{b['precision']:>7.3f} {b['recall']:>7.3f}{mark}"
        )
    held = results["defaults"]["held_out"]
    tune = results["defaults"]["tune"]
    print(f"\nat the defaults {results['meta']['defaults']}")
    print(f"{'figure':<42} {'tune':>8} {'held-out':>9}  target")
    rows = [
        ("precision (flagging planted)", "precision", ">= 0.9"),
        ("recall (flagging planted)", "recall", ">= 0.9"),
        ("recall (unsupported only)", "recall_unsupported_only", ""),
        ("false-flag rate (supported)", "false_flag_rate", ""),
    ]
    for label, key, target in rows:
        print(f"{label:<42} {tune[key]:>8.3f} {held[key]:>9.3f}  {target}")
    for kind, row in held["per_kind"].items():
        key = "recall" if "recall" in row else "false_flag_rate"
        label = f"  {kind}: {'recall' if key == 'recall' else 'false flags'} (n={row['n']})"
        print(f"{label:<42} {tune['per_kind'].get(kind, {}).get(key, 0):>8.3f} {row[key]:>9.3f}")
    lat = results["latency"]
    print(
        f"{'ms per sentence, 1-sentence answers':<42} {'':>8} "
        f"{lat['one_sentence_answers']['mean_ms']:>9.1f}"
    )
    print(
        f"{'ms per sentence, whole answers':<42} {'':>8} "
        f"{lat['multi_sentence_answers_ms_per_sentence']['mean_ms']:>9.1f}"
    )
    best = results["best_on_tune"]
    print(
        f"best supported_at on tune by F1: {best['supported_at']} -> held-out "
        f"precision {best['held_out']['precision']:.3f} recall {best['held_out']['recall']:.3f}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
