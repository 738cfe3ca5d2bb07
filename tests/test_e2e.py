"""End to end against a real `docent serve` on 127.0.0.1 with the real embedding model."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, wait_until_idle

pytestmark = pytest.mark.slow


def make_pdf() -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pages = [
        "Warranty terms. Every Acme kettle carries a warranty of three years from the date of "
        "purchase. Keep the receipt as proof of purchase.",
        "Descaling. Descale the kettle every four weeks with a solution of citric acid. "
        "Never use vinegar, because it damages the heating element.",
    ]
    for text in pages:
        pdf.add_page()
        pdf.set_font("helvetica", size=12)
        pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def make_docx() -> bytes:
    import docx

    document = docx.Document()
    document.add_heading("Onboarding guide", 1)
    document.add_paragraph(
        "New employees receive their laptop from the IT service desk on the first morning."
    )
    document.add_paragraph("The security training must be completed within the first week.")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def ask(url: str, question: str) -> list[tuple[str, dict[str, Any]]]:
    """A freshly generated answer (the cache is skipped: other tests may ask the same)."""
    events: list[tuple[str, dict[str, Any]]] = []
    body = {"question": question, "use_cache": False}
    with httpx.stream("POST", f"{url}/api/chat", json=body, timeout=60) as r:
        assert r.status_code == 200
        name = "message"
        for line in r.iter_lines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                events.append((name, json.loads(line[5:].strip())))
    return events


def test_first_run_answers_about_docent_itself(live_server: LiveServer) -> None:
    wait_until_idle(live_server.url)
    events = ask(live_server.url, "How do I upload a document?")
    names = [n for n, _ in events]
    assert names[0] == "meta" and names[-1] == "done" and names.count("delta") >= 2
    done = events[-1][1]
    citations = dict(events)["citations"]["citations"]
    assert citations, done["text"]
    assert {c["title"] for c in citations} & {"uploading", "README"}
    assert "upload" in done["text"].lower()


def test_upload_pdf_and_docx_search_and_ask(live_server: LiveServer) -> None:
    url = live_server.url
    response = httpx.post(
        f"{url}/api/documents",
        files=[
            ("files", ("kettle-manual.pdf", make_pdf(), "application/pdf")),
            ("files", ("onboarding.docx", make_docx(), "application/octet-stream")),
        ],
        data={"collection": "e2e"},
        timeout=60,
    )
    assert response.status_code == 202, response.text
    for item in response.json()["files"]:
        deadline = time.monotonic() + 120
        while (job := httpx.get(f"{url}/api/jobs/{item['job_id']}").json())["status"] not in (
            "indexed",
            "failed",
        ):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert job["status"] == "indexed", job

    hits = httpx.post(
        f"{url}/api/search",
        json={"query": "how often should I descale", "top_k": 3, "collection": "e2e"},
    ).json()["hits"]
    assert hits[0]["title"] == "kettle manual"
    assert hits[0]["page"] == 2
    assert "citric acid" in hits[0]["text"]

    events = ask(url, "When do new employees get their laptop?")
    done = events[-1][1]
    assert events[-1][0] == "done"
    assert "first morning" in done["text"]
    titles = {c["title"] for c in dict(events)["citations"]["citations"]}
    assert "onboarding" in titles

    events = ask(url, "How long is the kettle warranty?")
    assert "three years" in events[-1][1]["text"]
    cited = dict(events)["citations"]["citations"]
    assert any(c["title"] == "kettle manual" and c["page"] == 1 for c in cited)


def test_cli_goes_through_the_running_server(live_server: LiveServer) -> None:
    wait_until_idle(live_server.url)
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "search", "security training deadline", "-k", "2"],
        env=live_server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "onboarding" in result.stdout or "security" in result.stdout.lower()
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "ask", "How do I delete a document?"],
        env=live_server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"\[\d+\]", result.stdout) or "do not answer" in result.stdout


def test_openai_compatible_endpoint_with_the_official_sdk(live_server: LiveServer) -> None:
    import openai

    wait_until_idle(live_server.url)
    client = openai.OpenAI(
        base_url=f"{live_server.url}/v1", api_key="unused", max_retries=0, timeout=60
    )
    models = [m.id for m in client.models.list()]
    assert "docent" in models and "docent/docent-help" in models

    question = [{"role": "user", "content": "How do I upload a document?"}]
    reply = client.chat.completions.create(model="docent", messages=question)  # type: ignore[arg-type]
    text = reply.choices[0].message.content or ""
    assert "upload" in text.lower() and reply.choices[0].finish_reason == "stop"
    extension = reply.model_extra["docent"]  # type: ignore[index]
    assert extension["citations"] and extension["answer_id"] in reply.id
    assert {s["verdict"] for s in extension["grounding"]} <= {"supported", "partial"}
    if extension["cache"]["status"] == "hit":  # asked before in this session: no tokens spent
        assert extension["provider"] == "cache" and reply.usage.completion_tokens == 0  # type: ignore[union-attr]
    else:
        assert reply.usage is not None and reply.usage.completion_tokens > 0

    chunks = list(
        client.chat.completions.create(
            model="docent/docent-help",
            messages=question,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text, "the cache or the same offline answer gives the same text"
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason][-1]
    assert final.model_extra["docent"]["citations"]  # type: ignore[index]
    assert chunks[-1].usage is not None and not chunks[-1].choices

    fresh = client.chat.completions.create(
        model="docent",
        messages=[{"role": "user", "content": "Which settings choose the language model?"}],  # type: ignore[list-item]
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces = list(fresh)
    assert sum(1 for c in pieces if c.choices and c.choices[0].delta.content) >= 2, "streams"
    assert pieces[-1].usage is not None and pieces[-1].usage.completion_tokens > 0

    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gpt-4o", messages=question)  # type: ignore[arg-type]
    assert "docent/<collection>" in str(info.value)
