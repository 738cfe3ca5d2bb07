"""The chat and upload pages in a real browser: Debian's chromium driven by Playwright."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LiveServer, wait_until_idle

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = os.environ.get("DOCENT_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"


def _require_browser() -> None:
    if shutil.which(CHROMIUM) is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser tests, but {CHROMIUM} is missing")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")


@contextmanager
def chromium() -> Iterator[Any]:
    """Debian's chromium under Playwright, offline (never `playwright install`)."""
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Any, live_server: LiveServer) -> Iterator[Any]:
    context = browser.new_context()
    pg = context.new_page()
    dialogs: list[str] = []
    foreign: list[str] = []
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pg.on("request", lambda r: None if r.url.startswith(live_server.url) else foreign.append(r.url))
    pg.dialogs = dialogs
    pg.foreign = foreign
    yield pg
    context.close()


def test_chat_streams_answer_and_links_sources(page: Any, live_server: LiveServer) -> None:
    wait_until_idle(live_server.url)
    page.goto(live_server.url + "/")
    # Count how often the answer changes while it streams.
    page.evaluate(
        """() => { window.__updates = 0;
        new MutationObserver(() => window.__updates++).observe(
            document.getElementById('thread'),
            {childList: true, characterData: true, subtree: true});
        }"""
    )
    page.fill("#question", "How do I upload a document?")
    page.press("#question", "Enter")
    page.wait_for_selector(".turn .actions:not([hidden])", timeout=60_000)
    assert page.evaluate("window.__updates") >= 3, "text should arrive in several steps"
    assert "upload" in page.inner_text(".turn .answer-body").lower()
    sources = page.locator(".turn .sources li")
    assert sources.count() >= 1
    page.locator(".turn .answer-body a.cite").first.click()
    page.locator("#source-panel").wait_for(state="visible")
    page.locator("#source-text mark").wait_for()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "chat.png"), full_page=True)
    assert page.dialogs == [] and page.foreign == []


def test_upload_page_indexes_a_file_and_hostile_text_stays_inert(
    page: Any, live_server: LiveServer, tmp_path: Path
) -> None:
    hostile = tmp_path / 'notes"><img src=x onerror=alert(1)>.md'
    hostile.write_text(
        "# Canteen\n\nThe canteen serves soup on Tuesdays. "
        '<img src=x onerror="window.__pwned=1"> <script>window.__pwned=1</script>\n'
    )
    page.goto(live_server.url + "/upload")
    page.set_input_files("#files", str(hostile))
    page.fill("#collection", "browser")
    page.click("#upload-form button[type=submit]")
    from playwright.sync_api import expect

    expect(page.locator("#progress li").first).to_contain_text("indexed", timeout=90_000)
    row = page.locator("#documents tbody tr").filter(has_text="onerror=alert(1)")
    expect(row).to_contain_text("indexed", timeout=90_000)
    # The hostile file name is shown as text, not markup.
    assert row.locator("td").first.inner_text().startswith('notes"><img')
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "upload.png"), full_page=True)

    page.goto(live_server.url + "/")
    page.fill("#question", "What does the canteen serve on Tuesdays?")
    page.press("#question", "Enter")
    page.wait_for_selector(".turn .sources li", timeout=60_000)
    page.wait_for_selector("#send:not([disabled])", timeout=60_000)
    assert page.evaluate("window.__pwned") is None
    assert page.evaluate("document.querySelectorAll('.turn img').length") == 0
    assert page.dialogs == [] and page.foreign == []


def test_drop_many_files_each_with_its_own_progress_then_index_one_again(
    page: Any, live_server: LiveServer
) -> None:
    from playwright.sync_api import expect

    page.goto(live_server.url + "/upload")
    page.fill("#collection", "dropped")
    page.evaluate(
        """() => {
        const files = [
          new File(["# Bikes\\n\\nBikes are parked in the basement."], "bikes.md"),
          new File(["Lockers are on the second floor."], "lockers.txt"),
          new File([""], "empty.txt"),
        ];
        const data = new DataTransfer();
        for (const f of files) data.items.add(f);
        const drop = document.getElementById("drop");
        drop.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true}));
        }"""
    )
    rows = page.locator("#progress li")
    expect(rows).to_have_count(3)
    expect(rows.filter(has_text="bikes.md")).to_contain_text("indexed", timeout=90_000)
    expect(rows.filter(has_text="lockers.txt")).to_contain_text("indexed", timeout=90_000)
    expect(rows.filter(has_text="empty.txt")).to_contain_text("empty", timeout=30_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "console-documents.png"), full_page=True)

    doc = page.locator("#documents tbody tr").filter(has_text="lockers")
    expect(doc).to_contain_text("indexed")
    version = int(doc.locator("td").nth(5).inner_text())
    doc.locator("button", has_text="Index again").click()
    expect(doc.locator("td").nth(5)).to_have_text(str(version + 1), timeout=90_000)
    expect(doc).to_contain_text("indexed")
    # The console followed the job to its end (the table alone stops polling while the old
    # version still serves) and says so.
    expect(page.locator("#upload-status")).to_contain_text(
        f"is indexed again (version {version + 1})"
    )
    assert page.dialogs == [] and page.foreign == []


def test_playground_shows_dense_bm25_and_hybrid_side_by_side(
    page: Any, live_server: LiveServer
) -> None:
    wait_until_idle(live_server.url)
    page.goto(live_server.url + "/console/playground")
    page.fill("#query", "How do I upload a document?")
    page.click("#play button[type=submit]")
    page.wait_for_selector("#play-status:has-text('hybrid')", timeout=30_000)
    for column in ("#col-dense", "#col-sparse", "#col-hybrid"):
        items = page.locator(f"{column} li")
        assert items.count() == 5, column
        assert "score" in items.first.inner_text()
    assert page.locator("li.in-all").count() >= 3, "some passages are found by all three"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "console-playground.png"), full_page=True)
    assert page.dialogs == [] and page.foreign == []
