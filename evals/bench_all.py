"""Every performance benchmark, one after another, into one results file.

    python -m evals.bench_all [--quick] [--only foundation,llamaindex,...]
                              [--out evals/results/all.json]

Steps (each runs as its own process, ``python -m evals.<module>``, so one's memory and threads
do not weigh on the next; its own JSON is kept whole under ``steps.<name>.results``):

  foundation   ingestion against the embedding-only floor; hybrid search at 10k and 100k
               points on Qdrant Edge, qdrant-client's local mode and a numpy floor; SciFact
               retrieval quality; resident memory of model plus index (evals.bench_foundation)
  llamaindex   the same corpus through LlamaIndex's default pipeline (VectorStoreIndex on
               qdrant-client in-process) against Docent's, for ingestion and for search at
               10k and 100k chunks, beside the numpy floor (evals.bench_llamaindex)
  answer_0     added time to first byte over a fake upstream answering at once (0 ms to its
               first token), at 1 and 50 streams (evals.bench_answer)
  answer_480   the same with 480 ms to the upstream's first token
  streams      25 to 400 concurrent streams through Docent against a bare ASGI relay doing the
               same streaming; cache hit against miss; resident memory (evals.bench_streams)
  relay        CPU time per relayed token, layer by layer (evals.bench_relay)

At the end a table of the headline figures and the ratios measured side by side within each
step is printed and stored under ``summary``. ``--quick`` runs every step at a smaller size
(about 20 minutes on a 2-core machine instead of about an hour); the figures then say so.
A step that fails is recorded with its exit code and the rest still run; the exit code is 1
if any step failed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "evals" / "results" / "all.json"

Row = tuple[str, str, str]


def plan(quick: bool) -> dict[str, list[str]]:
    """Each step's module and arguments (``--out`` is added)."""
    seconds = "15" if quick else "40"
    answer = ["--streams", "1,50", "--embedder", "minilm", "--seconds", seconds]
    return {
        "foundation": ["evals.bench_foundation", *(["--quick"] if quick else [])],
        "llamaindex": ["evals.bench_llamaindex", *(["--quick"] if quick else [])],
        "answer_0": ["evals.bench_answer", *answer, "--ttft-ms", "0"],
        "answer_480": ["evals.bench_answer", *answer, "--ttft-ms", "480"],
        "streams": [
            "evals.bench_streams",
            "--streams",
            "25,100,400" if quick else "25,50,100,200,400",
            "--seconds",
            "10" if quick else "20",
        ],
        "relay": ["evals.bench_relay", "--rounds", "1" if quick else "3"],
    }


def run_step(name: str, argv: list[str], out: Path, timeout_s: float) -> dict[str, Any]:
    print(f"\n=== {name}: python -m {' '.join(argv)}", flush=True)
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", *argv, "--out", str(out)], cwd=ROOT, timeout=timeout_s
        )
        code = proc.returncode
    except subprocess.TimeoutExpired:
        code = -1
        print(f"=== {name}: stopped after {timeout_s:.0f} s", flush=True)
    step: dict[str, Any] = {
        "command": "python -m " + " ".join(argv),
        "exit": code,
        "seconds": round(time.monotonic() - started, 1),
    }
    if code == 0 and out.is_file():
        step["results"] = json.loads(out.read_text())
    return step


# ------------------------------------------------------------------------- the summary table


def _f(value: Any, fmt: str = ".1f", unit: str = "") -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    return f"{value:{fmt}}{unit}"


def answer_rows(name: str, res: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    ttft = res.get("upstream_ttft_ms")
    for n, r in res.get("by_streams", {}).items():
        rows.append(
            (
                f"added time to first byte, upstream {ttft} ms, {n} stream(s)",
                f"median {_f(r['added_median_ms'])} / p99 {_f(r['added_p99_ms'])} ms "
                f"(per stream {_f(r['added_per_stream_median_ms'])} / "
                f"{_f(r['added_per_stream_p99_ms'])})",
                f"server CPU {_f(r['server_cpu_ms_per_answer'])} ms an answer, "
                f"failed {r['failed_or_hung_streams']}",
            )
        )
    return rows


def streams_rows(res: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for n, r in res.get("by_streams", {}).items():
        d, b, x = r["docent"], r["relay"], r["docent_over_relay"]
        rows.append(
            (
                f"{n} streams: Docent / bare ASGI relay, TTFB median",
                f"{_f(d['ttfb_median_ms'])} / {_f(b['ttfb_median_ms'])} ms "
                f"({_f(x['ttfb_median'], '.2f')}x)",
                f"p99 {_f(d['ttfb_p99_ms'])} / {_f(b['ttfb_p99_ms'])} ms "
                f"({_f(x['ttfb_p99'], '.2f')}x)",
            )
        )
        saturated = max(d["harness_cpu_share"], b["harness_cpu_share"]) >= 0.9
        rows.append(
            (
                f"{n} streams: answers/s, server CPU an answer",
                f"{_f(d['answers_per_s'], '.2f')} / {_f(b['answers_per_s'], '.2f')} "
                f"({_f(x['answers_per_s'], '.2f')}x); "
                f"{_f(d['server_cpu_ms_per_answer'])} / {_f(b['server_cpu_ms_per_answer'])} ms "
                f"({_f(x['server_cpu_per_answer'], '.2f')}x)",
                f"failed {d['failed']} / {b['failed']}"
                + ("; the harness CPU was saturated" if saturated else ""),
            )
        )
    c = res.get("cache")
    if c:
        rows.append(
            (
                f"cache hit / miss, {c['questions']} questions asked twice",
                f"TTFB {_f(c.get('hit_ttfb_median_ms'))} / {_f(c.get('miss_ttfb_median_ms'))} "
                f"ms, done {_f(c.get('hit_done_median_ms'))} / "
                f"{_f(c.get('miss_done_median_ms'))} ms",
                f"hits {c['hits_second_time']} of {c['questions']}",
            )
        )
    for when in ("memory_at_start", "memory_at_end"):
        m = res.get(when)
        if m:
            rows.append(
                (
                    f"resident memory, {when.removeprefix('memory_').replace('_', ' ')}: "
                    "Docent / relay",
                    f"{_f(m['docent']['rss_mb'], '.0f')} / {_f(m['relay']['rss_mb'], '.0f')} MB",
                    f"peak {_f(m['docent']['peak_rss_mb'], '.0f')} / "
                    f"{_f(m['relay']['peak_rss_mb'], '.0f')} MB",
                )
            )
    return rows


def relay_rows(res: dict[str, Any]) -> list[Row]:
    med = res.get("cpu_us_per_token_median", {})
    if not med:
        return []
    return [
        (
            f"CPU per relayed token, {res.get('streams')} streams",
            ", ".join(f"{k} {v:.0f}" for k, v in med.items()) + " us",
            f"SSE / bare ASGI {_f(med['sse_out'] / med['bare_out'], '.2f')}x"
            if med.get("bare_out")
            else "",
        )
    ]


def foundation_rows(res: dict[str, Any]) -> list[Row]:
    from evals.bench_foundation import summary_rows

    return summary_rows(res)


def module_rows(module: str) -> Callable[[dict[str, Any]], list[Row]]:
    def rows(res: dict[str, Any]) -> list[Row]:
        found = getattr(importlib.import_module(module), "summary_rows", None)
        # (label, figure) or (label, figure, note)
        return [(*row, "")[:3] for row in found(res)] if found else []

    return rows


SUMMARIES: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "foundation": foundation_rows,
    "llamaindex": module_rows("evals.bench_llamaindex"),
    "answer_0": lambda r: answer_rows("answer_0", r),
    "answer_480": lambda r: answer_rows("answer_480", r),
    "streams": streams_rows,
    "relay": relay_rows,
}


def summarise(steps: dict[str, dict[str, Any]]) -> list[Row]:
    rows: list[Row] = []
    for name, step in steps.items():
        if "results" not in step:
            rows.append((name, f"FAILED (exit {step['exit']})", step["command"]))
            continue
        try:
            rows += SUMMARIES[name](step["results"])
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            rows.append((name, f"no summary: {type(exc).__name__}: {exc}", ""))
    return rows


def print_rows(rows: list[Row]) -> None:
    w0 = max((len(r[0]) for r in rows), default=10)
    w1 = max((len(r[1]) for r in rows), default=10)
    for a, b, c in rows:
        print(f"{a:<{w0}}  {b:<{w1}}  {c}".rstrip())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="every step at a smaller size")
    p.add_argument("--only", default="", help="comma-separated step names (default: all)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument(
        "--step-timeout", type=float, default=3600.0, help="seconds before a step is stopped"
    )
    args = p.parse_args(argv)

    steps_plan = plan(args.quick)
    wanted = [s for s in args.only.split(",") if s] or list(steps_plan)
    unknown = sorted(set(wanted) - set(steps_plan))
    if unknown:
        p.error(f"unknown step(s) {', '.join(unknown)}; the steps are {', '.join(steps_plan)}")
    started = datetime.now(UTC)
    results: dict[str, Any] = {
        "command": " ".join(["python -m evals.bench_all", *(argv or sys.argv[1:])]),
        "started": started.isoformat(timespec="seconds"),
        "quick": args.quick,
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip(),
        "machine": {
            "cpus": os.cpu_count(),
            "load_at_start": os.getloadavg(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "steps": {},
    }
    with tempfile.TemporaryDirectory(prefix="docent-bench-all-") as tmp:
        for name in wanted:
            step = run_step(name, steps_plan[name], Path(tmp) / f"{name}.json", args.step_timeout)
            results["steps"][name] = step
            # Written after every step: a long run stopped half-way keeps what it measured.
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2) + "\n")
    rows = summarise(results["steps"])
    results["summary"] = [list(r) for r in rows]
    results["minutes"] = round((datetime.now(UTC) - started).total_seconds() / 60, 1)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n=== summary ({results['minutes']} min, commit {results['commit']})")
    print_rows(rows)
    print(f"results written to {args.out}")
    failed = [n for n, s in results["steps"].items() if s["exit"] != 0]
    if failed:
        print(f"failed steps: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
