"""The measures of ``docent eval``, on cases worked out by hand."""

from __future__ import annotations

import math

import pytest

from app.evaluation import metrics as m
from app.evaluation.golden import Evidence, gold_chunks, holds, normalise
from app.evaluation.report import compare, headline_only


def test_hit_and_reciprocal_rank() -> None:
    ranked = ["a", "b", "c", "d"]
    assert m.hit_at(ranked, {"c"}, 2) == 0.0 and m.hit_at(ranked, {"c"}, 3) == 1.0
    assert m.reciprocal_rank(ranked, {"c", "d"}) == pytest.approx(1 / 3)
    assert m.reciprocal_rank(ranked, {"z"}) == 0.0
    assert m.reciprocal_rank(ranked, {"d"}, k=3) == 0.0


def test_ndcg_by_hand() -> None:
    # Relevant at ranks 2 and 4 of two relevant: (1/log2 3 + 1/log2 5) / (1 + 1/log2 3).
    expected = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert m.ndcg_at(["x", "a", "y", "b"], {"a", "b"}) == pytest.approx(expected)
    assert m.ndcg_at(["a", "b"], {"a", "b"}) == pytest.approx(1.0)
    assert m.ndcg_at(["a", "a", "b"], {"a", "b"}) < 1.0, "a repeated id counts once"
    assert m.ndcg_at(["x"], set()) == 0.0


def test_citation_precision_and_recall() -> None:
    assert m.citation_precision(["a", "b", "b"], {"a"}) == 0.5
    assert m.citation_precision([], {"a"}) is None
    # Two evidence items: the first shown by chunk a or b, the second by chunk c.
    evidence = [{"a", "b"}, {"c"}]
    assert m.citation_recall(["b"], evidence) == 0.5
    assert m.citation_recall(["b", "c", "z"], evidence) == 1.0
    assert m.citation_recall(["a"], []) is None


def test_mean_and_percentile() -> None:
    assert m.mean([1.0, None, 3.0]) == 2.0 and m.mean([None]) is None
    assert m.percentile([10.0, 20.0, 30.0, 40.0], 50) == 25.0
    assert m.percentile([5.0], 95) == 5.0 and m.percentile([], 50) is None


def test_quotes_are_found_in_chunks_made_from_markdown() -> None:
    assert normalise("**Default** `10`,\n  as  said") == "default 10 , as said"
    chunk = "Uploads larger than DOCENT_MAX_UPLOAD_MB are refused. Default 50 (megabytes)."
    assert holds(chunk, "larger than `DOCENT_MAX_UPLOAD_MB` are refused")
    # A quote cut by a chunk boundary: most of it is in this chunk.
    assert holds(chunk, "are refused. Default 50 (megabytes). Per file")
    assert not holds(chunk, "Downloads are never refused")
    chunks = [("c1", chunk), ("c2", "Something else entirely.")]
    assert gold_chunks(Evidence("f.md", "are refused"), chunks) == {"c1"}
    assert gold_chunks(Evidence("f.md"), chunks) == {"c1", "c2"}, "no quote: the whole file"


def test_the_gate_flags_only_drops_beyond_the_tolerance() -> None:
    baseline = {
        "docent": {"hit_at_5": 0.90, "citation_precision": 0.80},
        "cache": {"false_hit_rate": 0.0, "hit_rate": 0.20},
    }
    same = {
        "docent": {"hit_at_5": 0.885, "citation_precision": 0.80},  # -1.7%: within 2%
        "cache": {"false_hit_rate": 0.004, "hit_rate": 0.21},  # within the 0.005 floor
    }
    assert compare(same, baseline) == []
    worse = {
        "docent": {"hit_at_5": 0.87, "citation_precision": None},  # None: measured, failed
        "cache": {"false_hit_rate": 0.01, "hit_rate": 0.20},
    }
    flagged = {(r.set_name, r.metric) for r in compare(worse, baseline)}
    assert flagged == {
        ("docent", "hit_at_5"),
        ("docent", "citation_precision"),  # missing now counts as worse
        ("cache", "false_hit_rate"),  # lower is better
    }
    # Sets not run, and measures the baseline lacks, are not judged.
    assert compare({"scifact": {"ndcg_at_10": 0.1}}, baseline) == []
    assert headline_only({"cache": {"hit_rate": 0.2, "lookup_ms_p50": 3.0}}) == {
        "cache": {"hit_rate": 0.2}
    }


def test_a_question_that_failed_counts_as_an_error_and_a_miss() -> None:
    from app.evaluation.golden import GoldenQuestion
    from app.evaluation.report import summarise
    from app.evaluation.runner import QuestionResult, RunData, failed

    answerable = GoldenQuestion("a", "q?", "answerable", [Evidence("f.md", "words here")])
    unanswerable = GoldenQuestion("b", "r?", "unanswerable", [])
    found = QuestionResult("c", "s?", "answerable", "", None, hit_1=1.0, hit_3=1.0, hit_5=1.0,
                           hit_10=1.0, reciprocal_rank=1.0, ndcg_10=1.0)  # fmt: skip
    results = [found, failed(answerable, OSError("disk")), failed(unanswerable, OSError("x"))]
    run = RunData("docent", "test", 1, 1, 0.0, {}, results)
    summary = summarise(run)
    assert summary["errors"] == 2
    assert summary["hit_at_5"] == 0.5, "the failed answerable question is a miss"
    assert results[1].error == "OSError: disk"
