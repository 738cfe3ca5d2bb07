"""Per-sentence grounding (app/answer/grounding.py): the verdicts on quoted, altered, swapped,
negated, reversed, invented and mis-cited sentences, and the sentence splitter's spans. The hash
embedder makes these fast and exact; two slow tests use the real model on paraphrases."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from app.answer.grounding import (
    NOT_A_CLAIM,
    SentenceGrounding,
    Verdict,
    all_grounded,
    ground_sentences,
    grounding_pass_rate,
    split_answer,
)
from app.embeddings import Embedder, HashEmbedder
from app.models import ChunkHit
from app.providers import GenerationRequest
from app.providers.offline import NO_ANSWER, NO_SOURCES, OfflineProvider

RETURNS = (
    "Returns policy\n\n"
    "Customers may return unopened items within 30 days of delivery. Refunds are issued\n"
    "within 14 days of receiving the return. Opened items are not refundable.\n\n"
    "- The warehouse in Leeds ships orders every Monday."
)
SHIPPING = (
    "Shipping is free for orders over 50 pounds. Express delivery costs 7.50 pounds and "
    "arrives the next working day. Complaints about late parcels fell sharply after the "
    "courier was changed in 2021."
)


def hit(n: int, text: str, title: str = "Customer handbook") -> ChunkHit:
    return ChunkHit(
        chunk_id=f"chunk-{n}",
        document_id=f"doc-{n}",
        title=title,
        collection="default",
        version=1,
        page=None,
        start=0,
        end=len(text),
        text=text,
        score=1.0,
    )


SOURCES = [hit(1, RETURNS), hit(2, SHIPPING)]


def ground(answer: str, sources: list[ChunkHit] = SOURCES) -> list[SentenceGrounding]:
    return ground_sentences(answer, sources, HashEmbedder())


def only(answer: str, sources: list[ChunkHit] = SOURCES) -> SentenceGrounding:
    [result] = ground(answer, sources)
    return result


# --- splitting -------------------------------------------------------------------------------


def test_markers_stay_with_the_sentence_they_follow() -> None:
    answer = "Refunds take 14 days [1]. Shipping is free [2]."
    assert [t for _, _, t in split_answer(answer)] == [
        "Refunds take 14 days [1].",
        "Shipping is free [2].",
    ]
    answer = "Refunds take 14 days. [1][2] Shipping is free. [2]"
    assert [t for _, _, t in split_answer(answer)] == [
        "Refunds take 14 days. [1][2]",
        "Shipping is free. [2]",
    ]


@pytest.mark.parametrize(
    ("answer", "count"),
    [
        ("Refunds take 14 days [1]. Shipping is free [2].", 2),
        ("Dr. Smith met the U.S. team at 3.30 p.m. on Monday. It went well [2].", 2),
        ("Costs rose by 2.5% (see Fig. 3) in 2021 [1]! Did they? Yes.", 3),
        ("The results:\n\n- Leeds ships on Mondays [1]\n- Express costs 7.50 pounds [2]\n", 3),
        ("## Refunds\nRefunds are issued\nwithin 14 days [1]. Opened items are not [1].", 3),
        ("  Trailing spaces and a sentence without a full stop [1]  ", 1),
        ("", 0),
    ],
)
def test_split_answer_spans_are_exact_slices(answer: str, count: int) -> None:
    spans = split_answer(answer)
    assert len(spans) == count
    previous_end = 0
    for start, end, text in spans:
        assert answer[start:end] == text
        assert text == text.strip() and text
        assert start >= previous_end
        previous_end = end


def test_list_items_are_sentences_without_their_bullets() -> None:
    answer = "- Leeds ships on Mondays [1]\n- Express costs 7.50 pounds [2]"
    assert [t for _, _, t in split_answer(answer)] == [
        "Leeds ships on Mondays [1]",
        "Express costs 7.50 pounds [2]",
    ]


# --- verdicts --------------------------------------------------------------------------------


def test_a_quoted_sentence_is_supported_by_its_source_chunk_and_span() -> None:
    quoted = "Express delivery costs 7.50 pounds and arrives the next working day."
    result = only(quoted[:-1] + " [2].")
    assert result.verdict == "supported"
    assert result.reasons == []
    assert result.score > 0.95
    assert (result.source, result.chunk_id) == (2, "chunk-2")
    assert result.span is not None
    assert SHIPPING[result.span[0] : result.span[1]] == quoted


def test_a_quote_across_a_line_break_finds_its_span() -> None:
    result = only("Refunds are issued within 14 days of receiving the return [1].")
    assert result.verdict == "supported"
    assert result.span is not None
    passage = RETURNS[result.span[0] : result.span[1]]
    assert passage == "Refunds are issued\nwithin 14 days of receiving the return."


def test_an_altered_number_is_unsupported_and_named() -> None:
    result = only("Refunds are issued within 21 days of receiving the return [1].")
    assert result.verdict == "unsupported"
    assert "number 21 not in the source" in result.reasons
    assert result.source == 1  # the passage it contradicts, for the reviewer


def test_numbers_are_compared_by_value() -> None:
    assert (
        only("Express delivery costs 7.5 pounds and arrives the next working day [2].").verdict
        == "supported"
    )
    changed = only("Express delivery costs 7.95 pounds and arrives the next working day [2].")
    assert changed.verdict == "unsupported"
    assert "number 7.95 not in the source" in changed.reasons


def test_a_swapped_name_is_unsupported_and_named() -> None:
    result = only("The warehouse in Bristol ships orders every Monday [1].")
    assert result.verdict == "unsupported"
    assert result.reasons == ["name Bristol not in the source"]


def test_a_name_from_the_source_title_is_accepted() -> None:
    sources = [hit(1, "The warehouse ships orders every Monday.", title="Leeds warehouse")]
    assert only("The Leeds warehouse ships orders every Monday [1].", sources).verdict == (
        "supported"
    )


@pytest.mark.parametrize(
    "answer",
    [
        "Opened items are refundable [1].",  # the source says they are not
        "Customers may not return unopened items within 30 days of delivery [1].",
        "Customers can never return unopened items within 30 days of delivery [1].",
    ],
)
def test_a_flipped_negation_is_unsupported(answer: str) -> None:
    result = only(answer)
    assert result.verdict == "unsupported"
    assert "negation differs" in result.reasons


def test_a_reversed_direction_is_unsupported() -> None:
    result = only(
        "Complaints about late parcels rose sharply after the courier was changed in 2021 [2]."
    )
    assert result.verdict == "unsupported"
    assert "direction differs (rose vs fell)" in result.reasons


def test_an_invented_claim_has_no_similar_passage() -> None:
    result = only("The company was founded by three astronauts on the moon [1].")
    assert result.verdict == "unsupported"
    assert result.reasons == ["no similar passage"]
    assert (result.source, result.chunk_id, result.span) == (None, None, None)


def test_the_right_content_under_the_wrong_marker_is_partial() -> None:
    result = only("Express delivery costs 7.50 pounds and arrives the next working day [1].")
    assert result.verdict == "partial"
    assert (result.source, result.chunk_id) == (2, "chunk-2")
    assert result.reasons == ["cites [1], but source [2] supports it"]


def test_a_marker_beyond_the_sources_is_reported() -> None:
    result = only("Shipping is free for orders over 50 pounds [7].")
    assert result.verdict == "partial"
    assert result.source == 2
    assert "cites [7], which is not a source" in result.reasons


def test_a_sentence_without_markers_is_checked_against_every_source() -> None:
    result = only("Shipping is free for orders over 50 pounds.")
    assert (result.verdict, result.source) == ("supported", 2)


def test_each_sentence_gets_its_own_verdict_in_order() -> None:
    answer = (
        "Refunds are issued within 14 days of receiving the return [1]. "
        "Opened items are refundable [1]. "
        "Shipping is free for orders over 50 pounds [2]."
    )
    results = ground(answer)
    assert [r.index for r in results] == [0, 1, 2]
    assert [r.verdict for r in results] == ["supported", "unsupported", "supported"]
    assert [answer[r.start : r.end] for r in results] == [r.text for r in results]
    assert grounding_pass_rate(results) == pytest.approx(2 / 3)
    assert not all_grounded(results, allow_partial=True)


@pytest.mark.parametrize(
    "answer",
    [NO_ANSWER, NO_SOURCES, "In short:", "Yes [1].", "## Refund Policy", "Need more help?"],
)
def test_refusals_and_fragments_are_not_claims(answer: str) -> None:
    results = ground(answer)
    assert results
    assert all(r.verdict == "supported" and not r.claim for r in results)
    assert all(r.reasons == [NOT_A_CLAIM] for r in results)
    assert grounding_pass_rate(results) == 1.0
    assert all_grounded(results, allow_partial=False)


def test_the_offline_generators_answers_are_grounded() -> None:
    embedder = HashEmbedder()
    request = GenerationRequest(question="How long do refunds take?", sources=SOURCES)
    answer = OfflineProvider(embedder, min_similarity=0.1).compose(request)
    results = ground_sentences(answer, SOURCES, embedder)
    assert results
    assert all(r.verdict == "supported" for r in results), results


class CountingEmbedder:
    def __init__(self) -> None:
        self.inner = HashEmbedder()
        self.name = self.inner.name
        self.dimensions = self.inner.dimensions
        self.calls: list[int] = []

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(len(texts))
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        raise AssertionError("grounding embeds in one batch")

    def tokenizer(self) -> Callable[[str], list[Any]]:
        return self.inner.tokenizer()


def test_an_answer_is_embedded_in_one_batch() -> None:
    embedder = CountingEmbedder()
    answer = "Refunds take 14 days [1]. Shipping is free [2]. Leeds ships on Mondays [1]."
    ground_sentences(answer, SOURCES, embedder)
    assert len(embedder.calls) == 1


def grounding(verdict: Verdict, *, claim: bool = True) -> SentenceGrounding:
    return SentenceGrounding(0, "x", 0, 1, verdict, 0.5, None, None, None, [], claim=claim)


def test_pass_rate_and_all_grounded() -> None:
    mixed = [grounding("supported"), grounding("partial"), grounding("supported", claim=False)]
    assert grounding_pass_rate(mixed) == 0.5
    assert all_grounded(mixed, allow_partial=True)
    assert not all_grounded(mixed, allow_partial=False)
    assert not all_grounded([grounding("unsupported")], allow_partial=True)
    assert grounding_pass_rate([]) == 1.0


def test_the_event_payload_is_json() -> None:
    [result] = ground("Shipping is free for orders over 50 pounds [2].")
    event = result.to_event()
    assert json.loads(json.dumps(event)) == event
    assert event["verdict"] == "supported"
    assert event["chunk_id"] == "chunk-2"
    assert event["span"] == list(result.span or ())


# --- the real model --------------------------------------------------------------------------

ABSTRACT = (
    "Preterm infants at term showed higher mean diffusion coefficients in the central white "
    "matter and lower relative anisotropy in both areas compared with full-term infants. "
    "In the central white matter the mean apparent diffusion coefficient at 28 wk was high, "
    "1.8 microm2/ms, and decreased toward term to 1.2 microm2/ms. These data indicate that "
    "diffusion tensor MRI provides insight into white matter development in living infants."
)


@pytest.mark.slow
def test_real_model_supports_paraphrases(minilm: Embedder) -> None:
    answer = (
        "Compared with full-term babies, preterm infants examined at term had higher diffusion "
        "coefficients and lower anisotropy [1]. The apparent diffusion coefficient in central "
        "white matter fell from 1.8 microm2/ms at 28 weeks to 1.2 microm2/ms at term [1]. "
        "Diffusion tensor MRI gives insight into how white matter develops in living infants [1]."
    )
    results = ground_sentences(answer, [hit(1, ABSTRACT)], minilm)
    assert [r.verdict for r in results] == ["supported"] * 3, results


@pytest.mark.slow
def test_real_model_flags_planted_errors(minilm: Embedder) -> None:
    answer = (
        "Preterm infants at term showed lower mean diffusion coefficients in the central white "
        "matter [1]. The apparent diffusion coefficient at 28 wk was 2.3 microm2/ms [1]. "
        "These data indicate that diffusion tensor MRI provides no insight into white matter "
        "development [1]. Preterm birth causes permanent blindness in most infants [1]."
    )
    results = ground_sentences(answer, [hit(1, ABSTRACT)], minilm)
    assert [r.verdict for r in results] == ["unsupported"] * 4, results
    reasons = [r.reasons for r in results]
    assert "direction differs (lower vs higher)" in reasons[0]
    assert "number 2.3 not in the source" in reasons[1]
    assert "negation differs" in reasons[2]
    assert reasons[3] == ["no similar passage"]


def test_written_out_numbers_in_a_claim_must_match_the_source() -> None:
    from app.answer.grounding import ground_sentences
    from app.embeddings import HashEmbedder
    from app.models import ChunkHit

    source = ChunkHit(
        chunk_id="c",
        document_id="d",
        title="leave",
        collection="default",
        version=1,
        page=None,
        start=0,
        end=60,
        text="Parental leave lasts sixteen weeks at full pay.",
        score=1.0,
    )
    wrong = ground_sentences(
        "Parental leave lasts forty weeks at full pay [1].", [source], HashEmbedder()
    )
    assert wrong[0].verdict == "unsupported" and "forty" in " ".join(wrong[0].reasons)
    right = ground_sentences(
        "Parental leave lasts 16 weeks at full pay [1].", [source], HashEmbedder()
    )
    assert right[0].verdict == "supported"
