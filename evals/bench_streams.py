"""Concurrent streams through Docent against a bare ASGI relay, cache hits against misses, and
resident memory.

    python -m evals.bench_streams [--streams 25,50,100,200,400] [--seconds 20] [--ttft-ms 480]
                                  [--embedder minilm] [--cache-questions 16]
                                  [--out evals/results/streams.json]

A fake OpenAI-compatible upstream (tests/fakes/llm_server.py, in its own process) answers every
request after ``--ttft-ms`` with about 150 words at 50 words a second, as in
``evals.bench_answer``. Two servers stream from it, one at a time, under the same uvicorn:

- Docent (``docent serve``, MiniLM, its own documentation indexed): POST /api/chat, the whole
  answer path (retrieval, risk, prompt, fallback chain, SSE, grounding, audit row), cache off;
- a bare relay: a raw ASGI callable that reads the question, opens the same streaming chat
  completion through the official OpenAI SDK over the same aiohttp transport Docent uses, and
  writes every text delta as an SSE ``delta`` event, then ``done``. Nothing else: the floor of
  relaying a model's stream in Python.

For every concurrency, N clients keep one question each in flight (asking again when the answer
ends) for ``--seconds`` against the relay, then against Docent (the order alternates between
concurrencies, so a drifting machine does not always favour one side). Reported per side: time
to first text (median, p99), answers a second, words delivered a second, the server's CPU time
per answer and share of its core, failed streams, and the ratio Docent / relay.

Then the cache: ``--cache-questions`` questions of Docent's golden set are asked one at a time
with the cache on (a miss: generated, validated, stored), then asked again (a hit), and time to
first text and to the ``done`` event are compared. Last, the resident memory (VmRSS now, VmHWM
the peak) of both servers and of the fake upstream.

Process layout on a 2-core machine: both servers are pinned to CPU 0; the fake upstream and
this process (the load) to CPU 1. The load's and the fake's CPU shares are reported: where CPU 1
is saturated (hundreds of streams of 50 words a second each), the harness, not the server,
limits the figures, and the row says so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from evals.bench_answer import (
    QUESTIONS,
    Conn,
    _free_port,
    cpu_seconds,
    docent_env,
    percentile,
    run,
    start_fake,
    start_server,
)
from evals.bench_relay import _cpu

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "evals" / "results" / "streams.json"
GOLDEN = ROOT / "evals" / "data" / "golden_docent.jsonl"

RELAY = """
import json, sys
import openai, uvicorn

client = openai.AsyncOpenAI(
    api_key="bench", base_url=sys.argv[2], max_retries=0, timeout=60.0,
    http_client=openai.DefaultAioHttpClient(timeout=60.0),
)

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await client.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    question = json.loads(body)["question"]
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream"),
                            (b"cache-control", b"no-cache")]})
    text = []
    # The raw event stream, each data line parsed once: the cheapest correct read through the
    # official SDK, as evals.bench_relay's sdk_read layer measures it.
    async with client.chat.completions.with_streaming_response.create(
        model="bench", stream=True, messages=[{"role": "user", "content": question}],
    ) as response:
        async for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            choices = json.loads(line[6:]).get("choices")
            piece = choices[0].get("delta", {}).get("content") if choices else None
            if piece:
                text.append(piece)
                data = json.dumps({"text": piece})
                await send({"type": "http.response.body",
                            "body": f"event: delta\\r\\ndata: {data}\\r\\n\\r\\n".encode(),
                            "more_body": True})
    data = json.dumps({"text": "".join(text)})
    await send({"type": "http.response.body",
                "body": f"event: done\\r\\ndata: {data}\\r\\n\\r\\n".encode(),
                "more_body": False})

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
            timeout_graceful_shutdown=5)
"""


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak) of a process, in kB, from Linux /proc."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def _mb(kb: dict[str, int]) -> dict[str, float]:
    return {
        "rss_mb": round(kb.get("VmRSS", 0) / 1024, 1),
        "peak_rss_mb": round(kb.get("VmHWM", 0) / 1024, 1),
    }


def start_relay(upstream: str, pin: bool, work: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    cmd = [sys.executable, "-c", RELAY, str(port), upstream]
    if pin:
        cmd = ["taskset", "-c", "0", *cmd]
    log = (work / "relay.log").open("wb")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, f"http://127.0.0.1:{port}"
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise SystemExit(
                    "the relay did not start: " + (work / "relay.log").read_text()[-2000:]
                ) from None
            time.sleep(0.2)


class Stream:
    """One answer as the client saw it."""

    __slots__ = ("done_ms", "first_ms", "words")

    def __init__(self, first_ms: float, done_ms: float, words: int) -> None:
        self.first_ms, self.done_ms, self.words = first_ms, done_ms, words


async def ask(conn: Conn, path: str, body: dict[str, Any]) -> tuple[Stream, bytes]:
    sent, first, whole = await conn.post(path, body, {}, rb"event: delta")
    done = time.monotonic()
    if b"event: done" not in whole:
        if b"event: error" in whole:
            raise RuntimeError("the stream ended with an error event")
        raise RuntimeError("the stream ended without a done event")
    stream = Stream((first - sent) * 1000, (done - sent) * 1000, whole.count(b"event: delta"))
    return stream, whole


async def steady(
    url: str, path: str, streams: int, seconds: float, ramp_s: float, body: dict[str, Any]
) -> tuple[list[Stream], list[str], float]:
    """N clients, each asking again as soon as its answer ends, for ``seconds``; their start
    times spread over ``ramp_s`` (about one answer) so questions arrive at the steady rate.
    Returns the finished streams, the failures and the measured wall time (from the first
    client's start to the last answer's end)."""
    done: list[Stream] = []
    failures: list[str] = []
    rng = random.Random(streams)
    started = time.monotonic()
    end = started + seconds

    async def user(i: int) -> None:
        conn = Conn(url)
        await asyncio.sleep(rng.uniform(0, ramp_s))
        n = i
        while time.monotonic() < end:
            try:
                stream, _ = await ask(conn, path, {**body, "question": QUESTIONS[n % 8]})
                done.append(stream)
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
                conn.close()
                await asyncio.sleep(0.05)
            n += 1
        conn.close()

    await asyncio.gather(*(user(i) for i in range(streams)))
    return done, failures, time.monotonic() - started


def side_row(
    streams: list[Stream],
    failures: list[str],
    wall: float,
    server_cpu: float,
    fake_cpu: float,
    load_cpu: float,
) -> dict[str, Any]:
    first = [s.first_ms for s in streams]
    answers = len(streams)
    return {
        "answers": answers,
        "failed": len(failures),
        "first_failure": failures[0] if failures else None,
        "ttfb_median_ms": round(statistics.median(first), 1) if first else None,
        "ttfb_p99_ms": round(percentile(first, 0.99), 1) if first else None,
        "answer_median_s": round(statistics.median(s.done_ms for s in streams) / 1000, 2)
        if streams
        else None,
        "answers_per_s": round(answers / wall, 2),
        "words_per_s": round(sum(s.words for s in streams) / wall, 1),
        "server_cpu_ms_per_answer": round(server_cpu * 1000 / max(answers, 1), 1),
        "server_cpu_share": round(server_cpu / wall, 2),
        # CPU 1 carries the fake upstream and this load: near 1.0, the harness is the limit.
        "harness_cpu_share": round((fake_cpu + load_cpu) / wall, 2),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def sweep(
    counts: list[int],
    seconds: float,
    ramp_s: float,
    docent: tuple[subprocess.Popen[bytes], str],
    relay: tuple[subprocess.Popen[bytes], str],
    fake: subprocess.Popen[str],
) -> dict[str, Any]:
    sides = {
        "relay": (relay, "/", {}),
        "docent": (docent, "/api/chat", {"use_cache": False}),
    }
    # Warm-up: connections, imports, the model's first query.
    for (_, url), path, body in sides.values():
        run(steady(url, path, 2, 0.1, 0.0, body))
    rows: dict[str, Any] = {}
    for k, n in enumerate(counts):
        order = ["relay", "docent"] if k % 2 == 0 else ["docent", "relay"]
        row: dict[str, Any] = {"order": order}
        for name in order:
            (proc, url), path, body = sides[name]
            print(f"{n} streams through {name} for {seconds:.0f} s ...", flush=True)
            server0, fake0, load0 = cpu_seconds(proc.pid), cpu_seconds(fake.pid), _cpu()
            streams, failures, wall = run(steady(url, path, n, seconds, ramp_s, body))
            row[name] = side_row(
                streams,
                failures,
                wall,
                cpu_seconds(proc.pid) - server0,
                cpu_seconds(fake.pid) - fake0,
                _cpu() - load0,
            )
            row[name].update(_mb(memory_kb(proc.pid)))
            r = row[name]
            print(
                f"  TTFB median {r['ttfb_median_ms']} p99 {r['ttfb_p99_ms']} ms | "
                f"{r['answers_per_s']} answers/s, {r['words_per_s']} words/s | server CPU "
                f"{r['server_cpu_ms_per_answer']} ms an answer, {r['server_cpu_share']:.0%} of "
                f"its core | harness {r['harness_cpu_share']:.0%} of CPU 1 | failed "
                f"{r['failed']} | RSS {r['rss_mb']} MB",
                flush=True,
            )
        d, b = row["docent"], row["relay"]
        row["docent_over_relay"] = {
            "ttfb_median": ratio(d["ttfb_median_ms"], b["ttfb_median_ms"]),
            "ttfb_p99": ratio(d["ttfb_p99_ms"], b["ttfb_p99_ms"]),
            "answers_per_s": ratio(d["answers_per_s"], b["answers_per_s"]),
            "server_cpu_per_answer": ratio(
                d["server_cpu_ms_per_answer"], b["server_cpu_ms_per_answer"]
            ),
        }
        rows[str(n)] = row
    return rows


def golden_questions(n: int) -> list[str]:
    out = []
    for line in GOLDEN.read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        if item.get("kind") == "answerable" and item.get("risk") == "low":
            out.append(item["question"])
    return out[:n]


async def cache_round(url: str, questions: list[str]) -> dict[str, Any]:
    """Each question asked once (a miss, stored when validated), then each again (a hit)."""
    conn = Conn(url)
    marks: dict[str, list[tuple[Stream, str]]] = {"first": [], "again": []}
    try:
        for label in ("first", "again"):
            for q in questions:
                stream, whole = await ask(conn, "/api/chat", {"question": q, "use_cache": True})
                found = whole.split(b'"cache":', 1)
                state = found[1].lstrip()[1:].split(b'"', 1)[0].decode() if len(found) > 1 else ""
                marks[label].append((stream, state))
    finally:
        conn.close()
    miss = [s for s, state in marks["first"] if state == "miss"]
    hit = [s for s, state in marks["again"] if state == "hit"]
    out: dict[str, Any] = {
        "questions": len(questions),
        "misses_first_time": len(miss),
        "hits_second_time": len(hit),
    }
    for name, group in (("miss", miss), ("hit", hit)):
        if group:
            out[f"{name}_ttfb_median_ms"] = round(statistics.median(s.first_ms for s in group), 1)
            out[f"{name}_done_median_ms"] = round(statistics.median(s.done_ms for s in group), 1)
    if miss and hit:
        out["hit_over_miss_ttfb"] = ratio(out["hit_ttfb_median_ms"], out["miss_ttfb_median_ms"])
        out["hit_over_miss_done"] = ratio(out["hit_done_median_ms"], out["miss_done_median_ms"])
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--streams", default="25,50,100,200,400", help="comma-separated concurrencies")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each side's run")
    p.add_argument("--ttft-ms", type=int, default=480)
    p.add_argument("--pace", type=float, default=50.0, help="words a second after the first")
    p.add_argument("--answer-words", type=int, default=150)
    p.add_argument("--embedder", default="minilm", choices=("hash", "minilm"))
    p.add_argument("--cache-questions", type=int, default=16)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--no-pin", action="store_true")
    args = p.parse_args(argv)

    pin = not args.no_pin and shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    if pin:
        os.sched_setaffinity(0, {1})
    counts = [int(x) for x in args.streams.split(",") if x]
    work = Path(tempfile.mkdtemp(prefix="docent-bench-streams-"))
    results: dict[str, Any] = {
        "command": " ".join(["python -m evals.bench_streams", *(argv or sys.argv[1:])]),
        "machine": {
            "cpus": os.cpu_count(),
            "load": os.getloadavg(),
            "python": platform.python_version(),
            "pinning": "servers on CPU 0, upstream fake and load on CPU 1" if pin else "none",
        },
        "upstream_ttft_ms": args.ttft_ms,
        "upstream_pace_words_per_s": args.pace,
        "answer_words": args.answer_words,
        "embedder": args.embedder,
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip(),
    }
    fake = start_fake(args.ttft_ms, pin, args.pace or None, args.answer_words)
    upstream = fake.stdout.readline().strip() if fake.stdout else ""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        port = _free_port()
        docent = start_server(
            work / "data", port, docent_env(work, port, args.embedder, upstream), pin
        )
        procs.append(docent)
        relay = start_relay(upstream, pin, work)
        procs.append(relay[0])
        results["memory_at_start"] = {
            "docent": _mb(memory_kb(docent.pid)),
            "relay": _mb(memory_kb(relay[0].pid)),
        }
        print(f"resident memory at start: {results['memory_at_start']}", flush=True)
        ramp = args.ttft_ms / 1000 + (args.answer_words / args.pace if args.pace else 0)
        results["by_streams"] = sweep(
            counts,
            args.seconds,
            max(ramp, 1.0),
            (docent, f"http://127.0.0.1:{port}"),
            relay,
            fake,
        )
        if args.cache_questions:
            print(f"cache: {args.cache_questions} questions, asked twice ...", flush=True)
            results["cache"] = run(
                cache_round(f"http://127.0.0.1:{port}", golden_questions(args.cache_questions))
            )
            print(f"  {results['cache']}", flush=True)
        results["memory_at_end"] = {
            "docent": _mb(memory_kb(docent.pid)),
            "relay": _mb(memory_kb(relay[0].pid)),
            "fake_upstream": _mb(memory_kb(fake.pid)),
        }
        print(f"resident memory at the end: {results['memory_at_end']}", flush=True)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        fake.kill()
        shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results written to {args.out}")
    return results


if __name__ == "__main__":
    main()
