"""HTTP API through Litestar's test client, on the hash embedder and Qdrant Edge."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from app.web.app import create_app
from tests.conftest import make_settings, wait_for_job

HANDBOOK = (
    "# Travel policy\n\n"
    "Employees book flights through the travel desk at least two weeks before departure. "
    "Economy class is the default for flights shorter than six hours.\n\n"
    "Hotel costs are reimbursed up to 180 euros a night in capital cities. "
    "Receipts must be submitted within thirty days of returning.\n"
)
FAQ = (
    "Parental leave lasts sixteen weeks at full pay. "
    "Either parent may take it within the first year after the birth or adoption.\n"
)


def sse_events(body: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in body.replace("\r\n", "\n").split("\n\n"):
        name, data = "message", None
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data = json.loads(line[5:].strip())
        if data is not None:
            events.append((name, data))
    return events


def upload(
    client: TestClient[Any], *files: tuple[str, bytes], collection: str | None = None
) -> Any:
    form = {"collection": collection} if collection else None
    return client.post(
        "/api/documents",
        files=[("files", (name, io.BytesIO(data))) for name, data in files],
        data=form,
    )


def upload_and_wait(client: TestClient[Any], *files: tuple[str, bytes]) -> list[dict[str, Any]]:
    response = upload(client, *files)
    assert response.status_code == 202, response.text
    out = response.json()["files"]
    for f in out:
        assert wait_for_job(client, f["job_id"])["status"] == "indexed"
    return list(out)


def test_health_and_pages(client: TestClient[Any]) -> None:
    health = client.get("/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    for path in ("/", "/upload"):
        page = client.get(path)
        assert page.status_code == 200
        assert "<!doctype html>" in page.text.lower()
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "/api/search" in client.get("/schema/openapi.json").json()["paths"]


def test_upload_list_get_search(client: TestClient[Any]) -> None:
    files = upload_and_wait(client, ("travel.md", HANDBOOK.encode()), ("faq.txt", FAQ.encode()))
    docs = client.get("/api/documents").json()
    assert {d["filename"] for d in docs} == {"travel.md", "faq.txt"}
    assert all(
        d["status"] == "indexed" and d["chunk_count"] >= 1 and d["version"] == 1 for d in docs
    )

    one = client.get(f"/api/documents/{files[0]['document_id']}").json()
    assert one["title"] == "travel" and one["content_type"] == "text/markdown"

    result = client.post("/api/search", json={"query": "hotel reimbursement per night", "top_k": 3})
    assert result.status_code == 200
    hits = result.json()["hits"]
    assert hits[0]["title"] == "travel"
    # Offsets point into the document's own text: for Markdown that is the file itself.
    top = hits[0]
    assert HANDBOOK[top["start"] : top["end"]] == top["text"]
    assert top["page"] is None


def test_chat_streams_cited_answer(client: TestClient[Any]) -> None:
    upload_and_wait(client, ("travel.md", HANDBOOK.encode()), ("faq.txt", FAQ.encode()))
    response = client.post("/api/chat", json={"question": "How long does parental leave last?"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    names = [n for n, _ in events]
    assert names[0] == "meta" and names[1] == "sources"
    assert names[-1] == "done" and names.count("done") == 1 and "error" not in names
    assert names.count("delta") >= 2, "the answer should arrive in several pieces"
    done = events[-1][1]
    assert "sixteen weeks" in done["text"]
    sources = dict(events)["sources"]["sources"]
    citations = dict(events)["citations"]["citations"]
    assert citations, "a grounded answer cites its sources"
    for c in citations:
        assert f"[{c['n']}]" in done["text"]
        assert sources[c["n"] - 1]["chunk_id"] == c["chunk_id"]
    cited_titles = {c["title"] for c in citations}
    assert cited_titles == {"faq"}


def test_chat_for_the_web_page_carries_sanitised_html_and_its_sources_open_in_context(
    client: TestClient[Any],
) -> None:
    upload_and_wait(client, ("travel.md", HANDBOOK.encode()), ("faq.txt", FAQ.encode()))
    body = {"question": "How long does parental leave last?", "render": "html"}
    events = sse_events(client.post("/api/chat", json=body).text)
    done = events[-1][1]
    assert events[-1][0] == "done"
    assert 'class="cite"' in done["html"] and "sixteen weeks" in done["html"]
    assert 'class="mark mark-supported"' in done["html"], "grounding marks in the page"
    # Without render, no html (API clients render the text themselves).
    plain = sse_events(client.post("/api/chat", json={"question": body["question"]}).text)
    assert "html" not in plain[-1][1] and "render" not in [n for n, _ in plain]
    # A citation opens its passage inside the document's text.
    cited = dict(events)["citations"]["citations"][0]
    passage = client.get(f"/api/passages/{cited['chunk_id']}").json()
    assert passage["title"] == "faq" and "sixteen weeks" in passage["passage"]
    assert passage["before"] + passage["passage"] + passage["after"] in FAQ + "\n"
    assert client.get("/api/passages/no-such-chunk").status_code == 404


def test_conversations_are_listed_and_reopened_with_their_sources(
    client: TestClient[Any],
) -> None:
    upload_and_wait(client, ("faq.txt", FAQ.encode()))
    events = sse_events(
        client.post("/api/chat", json={"question": "How long does parental leave last?"}).text
    )
    meta = events[0][1]
    conv_id = meta["conversation_id"]
    rows = client.get("/api/conversations").json()
    assert [r["id"] for r in rows] == [conv_id]
    assert rows[0]["title"] == "How long does parental leave last?"
    conv = client.get(f"/api/conversations/{conv_id}").json()
    user, assistant = conv["messages"]
    assert user == {"role": "user", "content": "How long does parental leave last?"}
    assert assistant["answer_id"] == meta["answer_id"]
    assert assistant["sources"][0]["title"] == "faq" and assistant["sources"][0]["chunk_id"]
    assert 'class="cite"' in assistant["html"] and assistant["grounding"]
    assert client.get("/api/conversations/nope").status_code == 404


def test_feedback_on_an_answer_is_kept_and_the_latest_counts(
    client: TestClient[Any], settings: Any
) -> None:
    import sqlite3

    upload_and_wait(client, ("faq.txt", FAQ.encode()))
    events = sse_events(
        client.post("/api/chat", json={"question": "How long does parental leave last?"}).text
    )
    answer_id = events[0][1]["answer_id"]
    url = f"/api/answers/{answer_id}/feedback"
    assert client.post(url, json={"rating": "up"}).status_code == 200
    assert client.post(url, json={"rating": "down", "comment": "Too short"}).status_code == 200
    with sqlite3.connect(settings.data_dir / "docent.db") as db:
        rows = db.execute("SELECT rating, comment FROM feedback").fetchall()
    assert rows == [("down", "Too short")]
    assert client.post(url, json={"rating": "meh"}).status_code == 400
    assert client.post("/api/answers/nope/feedback", json={"rating": "up"}).status_code == 404


def test_a_name_that_is_only_a_type_after_cleaning_is_named_untitled(
    client: TestClient[Any],
) -> None:
    """'<style>@import url(https://evil.example/.txt' keeps only '.txt' after its path is cut:
    it is a text file without a name, not a file of an unknown type."""
    (uploaded,) = upload_and_wait(client, ("https://evil.example/.txt", FAQ.encode()))
    assert uploaded["filename"] == "untitled.txt"
    refused = upload(client, (".htaccess", b"Options +ExecCGI"))
    assert refused.status_code == 415 and "'.htaccess'" in refused.json()["message"]


def test_a_document_is_indexed_again_as_a_new_version(client: TestClient[Any]) -> None:
    (uploaded,) = upload_and_wait(client, ("faq.txt", FAQ.encode()))
    again = client.post(f"/api/documents/{uploaded['document_id']}/reindex")
    assert again.status_code == 202, again.text
    job = again.json()
    assert job["version"] == uploaded["version"] + 1 and not job["duplicate"]
    assert wait_for_job(client, job["job_id"])["status"] == "indexed"
    doc = client.get(f"/api/documents/{uploaded['document_id']}").json()
    assert doc["version"] == job["version"] and doc["chunk_count"] >= 1
    hits = client.post("/api/search", json={"query": "parental leave"}).json()["hits"]
    assert [h["version"] for h in hits if h["title"] == "faq"] == [job["version"]]
    assert client.post("/api/documents/nope/reindex").status_code == 404


def test_chat_says_when_documents_do_not_answer(client: TestClient[Any]) -> None:
    events = sse_events(
        client.post("/api/chat", json={"question": "What is our refund policy?"}).text
    )
    assert "no documents" in events[-1][1]["text"].lower()

    upload_and_wait(client, ("travel.md", HANDBOOK.encode()))
    events = sse_events(
        client.post("/api/chat", json={"question": "Which zebra species live in Kenya?"}).text
    )
    done = events[-1][1]
    assert events[-1][0] == "done"
    assert "do not answer" in done["text"]
    assert dict(events)["citations"]["citations"] == []


def test_reupload_is_noop_and_new_version_replaces_old(client: TestClient[Any]) -> None:
    first = upload_and_wait(client, ("policy.txt", b"The office opens at seven in the morning."))[0]
    again = upload(client, ("policy.txt", b"The office opens at seven in the morning.")).json()
    assert again["files"][0]["duplicate"] is True
    assert again["files"][0]["job_id"] == first["job_id"]

    second = upload_and_wait(client, ("policy.txt", b"The office opens at nine in the morning."))[0]
    assert second["document_id"] == first["document_id"] and second["version"] == 2
    doc = client.get(f"/api/documents/{first['document_id']}").json()
    assert doc["version"] == 2
    hits = client.post("/api/search", json={"query": "office opens", "top_k": 5}).json()["hits"]
    assert [h["version"] for h in hits] == [2]
    assert "nine" in hits[0]["text"]


def test_delete_removes_document_and_chunks(client: TestClient[Any]) -> None:
    doc = upload_and_wait(client, ("faq.txt", FAQ.encode()))[0]
    assert client.delete(f"/api/documents/{doc['document_id']}").status_code == 204
    assert client.get("/api/documents").json() == []
    assert client.get(f"/api/documents/{doc['document_id']}").status_code == 404
    hits = client.post("/api/search", json={"query": "parental leave", "top_k": 5}).json()["hits"]
    assert hits == []
    again = client.delete(f"/api/documents/{doc['document_id']}")
    assert again.status_code == 404 and again.json()["code"] == "not_found"


def _nothing_stored(client: TestClient[Any], data_dir: Path) -> None:
    assert client.get("/api/documents").json() == []
    files_dir = data_dir / "files"
    assert not files_dir.exists() or not any(files_dir.rglob("*.*"))


def _encrypted_pdf() -> bytes:
    import pikepdf
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.cell(0, 10, "Secret salary table")
    src = pikepdf.open(io.BytesIO(bytes(pdf.output())))
    out = io.BytesIO()
    src.save(out, encryption=pikepdf.Encryption(owner="o", user="u"))
    return out.getvalue()


@pytest.mark.parametrize(
    ("name", "data", "status", "code"),
    [
        ("virus.exe", b"MZ\x90\x00", 415, "unsupported_type"),
        ("report.pdf", b"this is not a pdf", 415, "unsupported_type"),
        ("notes.txt", b"\x00\x01\x02binary", 415, "unsupported_type"),
        ("empty.txt", b"", 422, "empty_document"),
        ("blank.md", b"   \n\n  ", 422, "empty_document"),
        ("broken.pdf", b"%PDF-1.7\n garbage that is not a pdf body", 422, "unreadable_document"),
        ("locked.pdf", None, 422, "encrypted_document"),
    ],
)
def test_bad_uploads_are_refused_and_leave_nothing(
    client: TestClient[Any], settings: Any, name: str, data: bytes | None, status: int, code: str
) -> None:
    body = data if data is not None else _encrypted_pdf()
    response = upload(client, (name, body))
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert name in response.json()["message"]
    _nothing_stored(client, settings.data_dir)


def test_one_bad_file_in_a_batch_stores_none(client: TestClient[Any], settings: Any) -> None:
    response = upload(client, ("good.txt", FAQ.encode()), ("bad.pdf", b"nope"))
    assert response.status_code == 415
    _nothing_stored(client, settings.data_dir)


def test_oversized_upload_is_refused_before_reading(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", max_upload_bytes=2048)
    with TestClient(create_app(settings)) as c:
        response = upload(c, ("big.txt", b"word " * 2000))
        assert response.status_code == 413
        assert response.json()["code"] == "upload_too_large"
        _nothing_stored(c, settings.data_dir)


def test_invalid_requests_get_json_errors(client: TestClient[Any]) -> None:
    r = client.post("/api/search", json={"query": "", "top_k": 5})
    assert r.status_code == 400 and r.json()["code"] == "invalid_request"
    r = client.post("/api/search", json={"query": "x", "top_k": 1000})
    assert r.status_code == 400
    r = client.post("/api/documents", data={"collection": "default"})
    assert r.status_code == 400 and "files" in r.json()["message"]
    r = upload(client, ("a.txt", b"hello there friend"), collection="../etc")
    assert r.status_code == 400
    assert client.get("/api/jobs/nope").status_code == 404


def test_offline_generator_quotes_statements_not_commands() -> None:
    from app.providers.offline import candidate_sentences

    chunk = (
        "curl -N -H 'Content-Type: application/json' -d '{\"question\": \"How?\"}' url\n"
        ".venv/bin/docent ingest handbook.pdf policies/\n"
        "Is this a question about uploads?\n"
        "There are three ways to upload a document.\n"
    )
    assert candidate_sentences(chunk) == ["There are three ways to upload a document."]
