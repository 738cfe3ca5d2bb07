"""ragas's measures of the answers of an evaluation run (the adapter: nothing else imports
ragas or LangChain).

Always, when ragas is installed (``pip install 'docent[eval]'``), with no model:

- ``ragas_context_precision`` / ``ragas_context_recall``: ragas's non-LLM context precision
  (with reference) and context recall, the sources given to the model against the gold chunks;
- ``ragas_string_similarity``: Levenshtein similarity of the answer to the reference answer;
- ``ragas_rouge_l``: ROUGE-L F1 of the answer against the reference answer.

With a judge model (``--judge openai:MODEL``, reached like the chat models: DOCENT_OPENAI_API_KEY
and DOCENT_CHAT_OPENAI_BASE_URL), also ``ragas_faithfulness`` and ``ragas_answer_relevancy``
(with Docent's own embedder for the relevancy's question similarity).

ragas's usage analytics are switched off (RAGAS_DO_NOT_TRACK) before it is imported: Docent
sends nothing anywhere it was not asked to.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from typing import Any

from app.errors import InvalidRequest
from app.evaluation.runner import QuestionResult
from app.settings import Settings

log = logging.getLogger(__name__)

JUDGE_CONCURRENCY = 4
MISSING = "ragas is not installed, so its measures were skipped: pip install 'docent[eval]'."


def _import_ragas() -> Any | None:
    os.environ["RAGAS_DO_NOT_TRACK"] = "true"  # ragas posts usage analytics otherwise
    try:
        import ragas
    except ImportError:
        return None
    return ragas


@dataclass
class Judge:
    """An OpenAI-compatible chat model for ragas's judged measures, and Docent's embedder."""

    llm: Any
    embeddings: Any
    name: str

    @classmethod
    def from_spec(cls, spec: str, settings: Settings) -> Judge:
        kind, _, model = spec.partition(":")
        if kind.strip() != "openai" or not model.strip():
            raise InvalidRequest(
                f"--judge {spec!r}: give an OpenAI-compatible model as 'openai:MODEL' (its "
                "address and key come from DOCENT_CHAT_OPENAI_BASE_URL and "
                "DOCENT_OPENAI_API_KEY)."
            )
        if _import_ragas() is None:
            raise InvalidRequest(MISSING)
        from langchain_openai import ChatOpenAI
        from ragas.embeddings import BaseRagasEmbeddings
        from ragas.llms import LangchainLLMWrapper

        from app.embeddings import build_embedder

        embedder = build_embedder(settings)

        class DocentEmbeddings(BaseRagasEmbeddings):  # type: ignore[misc]
            def embed_query(self, text: str) -> list[float]:
                return embedder.embed_query(text)

            def embed_documents(self, texts: list[str]) -> list[list[float]]:
                return embedder.embed_documents(texts)

            async def aembed_query(self, text: str) -> list[float]:
                return await asyncio.to_thread(embedder.embed_query, text)

            async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
                return await asyncio.to_thread(embedder.embed_documents, texts)

        chat = ChatOpenAI(
            model=model.strip(),
            api_key=settings.openai_api_key or "unset",
            base_url=settings.chat_openai_base_url or settings.openai_base_url,
            max_retries=0,
            timeout=60,
            temperature=0,
        )
        return cls(LangchainLLMWrapper(chat), DocentEmbeddings(), spec)


def score(results: list[QuestionResult], judge: Judge | None = None) -> list[str]:
    """Adds ragas's measures to each answered result's ``extra``; notes for the reader."""
    if _import_ragas() is None:
        return [MISSING]
    answered = [r for r in results if r.text and not r.declined and r.outcome != "error"]
    if not answered:
        return []
    return asyncio.run(_score(answered, judge))


async def _score(results: list[QuestionResult], judge: Judge | None) -> list[str]:
    from ragas import SingleTurnSample
    from ragas.metrics import (
        Faithfulness,
        NonLLMContextPrecisionWithReference,
        NonLLMContextRecall,
        NonLLMStringSimilarity,
        ResponseRelevancy,
        RougeScore,
    )
    from ragas.metrics._string import DistanceMeasure

    precision = NonLLMContextPrecisionWithReference()
    recall = NonLLMContextRecall()
    similarity = NonLLMStringSimilarity(distance_measure=DistanceMeasure.LEVENSHTEIN)
    rouge = RougeScore(rouge_type="rougeL", mode="fmeasure")
    judged: list[tuple[str, Any]] = []
    if judge is not None:
        judged = [
            ("ragas_faithfulness", Faithfulness(llm=judge.llm)),
            (
                "ragas_answer_relevancy",
                ResponseRelevancy(llm=judge.llm, embeddings=judge.embeddings),
            ),
        ]
    failures = 0
    gate = asyncio.Semaphore(JUDGE_CONCURRENCY)

    async def one(r: QuestionResult) -> None:
        nonlocal failures
        sample = SingleTurnSample(
            user_input=r.question,
            response=r.text,
            retrieved_contexts=r.contexts or [""],
            reference=r.reference or None,
            reference_contexts=r.reference_contexts or None,
        )
        if r.reference_contexts and r.contexts:
            r.extra["ragas_context_precision"] = float(await precision.single_turn_ascore(sample))
            r.extra["ragas_context_recall"] = float(await recall.single_turn_ascore(sample))
        if r.reference:
            r.extra["ragas_string_similarity"] = float(await similarity.single_turn_ascore(sample))
            r.extra["ragas_rouge_l"] = float(await rouge.single_turn_ascore(sample))
        for name, metric in judged:
            async with gate:
                try:
                    r.extra[name] = float(await metric.single_turn_ascore(sample))
                except Exception as exc:  # a judge that fails is counted, not fatal
                    log.warning("ragas %s failed for %s: %s", name, r.id, exc)
                    r.extra[name] = None
                    failures += 1

    await asyncio.gather(*(one(r) for r in results))
    notes = []
    if judge is not None:
        notes.append(f"ragas judged {len(results)} answers with {judge.name}.")
        if failures:
            notes.append(f"the judge failed {failures} time(s); those answers have no score.")
    return notes
