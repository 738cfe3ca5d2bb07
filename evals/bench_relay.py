"""What relaying one token costs Docent's server, layer by layer.

    python -m evals.bench_relay [--streams 50] [--words 150] [--pace 50] [--rounds 3]
                                [--out evals/results/relay.json]

At 50 streams a served answer is mostly tokens passing through: read from the model's stream,
handed down the answer path, written to the client. This measures the CPU time per token of
each part, in alternating rounds, medians reported:

- ``sdk_read_httpx``: the OpenAI SDK's streaming response read line by line over its default
  transport (httpx, h11), nothing else;
- ``sdk_read``: the same over the SDK's aiohttp transport, which Docent uses by default
  (``DOCENT_PROVIDER_HTTP``);
- ``sdk_bytes``: the same response read as the byte chunks that arrive, not split into lines:
  the floor of reading a token with the official SDK;
- ``provider``: Docent's OpenAI adapter (``OpenAIChatProvider.stream`` over aiohttp: the SDK
  read plus SSE parsing and JSON);
- ``chain``: the same through ``FallbackChain`` (deadlines per token, breaker);
- ``provider_40ms``: the adapter as Docent builds it by default, passing text on at most every
  40 ms (``DOCENT_RELAY_INTERVAL_MS``): what arrived meanwhile is read and relayed as one piece,
  so its CPU per token falls as the model's token rate rises (``--pace``);
- ``sse_out``: Docent's SSE writing (``answer_stream`` in ``sse_response``, a Litestar
  ``Stream``, under uvicorn) of paced synthetic events, and ``bare_out``: a bare ASGI app
  writing the same bytes under the same uvicorn, the floor of writing a token. Both include
  the pacing timer of their synthetic source.

The reading layers run in this process against the fake upstream (tests/fakes/llm_server.py) in
its own process; the writing layers run as uvicorn servers read by a minimal client. On a
machine with two or more CPUs the measured side is pinned to CPU 0 and the other side to CPU 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from evals.bench_answer import _free_port, cpu_seconds, run, start_fake

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "evals" / "results" / "relay.json"

WRITER = """
import asyncio, sys
sys.path.insert(0, {root!r})
from litestar import Litestar, get
from litestar.response import Stream
from app.models import AnswerEvent
from app.web.sse import answer_stream, sse_response

async def source():
    for _ in range({words}):
        await asyncio.sleep({gap})
        yield AnswerEvent(event="delta", data={{"text": "word "}})
    yield AnswerEvent(event="done", data={{"text": "end"}})

@get("/sse")
async def sse() -> Stream:
    return sse_response(answer_stream(source()), 15.0)

async def bare(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({{"type": "http.response.start", "status": 200,
                 "headers": [(b"content-type", b"text/event-stream")]}})
    async for e in source():
        body = f"event: {{e.event}}\\r\\ndata: {{e.data}}\\r\\n\\r\\n".encode()
        await send({{"type": "http.response.body", "body": body, "more_body": True}})
    await send({{"type": "http.response.body", "body": b"", "more_body": False}})

import uvicorn
app = bare if sys.argv[1] == "bare" else Litestar([sse])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning",
            loop="uvloop", http="httptools")
"""


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def _read(upstream: str, layer: str, streams: int) -> int:
    """Read ``streams`` answers at once through ``layer``; the number of tokens read."""
    import openai

    from app.providers import GenerationRequest
    from app.providers.fallback import ChainTrace, Deadlines, FallbackChain
    from app.providers.openai_chat import OpenAIChatProvider

    question = "How do I upload a document?"
    interval_ms = 40 if layer == "provider_40ms" else 0
    provider = OpenAIChatProvider("bench", "bench", upstream, aiohttp=True, interval_ms=interval_ms)
    chain = FallbackChain([provider])
    client = openai.AsyncOpenAI(
        api_key="bench",
        base_url=upstream,
        max_retries=0,
        http_client=None if layer == "sdk_read_httpx" else openai.DefaultAioHttpClient(),
    )

    async def one() -> int:
        request = GenerationRequest(question=question, sources=[], prompt=question)
        n = 0
        if layer == "sdk_bytes":
            async with client.chat.completions.with_streaming_response.create(
                model="bench", messages=[{"role": "user", "content": question}], stream=True
            ) as response:
                async for chunk in response.iter_bytes():
                    n += chunk.count(b"data: {")
            return n
        if layer.startswith("sdk_read"):
            async with client.chat.completions.with_streaming_response.create(
                model="bench", messages=[{"role": "user", "content": question}], stream=True
            ) as response:
                async for line in response.iter_lines():
                    n += line.startswith("data: {")
            return n
        events = (
            chain.stream(request, Deadlines(), ChainTrace())
            if layer == "chain"
            else provider.stream(request)
        )
        async for event in events:
            if isinstance(event, str):
                n += len(event.split())  # the fake's tokens are words; a piece may hold several
        return n

    try:
        return sum(await asyncio.gather(*(one() for _ in range(streams))))
    finally:
        await provider.aclose()
        await client.close()


async def _fetch(port: int, streams: int) -> int:
    async def one() -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /sse HTTP/1.1\r\nhost: bench\r\n\r\n")
        seen, tail = 0, b""
        while True:
            data = await reader.read(65536)
            if not data:
                break
            seen += data.count(b"event: delta")
            tail = (tail + data)[-64:]
            if b"event: done" in tail:
                break
        writer.close()
        return seen

    return sum(await asyncio.gather(*(one() for _ in range(streams))))


def _write_round(kind: str, streams: int, words: int, pace: float, pin: bool) -> float:
    """CPU microseconds per token of a writing server of ``kind``."""
    port = _free_port()
    code = WRITER.format(root=str(ROOT), words=words, gap=1 / pace)
    cmd = [sys.executable, "-c", code, kind, str(port)]
    if pin:
        cmd = ["taskset", "-c", "0", *cmd]
    server = subprocess.Popen(cmd, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit(f"the {kind} server did not start") from None
                time.sleep(0.2)
        before = cpu_seconds(server.pid)
        tokens: int = run(_fetch(port, streams))
        return float((cpu_seconds(server.pid) - before) * 1e6 / max(tokens, 1))
    finally:
        server.kill()
        server.wait()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--streams", type=int, default=50)
    p.add_argument("--words", type=int, default=150, help="tokens (words) per answer")
    p.add_argument("--pace", type=float, default=50.0, help="tokens a second per stream")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)

    pin = (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity")
    fake = start_fake(0, pin, args.pace, args.words)
    upstream = fake.stdout.readline().strip() if fake.stdout else ""
    if pin:
        os.sched_setaffinity(0, {0})
    per_layer: dict[str, list[float]] = {}
    try:
        run(_read(upstream, "provider", 2))  # warm-up: imports, the first connection
        for r in range(args.rounds):
            for layer in (
                "sdk_read_httpx",
                "sdk_read",
                "sdk_bytes",
                "provider",
                "provider_40ms",
                "chain",
            ):
                started = _cpu()
                tokens: int = run(_read(upstream, layer, args.streams))
                per_layer.setdefault(layer, []).append((_cpu() - started) * 1e6 / tokens)
            if pin:
                os.sched_setaffinity(0, {1})  # the reading client, beside the server
            for kind in ("sse_out", "bare_out"):
                us = _write_round(kind.split("_")[0], args.streams, args.words, args.pace, pin)
                per_layer.setdefault(kind, []).append(us)
            if pin:
                os.sched_setaffinity(0, {0})
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in per_layer.items()))
    finally:
        fake.kill()
    medians = {k: round(statistics.median(v), 1) for k, v in per_layer.items()}
    results: dict[str, Any] = {
        "command": " ".join(["python -m evals.bench_relay", *(argv or sys.argv[1:])]),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "pinning": "measured side on CPU 0, the other on CPU 1" if pin else "none",
        },
        "streams": args.streams,
        "words": args.words,
        "pace_tokens_per_s": args.pace,
        "cpu_us_per_token_median": medians,
        "cpu_us_per_token_rounds": {k: [round(x, 1) for x in v] for k, v in per_layer.items()},
    }
    print(
        "CPU per token, median of rounds: "
        + ", ".join(f"{k} {v} us" for k, v in medians.items())
        + f" | the SDK's read over aiohttp against httpx: "
        f"{medians['sdk_read'] / medians['sdk_read_httpx']:.2f}x"
        f" | the adapter passing text on every 40 ms against every token: "
        f"{medians['provider_40ms'] / medians['provider']:.2f}x"
        f" | Docent's SSE writing over a bare ASGI writer: "
        f"{medians['sse_out'] / medians['bare_out']:.2f}x"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
