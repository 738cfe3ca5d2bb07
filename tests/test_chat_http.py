"""The chat stream over real sockets: `docent serve` on 127.0.0.1 answering through the
OpenAI adapter from a fake upstream. Keepalive comments, SSE framing of hostile text, and a
client that leaves closing the upstream request within a second."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import docent_serve, serve_env
from tests.fakes.llm_server import FakeLLM, hang_before_headers, ok, slow

pytestmark = pytest.mark.slow

HOSTILE = (
    'The launch code is 1234.\n\nevent: done\ndata: {"text": "forged"}\n\n'
    "Line\u2028separator and\rcarriage return."
)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeLLM]:
    with FakeLLM(models=("m",)) as fake:
        yield fake


@pytest.fixture(scope="module")
def server(upstream: FakeLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("chat-http") / "data"
    env = serve_env(
        data_dir,
        embedder="hash",
        ingest_own_docs="false",
        chain="openai:m",
        chat_openai_base_url=upstream.openai_base_url,
        openai_api_key="x",
        sse_keepalive_s="0.3",
        first_token_low_s="5",
        cache_enabled="false",
    )
    with docent_serve(data_dir, env, timeout=60) as url:
        files = [("files", ("notes.txt", HOSTILE.encode()))]
        response = httpx.post(f"{url}/api/documents", files=files, timeout=30)
        assert response.status_code == 202, response.text
        job = response.json()["files"][0]["job_id"]
        while httpx.get(f"{url}/api/jobs/{job}").json()["status"] not in ("indexed", "failed"):
            time.sleep(0.1)
        yield url


def read_events(lines: Iterator[str]) -> tuple[list[tuple[str, Any]], int]:
    events: list[tuple[str, Any]] = []
    comments = 0
    name, data = "message", []
    for line in lines:
        if line.startswith(":"):
            comments += 1
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif not line and data:
            events.append((name, json.loads("\n".join(data))))
            name, data = "message", []
    return events, comments


def test_keepalive_comments_while_the_model_thinks(server: str, upstream: FakeLLM) -> None:
    upstream.script("m", ok(ttft_ms=1500))
    with httpx.stream("POST", f"{server}/api/chat", json={"question": "launch code"}) as r:
        events, comments = read_events(r.iter_lines())
    assert comments >= 3, "a comment every 0.3 s of silence"
    assert [n for n, _ in events].count("done") == 1


def test_hostile_text_cannot_forge_events(server: str, upstream: FakeLLM) -> None:
    upstream.script("m", ok(text=HOSTILE + " [1]"))
    with httpx.stream("POST", f"{server}/api/chat", json={"question": "launch code"}) as r:
        events, _ = read_events(r.iter_lines())
    names = [n for n, _ in events]
    assert names.count("done") == 1 and names[-1] == "done"
    text = "".join(d["text"] for n, d in events if n == "delta")
    assert text == HOSTILE + " [1]", "every character arrives, inside data"
    assert dict(events)["done"]["text"] == text


@pytest.mark.parametrize("when", ["while streaming", "before the first token"])
def test_a_client_that_leaves_closes_the_upstream_within_a_second(
    server: str, upstream: FakeLLM, when: str
) -> None:
    upstream.script("m", slow(4.0) if when == "while streaming" else hang_before_headers())
    before = len(upstream.log)
    with httpx.stream("POST", f"{server}/api/chat", json={"question": "launch code"}) as r:
        for line in r.iter_lines():
            if when == "while streaming" and line.startswith("event: delta"):
                break
            if when == "before the first token" and line.startswith("event: sources"):
                time.sleep(0.3)  # the upstream request is open, its first token far away
                break
        closed_at = time.monotonic()
    deadline = time.monotonic() + 5
    while len(upstream.log) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    attempt = upstream.log[before]
    assert upstream.wait_closed(attempt, timeout=3.0)
    assert attempt.client_closed_at is not None
    assert attempt.client_closed_at - closed_at < 1.0
    assert attempt.tokens_sent_after_close <= 1
