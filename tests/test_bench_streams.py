"""evals.bench_streams and evals.bench_all's summary, run small: real servers, real streams.

The benchmark's figures are not asserted (timing belongs to the benchmark, not to tests); what
is asserted is that it measures what it says: both sides really streamed answers, the cache
round really missed then hit, the memory figures come from live processes, and the summary
table is built from the results file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evals import bench_all, bench_streams

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_streams_bench_measures_both_sides_the_cache_and_memory(tmp_path: Path) -> None:
    out = tmp_path / "streams.json"
    results = bench_streams.main(
        [
            "--streams",
            "2,4",
            "--seconds",
            "2",
            "--ttft-ms",
            "20",
            "--answer-words",
            "20",
            "--pace",
            "200",
            "--embedder",
            "hash",
            "--cache-questions",
            "3",
            "--no-pin",
            "--out",
            str(out),
        ]
    )
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    assert list(results["by_streams"]) == ["2", "4"]
    for n, row in results["by_streams"].items():
        assert row["order"] == (["relay", "docent"] if n == "2" else ["docent", "relay"])
        for side in ("docent", "relay"):
            r = row[side]
            assert r["failed"] == 0, r["first_failure"]
            assert r["answers"] >= int(n)  # every client finished at least one answer
            # about 20 words an answer, each its own delta event
            assert r["words_per_s"] > 0 and r["answers_per_s"] > 0
            assert 20 <= r["ttfb_median_ms"] <= r["ttfb_p99_ms"]  # the upstream's 20 ms first
            assert r["server_cpu_ms_per_answer"] > 0
            assert r["rss_mb"] > 10 and r["peak_rss_mb"] >= r["rss_mb"]
        assert set(row["docent_over_relay"]) == {
            "ttfb_median",
            "ttfb_p99",
            "answers_per_s",
            "server_cpu_per_answer",
        }
    cache = results["cache"]
    assert cache["questions"] == 3
    assert cache["misses_first_time"] == 3 and cache["hits_second_time"] == 3
    assert cache["hit_ttfb_median_ms"] < cache["miss_ttfb_median_ms"]
    # Docent holds a model and an index; the relay only the SDK.
    mem = results["memory_at_end"]
    assert mem["docent"]["rss_mb"] > mem["relay"]["rss_mb"] > 0

    rows = bench_all.summarise(
        {"streams": {"command": "python -m evals.bench_streams", "exit": 0, "results": results}}
    )
    labels = [r[0] for r in rows]
    assert "2 streams: Docent / bare ASGI relay, TTFB median" in labels
    assert "4 streams: answers/s, server CPU an answer" in labels
    assert any(label.startswith("cache hit / miss") for label in labels)
    assert any(label.startswith("resident memory, at end") for label in labels)


def test_bench_all_records_a_failed_step_and_runs_the_rest(tmp_path: Path) -> None:
    rows = bench_all.summarise(
        {
            "foundation": {"command": "python -m evals.bench_foundation", "exit": 2},
            "relay": {
                "command": "python -m evals.bench_relay",
                "exit": 0,
                "results": {
                    "streams": 50,
                    "cpu_us_per_token_median": {"sse_out": 51.0, "bare_out": 34.0},
                },
            },
        }
    )
    assert rows[0] == ("foundation", "FAILED (exit 2)", "python -m evals.bench_foundation")
    assert rows[1][2] == "SSE / bare ASGI 1.50x"


def test_bench_all_rejects_an_unknown_step(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        bench_all.main(["--only", "answer_0,nonsense"])
    assert caught.value.code == 2
    assert "unknown step(s) nonsense" in capsys.readouterr().err
