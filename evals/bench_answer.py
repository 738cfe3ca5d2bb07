"""Added time to first byte: what Docent's answer path costs on top of the model.

    python -m evals.bench_answer [--streams 1,50] [--ttft-ms 480] [--embedder hash]
                                 [--out evals/results/answer.json]

A fake OpenAI-compatible upstream (tests/fakes/llm_server.py, in its own process) answers
every request after ``--ttft-ms``. Docent runs as ``docent serve`` in a subprocess with
``DOCENT_CHAIN=openai:bench`` pointed at it, on a data directory holding Docent's own
documentation. Streams go side by side: straight to the upstream (the floor) and through
Docent's POST /api/chat (retrieval, risk, prompt, chain, SSE). ``--shape steady`` (default)
keeps N streams in flight, each client asking again when its answer ends and alternating
upstream and Docent; ``--shape burst`` sends waves of N to each at the same instant, the
worst case. Time to first byte is taken when the first text arrives: the first content chunk
from the upstream, the first ``delta``
event from Docent. Reported: medians and p99 of both, and the added time (Docent minus floor)
at the median and at p99. Low-risk questions, cache off (every answer is generated).

Process layout on a 2-core machine: the server is pinned to CPU 0, the fake upstream and this
process (the load) to CPU 1 when ``taskset`` is available; the pinning is reported. The
server's CPU time per answer is reported too: it bounds how many streams one core carries.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "evals" / "results" / "answer.json"
QUESTIONS = [
    "How do I upload a document?",
    "Which file types can Docent read?",
    "How do I search from the command line?",
    "Where does Docent keep its data?",
    "How do I ask a question with curl?",
    "What happens when the documents do not answer a question?",
    "How do I delete a document?",
    "Which settings choose the embedding model?",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(ms: list[float]) -> dict[str, float]:
    return {
        "n": len(ms),
        "median_ms": round(statistics.median(ms), 1) if ms else float("nan"),
        "p99_ms": round(percentile(ms, 0.99), 1),
        "max_ms": round(max(ms), 1) if ms else float("nan"),
    }


async def direct_ttfb(client: httpx.AsyncClient, base: str, question: str) -> float:
    started = time.perf_counter()
    body = {
        "model": "bench",
        "stream": True,
        "messages": [{"role": "user", "content": question}],
    }
    first: float | None = None
    async with client.stream("POST", f"{base}/chat/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if first is None and line.startswith("data:") and line.strip() != "data: [DONE]":
                choices = json.loads(line[5:]).get("choices") or [{}]
                if choices[0].get("delta", {}).get("content"):
                    first = time.perf_counter()
    if first is None:
        raise RuntimeError("the upstream sent no text")
    return (first - started) * 1000


async def docent_ttfb(client: httpx.AsyncClient, url: str, question: str) -> float:
    started = time.perf_counter()
    body = {"question": question, "use_cache": False}
    first: float | None = None
    terminal = False
    async with client.stream("POST", f"{url}/api/chat", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if first is None and line.startswith("event: delta"):
                first = time.perf_counter()
            if line.startswith(("event: done", "event: error")):
                terminal = True
    if first is None or not terminal:
        raise RuntimeError("Docent's stream ended without text or without a terminal event")
    return (first - started) * 1000


async def run_waves(
    url: str, upstream: str, streams: int, waves: int
) -> tuple[list[float], list[float], int]:
    # Clients must let idle connections go before the server does (uvicorn: 5 s), or a request
    # can race the server closing the connection it was sent on.
    limits = httpx.Limits(
        max_connections=streams * 2 + 4, max_keepalive_connections=streams * 2, keepalive_expiry=2.0
    )
    timeout = httpx.Timeout(60.0)
    direct: list[float] = []
    via: list[float] = []
    failures = 0
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        # Warm-up: connections, the model's first query, SQLite pages.
        await asyncio.gather(*(docent_ttfb(client, url, q) for q in QUESTIONS[:2]))
        for wave in range(waves):
            qs = [QUESTIONS[(wave + i) % len(QUESTIONS)] for i in range(streams)]
            for label, target in (("direct", direct), ("docent", via)):
                if label == "direct":
                    jobs = [direct_ttfb(client, upstream, q) for q in qs]
                else:
                    jobs = [docent_ttfb(client, url, q) for q in qs]
                results = await asyncio.gather(*jobs, return_exceptions=True)
                for res in results:
                    if isinstance(res, BaseException):
                        failures += 1
                    else:
                        target.append(res)
    return direct, via, failures


async def run_steady(
    url: str, upstream: str, streams: int, seconds: float
) -> tuple[list[float], list[float], int]:
    """N streams always in flight: each of N clients asks again as soon as its answer ends,
    alternating upstream and Docent, with start times spread over one answer's length."""
    # Clients must let idle connections go before the server does (uvicorn: 5 s), or a request
    # can race the server closing the connection it was sent on.
    limits = httpx.Limits(
        max_connections=streams * 2 + 4, max_keepalive_connections=streams * 2, keepalive_expiry=2.0
    )
    direct: list[float] = []
    via: list[float] = []
    failures = 0
    rng = random.Random(0)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(60.0)) as client:
        await asyncio.gather(*(docent_ttfb(client, url, q) for q in QUESTIONS[:2]))
        end = time.monotonic() + seconds

        async def user(i: int) -> None:
            nonlocal failures
            await asyncio.sleep(rng.uniform(0, 1.0))
            n = i
            while time.monotonic() < end:
                q = QUESTIONS[n % len(QUESTIONS)]
                try:
                    if n % 2:
                        direct.append(await direct_ttfb(client, upstream, q))
                    else:
                        via.append(await docent_ttfb(client, url, q))
                except Exception as exc:
                    failures += 1
                    side = "upstream" if n % 2 else "docent"
                    print(f"  failed ({side}): {type(exc).__name__}: {exc}", flush=True)
                n += 1

        await asyncio.gather(*(user(i) for i in range(streams)))
    return direct, via, failures


def start_server(
    data_dir: Path, port: int, env: dict[str, str], pin: bool
) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "app.cli", "serve"]
    if pin:
        cmd = ["taskset", "-c", "0", *cmd]
    log = (data_dir.parent / "server.log").open("wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None:
            raise SystemExit((data_dir.parent / "server.log").read_text()[-3000:])
        try:
            health = httpx.get(f"{url}/health", timeout=2)
            info = health.json() if health.status_code == 200 else {}
            if info.get("pending_jobs") == 0 and info.get("documents", 0) > 0:
                return proc
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("the server did not become ready")
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--streams", default="1,50", help="comma-separated concurrencies")
    p.add_argument(
        "--waves", type=int, default=0, help="waves per concurrency (default: 40 at 1, 6 otherwise)"
    )
    p.add_argument("--ttft-ms", type=int, default=480)
    p.add_argument(
        "--shape",
        default="steady",
        choices=("steady", "burst"),
        help="steady: N streams always in flight; burst: waves of N streams sent at once",
    )
    p.add_argument("--seconds", type=float, default=40.0, help="length of a steady run")
    p.add_argument("--embedder", default="hash", choices=("hash", "minilm"))
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)

    pin = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    if pin:
        os.sched_setaffinity(0, {1})
    work = Path(tempfile.mkdtemp(prefix="docent-bench-answer-"))
    results: dict[str, Any] = {
        "command": " ".join(["python -m evals.bench_answer", *(argv or sys.argv[1:])]),
        "machine": {
            "cpus": os.cpu_count(),
            "load": os.getloadavg(),
            "python": platform.python_version(),
            "pinning": "server on CPU 0, upstream fake and load on CPU 1" if pin else "none",
        },
        "upstream_ttft_ms": args.ttft_ms,
        "shape": args.shape,
        "embedder": args.embedder,
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip(),
        "by_streams": {},
    }
    fake = start_fake(args.ttft_ms, pin)
    upstream = fake.stdout.readline().strip() if fake.stdout else ""
    try:
        port = _free_port()
        env = {
            **os.environ,
            "DOCENT_DATA_DIR": str(work / "data"),
            "DOCENT_PORT": str(port),
            "DOCENT_EMBEDDER": args.embedder,
            "DOCENT_CHAIN": "openai:bench",
            "DOCENT_CHAT_OPENAI_BASE_URL": upstream,
            "DOCENT_OPENAI_API_KEY": "bench",
            "DOCENT_INGEST_OWN_DOCS": "true",
            "DOCENT_MODEL_CACHE": str(ROOT / ".cache" / "models"),
        }
        proc = start_server(work / "data", port, env, pin)
        url = f"http://127.0.0.1:{port}"
        try:
            for n in [int(x) for x in args.streams.split(",") if x]:
                waves = args.waves or (40 if n == 1 else 6)
                what = f"{waves} waves" if args.shape == "burst" else f"{args.seconds:.0f} s"
                print(f"{n} stream(s), {args.shape}, {what} ...", flush=True)
                cpu_before = cpu_seconds(proc.pid)
                if args.shape == "burst":
                    direct, via, failures = asyncio.run(run_waves(url, upstream, n, waves))
                else:
                    direct, via, failures = asyncio.run(run_steady(url, upstream, n, args.seconds))
                server_cpu = cpu_seconds(proc.pid) - cpu_before
                d, v = summary(direct), summary(via)
                row = {
                    "upstream_direct": d,
                    "through_docent": v,
                    "added_median_ms": round(v["median_ms"] - d["median_ms"], 1),
                    "added_p99_ms": round(v["p99_ms"] - d["p99_ms"], 1),
                    "failed_or_hung_streams": failures,
                    # warm-up answers included: 2 per run of waves
                    "server_cpu_ms_per_answer": round(server_cpu * 1000 / (len(via) + 2), 1),
                }
                results["by_streams"][str(n)] = row
                print(
                    f"  upstream TTFB median {d['median_ms']} p99 {d['p99_ms']} ms | through "
                    f"Docent median {v['median_ms']} p99 {v['p99_ms']} ms | added median "
                    f"{row['added_median_ms']} ms, p99 {row['added_p99_ms']} ms | failed "
                    f"{failures} | server CPU {row['server_cpu_ms_per_answer']} ms an answer",
                    flush=True,
                )
            results["server_steps_ms"] = step_medians(work / "data" / "docent.db")
            print(f"median ms per step inside Docent (audit rows): {results['server_steps_ms']}")
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
            shutil.rmtree(work, ignore_errors=True)
    finally:
        fake.kill()
    results["targets"] = {"added_median_ms": 24, "added_p99_ms": 48}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results written to {args.out}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def step_medians(db: Path) -> dict[str, float]:
    """Medians of the per-step timings Docent recorded in its audit rows."""
    import sqlite3

    with sqlite3.connect(db) as conn:
        rows = [json.loads(t) for (t,) in conn.execute("SELECT timings FROM answers")]
    keys = sorted({k for r in rows for k, v in r.items() if isinstance(v, int | float)})
    return {
        k: round(statistics.median(r[k] for r in rows if k in r), 1)
        for k in keys
        if any(k in r for r in rows)
    }


FAKE = """
import sys, time
sys.path.insert(0, {root!r})
from tests.fakes.llm_server import FakeLLM, ok
fake = FakeLLM(models=("bench",)).start()
fake.default_step = ok(ttft_ms={ttft})
print(fake.openai_base_url, flush=True)
time.sleep(24 * 3600)
"""


def start_fake(ttft_ms: int, pin: bool) -> subprocess.Popen[str]:
    """The fake upstream in its own process (its own interpreter lock), on the load's CPU."""
    cmd = [sys.executable, "-c", FAKE.format(root=str(ROOT), ttft=ttft_ms)]
    if pin:
        cmd = ["taskset", "-c", "1", *cmd]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    main()
