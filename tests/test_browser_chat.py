"""The web chat in a real browser (Debian's chromium driven by Playwright), against
`docent serve` whose model is the fake LLM server (tests/fakes/llm_server.py), scripted per test.

Each test says what a person sees: text arriving in steps and rendered as Markdown, citations
that open the passage in its document, grounding marks, a high-risk answer held while it is
checked, a cached answer labelled with its age, stop, copy, regenerate, feedback, follow-ups
and the conversation list, errors with a retry, the keyboard alone on a phone-sized screen, and
hostile text (RELIABILITY.md B2, B3) that never runs. Screenshots are written to
test-artifacts/screenshots/.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import docent_serve, serve_env
from tests.fakes.llm_server import FakeLLM, ok, status
from tests.test_browser import ARTIFACTS, _require_browser, chromium

pytestmark = [pytest.mark.slow, pytest.mark.browser]

LEAVE = (
    "Parental leave lasts sixteen weeks at full pay. "
    "Either parent may take it within the first year after the birth or adoption. "
    "Leave can be split into two blocks of eight weeks."
)
DOSE = (
    "The maximum dose of ibuprofen for adults is 1200 mg a day without a prescription. "
    "Children must not take it under three months of age."
)
HOSTILE_NAME = 'canteen"><img src=x onerror=window.__pwned=1>.md'
HOSTILE_DOC = (
    "# Canteen <script>window.__pwned=1</script>\n\n"
    "The canteen serves soup on Tuesdays. <img src=x onerror=window.__pwned=1> "
    '<svg onload=window.__pwned=1></svg> <a href="javascript:window.__pwned=1">menu</a>\n'
)
HOSTILE_ANSWER = (
    "The canteen serves soup on Tuesdays [1]. <img src=x onerror=window.__pwned=1> "
    "<script>window.__pwned=1</script> [menu](javascript:window.__pwned=1) "
    "[menu2](JaVa&#115;cript:window.__pwned=1) ![tracker](https://evil.example/pixel.png) "
    "<iframe srcdoc='<script>parent.__pwned=1</script>'></iframe> "
    "[ok](https://example.com/menu) [x][9]\n\n[9]: javascript:window.__pwned=1\n"
)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLM]:
    with FakeLLM(models=("browser",)) as server:
        yield server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, fake: FakeLLM) -> Iterator[dict[str, Any]]:
    _require_browser()
    data_dir = tmp_path_factory.mktemp("browser-chat") / "data"
    env = serve_env(
        data_dir,
        embedder="hash",
        ingest_own_docs="false",
        chain="openai:browser",
        chat_openai_base_url=fake.openai_base_url,
        openai_api_key="test-key",
        first_token_high_s="10",
    )
    with docent_serve(data_dir, env) as url:
        files = [
            ("files", ("leave.txt", LEAVE.encode())),
            ("files", ("dose.txt", DOSE.encode())),
            ("files", (HOSTILE_NAME, HOSTILE_DOC.encode())),
        ]
        jobs = httpx.post(f"{url}/api/documents", files=files, timeout=30).json()["files"]
        deadline = time.monotonic() + 60
        for job in jobs:
            while httpx.get(f"{url}/api/jobs/{job['job_id']}").json()["status"] != "indexed":
                assert time.monotonic() < deadline, "the test documents were not indexed"
                time.sleep(0.2)
        yield {"url": url, "db": data_dir / "docent.db"}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Any, server: dict[str, Any], fake: FakeLLM) -> Iterator[Any]:
    fake.reset()
    fake.default_step = ok(ttft_ms=150, tokens_per_s=25)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server["url"])
    pg = context.new_page()
    pg.dialogs, pg.foreign = [], []
    pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))
    pg.on(
        "request", lambda r: None if r.url.startswith(server["url"]) else pg.foreign.append(r.url)
    )
    pg.goto(server["url"] + "/")
    yield pg
    assert pg.evaluate("window.__pwned") is None, "hostile text ran"
    assert pg.dialogs == [], pg.dialogs
    assert pg.foreign == [], f"requests left the origin: {pg.foreign}"
    context.close()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def ask(page: Any, question: str) -> None:
    page.fill("#question", question)
    page.press("#question", "Enter")


def wait_done(page: Any, turn: int = 1, timeout: float = 30_000) -> Any:
    reply = page.locator(".turn").nth(turn - 1)
    reply.locator(".actions:not([hidden])").wait_for(timeout=timeout)
    return reply


def test_answer_streams_as_markdown_and_a_citation_opens_its_passage(
    page: Any, fake: FakeLLM
) -> None:
    text = (
        "**Parental leave** lasts sixteen weeks at full pay [1].\n\n"
        "Either parent may take it within the first year after the birth or adoption [1]."
    )
    fake.script("browser", ok(text=text, ttft_ms=150, tokens_per_s=12))
    page.evaluate(
        """() => { window.__updates = 0;
        new MutationObserver(() => window.__updates++).observe(
            document.getElementById('thread'),
            {childList: true, characterData: true, subtree: true}); }"""
    )
    ask(page, "How long is parental leave?")
    page.locator(".answer-body .tail, .answer-body p").first.wait_for(timeout=15_000)
    reply = wait_done(page)
    assert page.evaluate("window.__updates") >= 5, "the text arrived in several steps"
    assert reply.locator(".answer-body strong").inner_text() == "Parental leave"
    marks = reply.locator(".mark-supported")
    assert marks.count() == 2, "each supported sentence carries a mark"
    assert "Supported by the sources" in (marks.first.get_attribute("aria-label") or "")
    assert marks.first.get_attribute("tabindex") == "0", "the explanation is reachable by focus"
    shot(page, "chat-answer")

    reply.locator("a.cite").first.click()
    panel = page.locator("#source-panel")
    panel.wait_for(state="visible")
    assert page.locator("#source-title").inner_text() == "leave"
    highlighted = page.locator("#source-text mark").inner_text()
    assert "sixteen weeks" in highlighted
    assert "Leave can be split" in page.locator("#source-text").inner_text(), "text around it"
    shot(page, "chat-source-panel")
    page.keyboard.press("Escape")
    panel.wait_for(state="hidden")


def test_stop_ends_the_generation_upstream(page: Any, fake: FakeLLM) -> None:
    words = " ".join(["Parental leave lasts sixteen weeks at full pay [1]."] * 12)
    fake.script("browser", ok(text=words, ttft_ms=100, tokens_per_s=5))
    ask(page, "How many weeks of parental leave are paid?")  # not asked before: not cached
    page.locator(".answer-body .tail").wait_for(timeout=15_000)
    page.click("#stop")
    page.locator(".state-stopped").wait_for(timeout=5_000)
    attempt = fake.attempts("browser")[-1]
    assert fake.wait_closed(attempt, 2.0), "the upstream request closed after Stop"
    assert attempt.tokens_sent < len(words.split())
    assert page.locator("#stop").is_hidden() and page.locator("#send").is_enabled()


def test_high_risk_answer_is_held_while_checked_then_released(page: Any, fake: FakeLLM) -> None:
    fake.script("browser", ok(ttft_ms=1500, tokens_per_s=25))
    ask(page, "What is the maximum dose of ibuprofen for adults?")
    checking = page.locator(".state-validating")
    checking.wait_for(timeout=10_000)
    assert "Checking the answer" in checking.inner_text()
    assert page.locator(".answer-body").inner_text() == "", "nothing is shown before the check"
    shot(page, "chat-high-risk-checking")
    reply = wait_done(page)
    assert "1200 mg" in reply.locator(".answer-body").inner_text()
    assert page.locator(".state-validating").count() == 0
    reply.locator("summary").click()
    assert "high" in reply.locator(".about dl").inner_text()


def wait_cached(db_path: Path, question: str, timeout: float = 10.0) -> None:
    """The cache stores an answer just after its done event: wait for it."""
    deadline = time.monotonic() + timeout
    while True:
        with sqlite3.connect(db_path) as db:
            query = "SELECT count(*) FROM cache_entries WHERE question = ?"
            if db.execute(query, (question,)).fetchone()[0]:
                return
        assert time.monotonic() < deadline, "the answer was not cached"
        time.sleep(0.1)


def test_a_cached_answer_is_labelled_with_its_age(page: Any, server: dict[str, Any]) -> None:
    ask(page, "How long is parental leave at full pay?")
    first = wait_done(page)
    assert first.locator(".badge-cache").count() == 0
    wait_cached(server["db"], "How long is parental leave at full pay?")
    page.click("#new-conv")  # someone asking the same question later, not a follow-up
    ask(page, "How long is parental leave at full pay?")
    second = wait_done(page, 1)
    badge = second.locator(".badge-cache")
    assert "Earlier checked answer" in badge.inner_text() and "ago" in badge.inner_text()
    shot(page, "chat-cached")


def test_copy_regenerate_and_feedback(page: Any, server: dict[str, Any]) -> None:
    ask(page, "Can leave be split into blocks?")
    reply = wait_done(page)
    reply.locator("button.copy").click()
    copied = page.evaluate("navigator.clipboard.readText()")
    shown = reply.locator(".answer-body").inner_text()
    assert "[1]" in copied and copied[:30] in shown, "the answer's text, with its markers"

    reply.locator("button.thumb[data-rating=down]").click()
    assert reply.locator("button.thumb[data-rating=down]").get_attribute("aria-pressed") == "true"
    reply.locator(".feedback textarea").fill("Say who decides the split.")
    reply.locator(".feedback button[type=submit]").click()
    reply.locator(".badge-ok").wait_for(timeout=5_000)
    with sqlite3.connect(server["db"]) as db:
        rows = db.execute("SELECT rating, comment FROM feedback").fetchall()
    assert ("down", "Say who decides the split.") in rows

    reply.locator("button.regenerate").click()
    again = wait_done(page, 2)
    assert again.locator(".badge-cache").count() == 0, "a regenerated answer is written anew"
    assert page.locator(".turn .question").nth(1).inner_text() == "Can leave be split into blocks?"


def test_follow_ups_stay_in_one_conversation_that_can_be_reopened(page: Any) -> None:
    ask(page, "How long is parental leave?")
    wait_done(page)
    ask(page, "And can it be split?")
    wait_done(page, 2)
    page.locator("#conv-list li").first.wait_for()
    titles = page.locator("#conv-list li").all_inner_texts()
    assert titles.count("How long is parental leave?") >= 1
    page.click("#new-conv")
    assert page.locator(".turn").count() == 0
    page.locator("#conv-list button", has_text="How long is parental leave?").first.click()
    page.locator(".turn").nth(1).wait_for()
    assert page.locator(".turn").count() == 2
    assert page.locator(".turn .sources li").count() >= 1
    assert page.locator(".turn a.cite").count() >= 1, "reopened answers keep their citations"
    shot(page, "chat-conversation")


def test_a_failure_is_a_sentence_with_a_retry(page: Any, fake: FakeLLM) -> None:
    fake.script("browser", status(503), status(503))
    ask(page, "Who decides how parental leave is split?")
    error = page.locator(".state-error")
    error.wait_for(timeout=20_000)
    assert "Try again" in error.inner_text()
    shot(page, "chat-error")
    error.locator("button.retry").click()
    reply = wait_done(page, 2)
    assert "leave" in reply.locator(".answer-body").inner_text().lower()


def test_keyboard_alone_on_a_phone_sized_screen(page: Any) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    page.focus("#question")
    page.keyboard.type("How long is parental leave?")
    page.keyboard.press("Enter")
    reply = wait_done(page)
    reply.locator("a.cite").first.focus()
    page.keyboard.press("Enter")
    page.locator("#source-panel").wait_for(state="visible")
    box = page.locator("#source-panel").bounding_box()
    assert box is not None and box["width"] <= 390, "the panel fits the screen"
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, "no sideways scrolling"
    shot(page, "chat-phone")
    page.keyboard.press("Escape")
    assert page.evaluate("document.activeElement.classList.contains('cite')")


def test_hostile_documents_and_answers_stay_inert(page: Any, fake: FakeLLM) -> None:
    fake.script("browser", ok(text=HOSTILE_ANSWER, ttft_ms=100, tokens_per_s=40))
    ask(page, "What does the canteen serve on Tuesdays?")
    reply = wait_done(page)
    assert reply.locator("img, script, iframe, svg").count() == 0
    hrefs = reply.locator(".answer-body a").evaluate_all("els => els.map(a => a.href)")
    assert all(h.startswith(("https:", "http:", "mailto:")) or "#source-" in h for h in hrefs), (
        hrefs
    )
    assert "https://example.com/menu" in hrefs
    assert not any("evil.example" in h and "pixel" not in h for h in hrefs)
    # The document's hostile title and text, in the sources list and the passage, are text.
    sources = reply.locator(".sources li").all_inner_texts()
    assert any("<img" in s or "onerror" in s or "canteen" in s.lower() for s in sources)
    reply.locator("a.cite").first.click()
    page.locator("#source-text mark").wait_for()
    assert page.locator("#source-panel img, #source-panel script, #source-panel svg").count() == 0
    assert (
        "<script>" in page.locator("#source-text").inner_text()
        or "onerror" in page.locator("#source-text").inner_text()
    )
    shot(page, "chat-hostile")
    # The page forbids inline script outright.
    csp = httpx.get(page.url).headers["content-security-policy"]
    assert "script-src 'self'" in csp and "object-src 'none'" in csp
    assert json.dumps(page.dialogs) == "[]"


def test_a_held_answer_is_approved_in_the_review_queue_and_then_served_curated(
    page: Any, fake: FakeLLM, server: dict[str, Any]
) -> None:
    question = "What is the largest daily dose of ibuprofen for adults?"
    wrong = ok(text="Adults may take up to 2400 mg of ibuprofen a day [1].", ttft_ms=100)
    fake.script("browser", wrong, wrong)
    ask(page, question)
    reply = wait_done(page)
    assert "Held for review" in reply.locator(".badge-review").inner_text()
    assert "2400" not in reply.locator(".answer-body").inner_text(), "never shown unchecked"

    page.goto(server["url"] + "/console/review")
    page.locator("#review-list button", has_text=question).click()
    page.locator("#item-draft .mark-unsupported").first.wait_for()
    assert "2400 mg" in page.locator("#item-draft").inner_text()
    assert page.locator("#item-sources li").count() >= 1
    page.fill("#edit-text", "The maximum dose of ibuprofen for adults is 1200 mg a day [1].")
    shot(page, "console-review")
    page.click("#decision button[data-action=edit]")
    page.locator("#decided").wait_for()
    assert "edited" in page.locator("#decided-line").inner_text()
    assert "2400 mg" in page.locator("#decided-before").inner_text()
    assert "1200 mg" in page.locator("#decided-after").inner_text()

    page.goto(server["url"] + "/")
    ask(page, question)
    again = wait_done(page)
    assert "Curated answer" in again.locator(".badge-cache").inner_text()
    assert "1200 mg" in again.locator(".answer-body").inner_text()


def test_the_dashboard_draws_its_charts_from_the_answers(page: Any, server: dict[str, Any]) -> None:
    ask(page, "How long is parental leave?")
    wait_done(page)
    page.goto(server["url"] + "/console")
    images = page.locator(".charts img")
    assert images.count() == 6
    loaded = "() => [...document.querySelectorAll('.charts img')].map(i => i.naturalWidth)"
    deadline = time.monotonic() + 30
    while not all(page.evaluate(loaded)):  # the page's CSP forbids wait_for_function's eval
        assert time.monotonic() < deadline, "a chart did not load"
        time.sleep(0.2)
    captions = page.locator(".charts figcaption").all_inner_texts()
    assert "Time to first token" in captions and "Provider errors by provider" in captions
    shot(page, "console-dashboard")


def test_every_b2_and_b3_payload_stays_inert_on_every_surface(
    page: Any, fake: FakeLLM, server: dict[str, Any]
) -> None:
    """RELIABILITY.md B2 (HTML and script) and B3 (Markdown links and images), all at once,
    in an answer, in a document's text (snippets and the passage panel) and in file names
    (the documents table)."""
    from tests.test_render import B2, B3

    payloads = B2 + B3
    body = "\n\n".join(f"Keys are kept at the front desk. {p}" for p in payloads)
    files = [
        ("files", ("keys-" + str(i) + p[:40] + ".txt", body.encode())) for i, p in enumerate(B2[:6])
    ]
    response = httpx.post(f"{server['url']}/api/documents", files=files, timeout=30)
    assert response.status_code == 202, response.text
    uploaded = response.json()
    for f in uploaded["files"]:
        deadline = time.monotonic() + 60
        while httpx.get(f"{server['url']}/api/jobs/{f['job_id']}").json()["status"] != "indexed":
            assert time.monotonic() < deadline
            time.sleep(0.2)
    answer_text = "Keys are kept at the front desk [1].\n\n" + "\n\n".join(payloads)
    fake.script("browser", ok(text=answer_text, ttft_ms=50, tokens_per_s=200))
    ask(page, "Where are the keys kept?")
    reply = wait_done(page)
    hostile = "img, script, iframe, svg, form, meta, base, style, math, noscript"
    for surface in (".answer-body", ".sources", ".state", ".badges"):
        assert reply.locator(surface).locator(hostile).count() == 0, surface
    hrefs = page.locator(".thread a").evaluate_all("els => els.map(a => a.getAttribute('href'))")
    safe = ("https:", "http:", "mailto:", "#source-")
    assert all(h is None or h.startswith(safe) for h in hrefs), hrefs  # no href: inert
    reply.locator("a.cite").first.click()
    page.locator("#source-text mark").wait_for()
    assert page.locator("#source-text *:not(mark)").count() == 0, "the passage is text only"
    page.goto(server["url"] + "/upload")
    page.locator("#documents tbody tr", has_text="keys 1<img").first.wait_for()
    assert page.locator("#documents img, #documents script, #documents svg").count() == 0
    page.goto(server["url"] + "/console/playground")
    page.fill("#query", "front desk keys")
    page.click("#play button[type=submit]")
    page.wait_for_selector("#play-status:has-text('hybrid')")
    assert page.locator(".play-columns img, .play-columns script").count() == 0
