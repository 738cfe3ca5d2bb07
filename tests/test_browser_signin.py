"""Signing in, in a real browser: `docent serve` after `docent create-admin` and
`docent create-user`, so every page needs a session; a signed-in person's requests carry the
CSRF token. Screenshots go to test-artifacts/screenshots/."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import docent_serve, serve_env
from tests.test_browser import ARTIFACTS, _require_browser, chromium

pytestmark = [pytest.mark.slow, pytest.mark.browser]

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    _require_browser()
    data_dir = tmp_path_factory.mktemp("browser-signin") / "data"
    env = serve_env(data_dir, embedder="hash", ingest_own_docs="true")
    for command in (["create-admin", "ada"], ["create-user", "bob"]):
        made = subprocess.run(
            [sys.executable, "-m", "app.cli", *command, "--password", PASSWORD],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert made.returncode == 0, made.stdout + made.stderr
    with docent_serve(data_dir, env) as url:
        yield url


@pytest.fixture
def page(server: str) -> Iterator[Any]:
    with chromium() as browser:
        pg = browser.new_page()
        pg.foreign = []
        pg.on("request", lambda r: None if r.url.startswith(server) else pg.foreign.append(r.url))
        yield pg
        assert pg.foreign == []


def sign_in(page: Any, server: str, username: str, password: str = PASSWORD) -> None:
    page.goto(server + "/")
    assert page.url.startswith(server + "/login"), "pages need a session"
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")


def test_admin_signs_in_asks_and_signs_out(page: Any, server: str) -> None:
    sign_in(page, server, "ada", "not the password")
    assert "do not match" in page.locator(".form-error").inner_text()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "signin.png"), full_page=True)
    page.fill("#username", "ada")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(server + "/")
    assert "ada (admin)" in page.locator(".signout").inner_text()
    assert page.locator("nav a[href='/upload']").count() == 1
    # A question goes through: the page sends the session's CSRF token.
    page.fill("#question", "How do I upload a document?")
    page.press("#question", "Enter")
    page.locator(".turn .actions:not([hidden])").wait_for(timeout=60_000)
    assert page.locator(".turn .state-error").count() == 0
    page.goto(server + "/upload")
    assert page.locator("h1").inner_text() == "Upload documents"
    page.click(".signout button")
    page.wait_for_url(server + "/login")
    page.goto(server + "/")
    assert page.url.startswith(server + "/login"), "signed out"


def test_a_user_gets_the_chat_but_not_the_console(page: Any, server: str) -> None:
    sign_in(page, server, "bob")
    page.wait_for_url(server + "/")
    assert "bob" in page.locator(".signout").inner_text()
    assert page.locator("nav a[href='/upload']").count() == 0
    response = page.goto(server + "/upload")
    assert response is not None and response.status == 403
