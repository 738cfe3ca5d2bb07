"""Added time to first byte: what Docent's answer path costs on top of the model.

    python -m evals.bench_answer [--streams 1,50] [--ttft-ms 480] [--embedder hash|minilm]
                                 [--pace 50] [--answer-words 150] [--shape steady|burst]
                                 [--out evals/results/answer.json]

A fake OpenAI-compatible upstream (tests/fakes/llm_server.py, in its own process) answers
every request after ``--ttft-ms``. Docent runs as ``docent serve`` in a subprocess with
``DOCENT_CHAIN=openai:bench`` pointed at it, on a data directory holding Docent's own
documentation. Streams go side by side: straight to the upstream (the floor) and through
Docent's POST /api/chat (retrieval, risk, prompt, chain, SSE). ``--shape steady`` (default)
keeps N streams in flight through Docent and N beside them straight to the upstream, each
client asking again when its answer ends, the clients starting at random within the length
of an average answer (so questions arrive at the steady rate from the start); ``--shape
burst`` sends waves of N to each at the same instant, the worst case. Low-risk questions,
cache off (every answer is generated).

Answers are, by default, about 150 words (from half to one and a half times that, so that
clients fall out of step as real ones do) sent at 50 words a second after the first: 50
streams are then about 11 answers a second, each relayed token by token. ``--pace 0
--answer-words 0`` instead sends one-sentence answers at once, back to back: about 48 answers
a second at 50 streams, a stress test of how many answers one core carries.

The slowest 3% of Docent's streams are listed in the results with when they were sent and the
step times of their audit rows: whether a tail is one stall that hit many streams at once or
one step that is slow.

Time to first byte is taken when the first text arrives: the first content chunk from the
upstream, the first ``delta`` event from Docent. Two figures are reported:

- end to end: medians and p99 of both sides, and their difference;
- per stream, outside the upstream: each stream's time minus the time the upstream itself
  took for that request (read to first token written, from the fake's log, matched by the
  request id Docent forwards; the same monotonic clock). The fake's own scheduling delays
  (it is Python too) drop out, which makes the p99 comparable. For Docent this splits into
  the time before the upstream read the request (retrieval, prompt, chain) and after its
  first token (relay).

The load is a minimal keep-alive HTTP/1.1 client on uvloop: httpx cost the load process most
of a core at 50 streams, and a busy load process delays both sides it measures.

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
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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


@dataclass
class Sample:
    """One stream's time to first text as the client saw it, and the id the upstream logged it
    under (Docent forwards its answer id as x-request-id)."""

    ms: float
    request_id: str
    sent_at: float  # time.monotonic(), the clock the fake's log uses too
    first_at: float


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
        "over_48ms_share": round(sum(m > 48 for m in ms) / len(ms), 4) if ms else float("nan"),
        "median_ms": round(statistics.median(ms), 1) if ms else float("nan"),
        "p99_ms": round(percentile(ms, 0.99), 1),
        "max_ms": round(max(ms), 1) if ms else float("nan"),
    }


IDLE_S = 4.0  # a client drops a keep-alive connection idle this long, as httpx does


class Conn:
    """One keep-alive HTTP/1.1 connection, as light as a load generator can be: request bytes
    out, response bytes scanned for a few markers. httpx cost the load process most of a core
    at 50 streams, and a busy load process delays both sides it measures."""

    def __init__(self, url: str) -> None:
        parsed = urlsplit(url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.prefix = parsed.path.rstrip("/")
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._used = 0.0

    async def post(
        self, path: str, body: dict[str, Any], headers: dict[str, str], first: bytes
    ) -> tuple[float, float, bytes]:
        """Send; return (sent, first_seen, whole body) where first_seen is when a chunk
        holding a match of ``first`` arrived (time.monotonic())."""
        if self._streams is not None and time.monotonic() - self._used > IDLE_S:
            self.close()  # the server may be closing it (uvicorn keeps idle ones for 5 s)
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        data = json.dumps(body).encode()
        head = f"POST {self.prefix}{path} HTTP/1.1\r\nhost: {self.host}\r\n"
        head += "content-type: application/json\r\naccept: text/event-stream\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head += f"content-length: {len(data)}\r\n\r\n"
        sent = time.monotonic()
        try:
            writer.write(head.encode() + data)
            status = await reader.readuntil(b"\r\n\r\n")
            if not status.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(status.split(b"\r\n", 1)[0].decode())
            seen = 0.0
            body_bytes = bytearray()
            matcher = re.compile(first)
            while True:  # chunked body
                size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                chunk = await reader.readexactly(size + 2)
                if size == 0:
                    break
                body_bytes += chunk[:-2]
                if not seen and matcher.search(body_bytes):
                    seen = time.monotonic()
        except BaseException:
            self.close()
            raise
        self._used = time.monotonic()
        if not seen:
            raise RuntimeError("no text in the response")
        return sent, seen, bytes(body_bytes)

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


_ANSWER_ID = re.compile(rb'"answer_id":\s*"([^"]+)"')


async def direct_ttfb(conn: Conn, question: str) -> Sample:
    rid = f"bench-{uuid.uuid4().hex}"
    body = {"model": "bench", "stream": True, "messages": [{"role": "user", "content": question}]}
    sent, first, _ = await conn.post(
        "/chat/completions", body, {"x-request-id": rid}, rb'"content":\s*"[^"]'
    )
    return Sample((first - sent) * 1000, rid, sent, first)


async def docent_ttfb(conn: Conn, question: str) -> Sample:
    body = {"question": question, "use_cache": False}
    sent, first, whole = await conn.post("/api/chat", body, {}, rb"event: delta")
    if b"event: done" not in whole and b"event: error" not in whole:
        raise RuntimeError("Docent's stream ended without a terminal event")
    found = _ANSWER_ID.search(whole)
    return Sample((first - sent) * 1000, found.group(1).decode() if found else "", sent, first)


async def run_waves(
    url: str, upstream: str, streams: int, waves: int
) -> tuple[list[Sample], list[Sample], int]:
    direct: list[Sample] = []
    via: list[Sample] = []
    failures = 0
    to_docent = [Conn(url) for _ in range(streams)]
    to_upstream = [Conn(upstream) for _ in range(streams)]
    # Warm-up: connections, the model's first query, SQLite pages.
    await asyncio.gather(*(docent_ttfb(c, QUESTIONS[0]) for c in to_docent[:2]))
    for wave in range(waves):
        qs = [QUESTIONS[(wave + i) % len(QUESTIONS)] for i in range(streams)]
        for label, target in (("direct", direct), ("docent", via)):
            if label == "direct":
                jobs = [direct_ttfb(c, q) for c, q in zip(to_upstream, qs, strict=True)]
            else:
                jobs = [docent_ttfb(c, q) for c, q in zip(to_docent, qs, strict=True)]
            results = await asyncio.gather(*jobs, return_exceptions=True)
            for res in results:
                if isinstance(res, BaseException):
                    if not failures:
                        print(f"  failed ({label}): {type(res).__name__}: {res}", flush=True)
                    failures += 1
                else:
                    target.append(res)
    for c in to_docent + to_upstream:
        c.close()
    return direct, via, failures


async def run_steady(
    url: str, upstream: str, streams: int, seconds: float, ramp_s: float = 1.0
) -> tuple[list[Sample], list[Sample], int]:
    """N streams always in flight through Docent, and beside them N straight to the upstream
    (the floor): each client asks again as soon as its answer ends. Start times are spread
    at random over ``ramp_s``, the length of an average answer, so that questions arrive at
    the rate they keep up from then on: N clients starting within one second would ask at
    several times that rate at first, and again when their first answers end together, which
    is the burst shape's measurement, not this one's."""
    direct: list[Sample] = []
    via: list[Sample] = []
    failures = 0
    rng = random.Random(0)
    warm = Conn(url)
    await asyncio.gather(docent_ttfb(warm, QUESTIONS[0]), docent_ttfb(Conn(url), QUESTIONS[1]))
    warm.close()
    end = time.monotonic() + seconds

    async def user(i: int, to_docent: bool) -> None:
        nonlocal failures
        conn = Conn(url if to_docent else upstream)
        await asyncio.sleep(rng.uniform(0, ramp_s))
        n = i
        while time.monotonic() < end:
            q = QUESTIONS[n % len(QUESTIONS)]
            try:
                if to_docent:
                    via.append(await docent_ttfb(conn, q))
                else:
                    direct.append(await direct_ttfb(conn, q))
            except Exception as exc:
                failures += 1
                side = "docent" if to_docent else "upstream"
                print(f"  failed ({side}): {type(exc).__name__}: {exc}", flush=True)
            n += 1
        conn.close()

    await asyncio.gather(*(user(i, side) for i in range(streams) for side in (True, False)))
    return direct, via, failures


def docent_env(work: Path, port: int, embedder: str, upstream: str) -> dict[str, str]:
    """``docent serve``'s environment for a benchmark: a fresh data directory holding Docent's
    own documentation, the fake upstream as its only model."""
    return {
        **os.environ,
        "DOCENT_DATA_DIR": str(work / "data"),
        "DOCENT_PORT": str(port),
        "DOCENT_EMBEDDER": embedder,
        "DOCENT_CHAIN": "openai:bench",
        "DOCENT_CHAT_OPENAI_BASE_URL": upstream,
        "DOCENT_OPENAI_API_KEY": "bench",
        "DOCENT_INGEST_OWN_DOCS": "true",
        "DOCENT_MODEL_CACHE": str(ROOT / ".cache" / "models"),
    }


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
    p.add_argument(
        "--pace",
        type=float,
        default=50.0,
        help="tokens (words) a second after the first; 0: the whole answer at once",
    )
    p.add_argument(
        "--answer-words",
        type=int,
        default=150,
        help="answer length in words; 0: one sentence (with --pace 0: a stress test of "
        "answers back to back, which measures how many answers a second one core carries)",
    )
    p.add_argument(
        "--no-pin",
        action="store_true",
        help="let Docent, the fake and the load share every core (default: Docent on CPU 0)",
    )
    args = p.parse_args(argv)

    pin = not args.no_pin and shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
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
        "upstream_pace_tokens_per_s": args.pace,
        "answer_words": args.answer_words,
        "shape": args.shape,
        "embedder": args.embedder,
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip(),
        "by_streams": {},
    }
    fake = start_fake(args.ttft_ms, pin, args.pace or None, args.answer_words)
    upstream = fake.stdout.readline().strip() if fake.stdout else ""
    try:
        port = _free_port()
        proc = start_server(
            work / "data", port, docent_env(work, port, args.embedder, upstream), pin
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for n in [int(x) for x in args.streams.split(",") if x]:
                waves = args.waves or (40 if n == 1 else 6)
                what = f"{waves} waves" if args.shape == "burst" else f"{args.seconds:.0f} s"
                print(f"{n} stream(s), {args.shape}, {what} ...", flush=True)
                cpu_before, wall_before = cpu_seconds(proc.pid), time.monotonic()
                if args.shape == "burst":
                    direct, via, failures = run(run_waves(url, upstream, n, waves))
                else:
                    # An average answer: the first token, then its words at the pace.
                    ramp = args.ttft_ms / 1000 + (
                        args.answer_words / args.pace if args.pace and args.answer_words else 0
                    )
                    direct, via, failures = run(
                        run_steady(url, upstream, n, args.seconds, max(ramp, 1.0))
                    )
                server_cpu = cpu_seconds(proc.pid) - cpu_before
                wall = time.monotonic() - wall_before
                inside = upstream_times(upstream)
                d, v = summary([s.ms for s in direct]), summary([s.ms for s in via])
                d_over, v_over = overheads(direct, inside), overheads(via, inside)
                do, vo = summary(d_over), summary(v_over)
                row = {
                    "upstream_direct": d,
                    "through_docent": v,
                    "added_median_ms": round(v["median_ms"] - d["median_ms"], 1),
                    "added_p99_ms": round(v["p99_ms"] - d["p99_ms"], 1),
                    # Per stream: the client's time to first text minus the time the upstream
                    # itself took from reading the request to writing its first token (its log,
                    # same monotonic clock). What is left is the path around the upstream.
                    "outside_upstream_direct": do,
                    "outside_upstream_docent": vo,
                    "docent_before_upstream": summary([b for b, _ in split(via, inside)]),
                    "docent_after_upstream": summary([a for _, a in split(via, inside)]),
                    "added_per_stream_median_ms": round(vo["median_ms"] - do["median_ms"], 1),
                    "added_per_stream_p99_ms": round(vo["p99_ms"] - do["p99_ms"], 1),
                    "unmatched_streams": len(direct) + len(via) - len(d_over) - len(v_over),
                    "failed_or_hung_streams": failures,
                    # warm-up answers included: 2 per run of waves
                    "server_cpu_ms_per_answer": round(server_cpu * 1000 / (len(via) + 2), 1),
                    "answers_per_s": round(len(via) / wall, 1),
                    "server_cpu_share_of_a_core": round(server_cpu / wall, 2),
                }
                row["slowest"] = slowest(via, inside, work / "data" / "docent.db")
                results["by_streams"][str(n)] = row
                print(
                    f"  upstream TTFB median {d['median_ms']} p99 {d['p99_ms']} ms | through "
                    f"Docent median {v['median_ms']} p99 {v['p99_ms']} ms | added median "
                    f"{row['added_median_ms']} ms, p99 {row['added_p99_ms']} ms | failed "
                    f"{failures} | server CPU {row['server_cpu_ms_per_answer']} ms an answer, "
                    f"{row['answers_per_s']} answers/s, {row['server_cpu_share_of_a_core']:.0%}"
                    " of a core\n"
                    f"  per stream, outside the upstream: direct median {do['median_ms']} p99 "
                    f"{do['p99_ms']} ms | through Docent median {vo['median_ms']} p99 "
                    f"{vo['p99_ms']} ms | added median {row['added_per_stream_median_ms']} ms, "
                    f"p99 {row['added_per_stream_p99_ms']} ms",
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


def upstream_times(upstream: str) -> dict[str, tuple[float, float]]:
    """When the fake read each request and wrote its first token (time.monotonic()), by
    request id, from its log; the log is cleared for the next run."""
    root = upstream.removesuffix("/v1")
    attempts = httpx.get(f"{root}/__log", timeout=60).json()["attempts"]
    httpx.post(f"{root}/__reset", timeout=10)
    return {
        a["request_id"]: (a["started_at"], a["first_token_at"])
        for a in attempts
        if a.get("request_id") and a.get("first_token_at") is not None
    }


def overheads(samples: list[Sample], inside: dict[str, tuple[float, float]]) -> list[float]:
    """Per stream, the client's time to first text minus the upstream's own time."""
    return [before + after for before, after in split(samples, inside)]


def split(
    samples: list[Sample], inside: dict[str, tuple[float, float]]
) -> list[tuple[float, float]]:
    """Per stream: ms from the client sending to the upstream reading the request, and from the
    upstream writing its first token to the client reading the first text."""
    out = []
    for s in samples:
        if s.request_id in inside:
            read, wrote = inside[s.request_id]
            out.append(((read - s.sent_at) * 1000, (s.first_at - wrote) * 1000))
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and its live children (its grounding
    workers), from Linux /proc."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):
            total += int(fields[11]) + int(fields[12])
    return total / float(os.sysconf("SC_CLK_TCK"))


def slowest(
    samples: list[Sample], inside: dict[str, tuple[float, float]], db: Path, share: float = 0.03
) -> list[dict[str, Any]]:
    """The slowest ``share`` of Docent's streams (time outside the upstream), each with when it
    was sent (seconds into the run) and the step times of its audit row: where a tail comes
    from, periodic stalls or one step."""
    import sqlite3

    if not samples:
        return []
    t0 = min(s.sent_at for s in samples)
    timed = []
    for s in samples:
        if s.request_id in inside:
            read, wrote = inside[s.request_id]
            before, after = (read - s.sent_at) * 1000, (s.first_at - wrote) * 1000
            timed.append((before + after, before, after, s))
    timed.sort(key=lambda t: t[0], reverse=True)
    worst = timed[: max(1, int(len(timed) * share))]
    with sqlite3.connect(db) as conn:
        steps = {
            rid: json.loads(t)
            for rid, t in conn.execute(
                f"SELECT id, timings FROM answers WHERE id IN ({','.join('?' * len(worst))})",
                [w[3].request_id for w in worst],
            )
        }
    return [
        {
            "at_s": round(s.sent_at - t0, 2),
            "request_id": s.request_id,
            "sent_at": s.sent_at,
            "upstream_read_at": inside[s.request_id][0],
            "outside_ms": round(total, 1),
            "before_upstream_ms": round(before, 1),
            "after_upstream_ms": round(after, 1),
            "steps_ms": {
                k: round(v, 1)
                for k, v in steps.get(s.request_id, {}).items()
                if isinstance(v, int | float)
            },
        }
        for total, before, after, s in worst
    ]


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


def run(coro: Any) -> Any:
    """The load runs on uvloop where it is installed: the harness, not Docent, must be cheap."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


FAKE = """
import asyncio, gc, sys, time
gc.disable()  # the harness must not pause: it lives for one run, its memory is bounded
sys.path.insert(0, {root!r})
try:
    import uvloop
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
except ImportError:
    pass
from tests.fakes.llm_server import FakeLLM, default_answer, ok

import random
spread = random.Random(0)

def text(body, words={words}):
    # Answers differ in length (half to one and a half times ``words``), as real ones do;
    # equal lengths would keep every client in step, asking in waves.
    sentence = default_answer(body)
    n = round(words * spread.uniform(0.5, 1.5)) if words else 0
    return " ".join([sentence] * max(1, -(-n // len(sentence.split()))))

fake = FakeLLM(models=("bench",)).start()
fake.default_step = ok(text=text, ttft_ms={ttft}, tokens_per_s={pace})
print(fake.openai_base_url, flush=True)
time.sleep(24 * 3600)
"""


def start_fake(
    ttft_ms: int, pin: bool, pace: float | None = None, words: int = 0
) -> subprocess.Popen[str]:
    """The fake upstream in its own process (its own interpreter lock), on the load's CPU.
    ``pace``: tokens a second after the first (None: the whole answer at once); ``words``:
    the answer's length (its first-sentence answer repeated; 0: one sentence)."""
    code = FAKE.format(root=str(ROOT), ttft=ttft_ms, pace=pace, words=words)
    cmd = [sys.executable, "-c", code]
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
