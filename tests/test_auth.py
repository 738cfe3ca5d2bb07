"""Sign-in, roles, CSRF and API keys (app/accounts.py, app/web/auth.py), over HTTP."""

from __future__ import annotations

import re
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from app import accounts
from app.db.tables import User, WebSession
from app.services import Services

PASSWORD = "correct horse battery"


def services(client: TestClient[Any]) -> Services:
    found: Services = client.app.state.services
    return found


def login_form(client: TestClient[Any], next_: str = "/") -> str:
    page = client.get(f"/login?next={next_}")
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found
    return found.group(1)


def sign_in(client: TestClient[Any], username: str, password: str = PASSWORD, **form: str) -> Any:
    token = login_form(client)
    body = {"username": username, "password": password, "csrf_token": token, "next": "/"}
    return client.post("/login", data={**body, **form}, follow_redirects=False)


def csrf_of(client: TestClient[Any]) -> str:
    found = re.search(r'name="csrf-token" content="([^"]*)"', client.get("/").text)
    assert found
    return found.group(1)


@pytest.fixture
def admin(client: TestClient[Any]) -> str:
    accounts.create_user(services(client).db, "ada", PASSWORD, "admin")
    return "ada"


def test_without_any_user_docent_is_open_and_says_so(client: TestClient[Any]) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "No sign-in is set up" in page.text
    assert client.get("/upload").status_code == 200
    assert client.get("/api/documents").status_code == 200
    assert client.get("/login", follow_redirects=False).status_code in (302, 303)


def test_once_an_admin_exists_pages_and_api_need_sign_in(
    client: TestClient[Any], admin: str
) -> None:
    page = client.get("/upload?x=1", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=/upload%3Fx%3D1"
    api = client.get("/api/documents")
    assert api.status_code == 401 and api.json()["code"] == "sign_in_required"
    assert "create-api-key" in api.json()["message"]
    assert client.post("/v1/chat/completions", json={}).status_code == 401
    assert client.get("/health").status_code == 200
    assert client.get("/static/style.css").status_code == 200


def test_sign_in_sets_a_fresh_httponly_session_and_sign_out_ends_it(
    client: TestClient[Any], admin: str
) -> None:
    client.cookies.set("docent_session", "planted-by-someone-else")
    wrong = sign_in(client, admin, "not the password")
    assert wrong.status_code == 401 and "do not match" in wrong.text
    unknown = sign_in(client, "nobody", PASSWORD)
    assert unknown.status_code == 401 and "do not match" in unknown.text
    ok = sign_in(client, "ADA")  # usernames are not case-sensitive
    assert ok.status_code == 303 and ok.headers["location"] == "/"
    cookie = ok.headers["set-cookie"]
    assert "docent_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    value = re.search(r"docent_session=([^;]+)", cookie).group(1)  # type: ignore[union-attr]
    assert value and value != "planted-by-someone-else", "sign-in starts a new session"
    client.cookies.clear()
    client.cookies.set("docent_session", value)
    page = client.get("/")
    assert page.status_code == 200 and "ada" in page.text and "Sign out" in page.text
    # Only a hash of the cookie is stored.
    with services(client).db.session() as s:
        stored = list(s.scalars(select(WebSession.id_hash)))
    assert stored and value not in stored

    token = csrf_of(client)
    assert client.post("/logout", data={"csrf_token": "wrong"}).status_code == 403
    out = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    client.cookies.set("docent_session", value)  # the old cookie is worth nothing now
    assert client.get("/api/documents").status_code == 401


def test_sign_in_form_needs_its_own_token_and_never_redirects_off_site(
    client: TestClient[Any], admin: str
) -> None:
    login_form(client)
    forged = client.post(
        "/login",
        data={"username": admin, "password": PASSWORD, "csrf_token": "guess", "next": "/"},
        follow_redirects=False,
    )
    assert forged.status_code == 403 and "docent_session" not in forged.headers.get(
        "set-cookie", ""
    )
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        ok = sign_in(client, admin, next=target)
        assert ok.headers["location"] == "/", target


def test_changes_made_with_a_session_need_the_csrf_token(
    client: TestClient[Any], admin: str
) -> None:
    sign_in(client, admin)
    body = {"question": "What is Docent?"}
    refused = client.post("/api/chat", json=body)
    assert refused.status_code == 403 and refused.json()["code"] == "csrf_failed"
    assert "Reload the page" in refused.json()["message"]
    headers = {"X-CSRF-Token": csrf_of(client)}
    assert client.post("/api/chat", json=body, headers=headers).status_code == 200
    assert client.get("/api/documents").status_code == 200, "reading needs no token"


def test_users_chat_but_only_admins_change_documents(client: TestClient[Any], admin: str) -> None:
    accounts.create_user(services(client).db, "bob", PASSWORD, "user")
    sign_in(client, "bob")
    headers = {"X-CSRF-Token": csrf_of(client)}
    assert "/upload" not in client.get("/").text, "no console link for users"
    assert client.get("/upload").status_code == 403
    files = {"files": ("a.txt", b"Some text about things.")}
    refused = client.post("/api/documents", files=files, headers=headers)
    assert refused.status_code == 403
    assert client.delete("/api/documents/x", headers=headers).status_code == 403
    chat = client.post("/api/chat", json={"question": "What is Docent?"}, headers=headers)
    assert chat.status_code == 200


def test_api_keys_work_without_cookies_and_carry_a_role(
    client: TestClient[Any], admin: str
) -> None:
    db = services(client).db
    user_key = accounts.create_api_key(db, "bot", "user")
    admin_key = accounts.create_api_key(db, "sync", "admin")
    bot = {"Authorization": f"Bearer {user_key}"}
    assert client.post("/api/chat", json={"question": "What is Docent?"}, headers=bot).is_success
    files = {"files": ("a.txt", b"Some text about things.")}
    assert client.post("/api/documents", files=files, headers=bot).status_code == 403
    sync = {"Authorization": f"Bearer {admin_key}"}
    assert client.post("/api/documents", files=files, headers=sync).status_code == 202
    bad = client.get("/api/documents", headers={"Authorization": "Bearer dk_nope"})
    assert bad.status_code == 401


def test_password_guessing_is_slowed_down(client: TestClient[Any], admin: str) -> None:
    codes = [
        client.post(
            "/login",
            data={"username": admin, "password": f"guess {i}", "csrf_token": login_form(client)},
            follow_redirects=False,
        ).status_code
        for i in range(22)
    ]
    assert codes[:20] == [401] * 20 and codes[-1] == 429


def test_accounts_refuse_weak_or_duplicate_input(client: TestClient[Any]) -> None:
    db = services(client).db
    with pytest.raises(Exception, match="at least 10"):
        accounts.create_user(db, "eve", "short", "admin")
    with pytest.raises(Exception, match="username"):
        accounts.create_user(db, "../eve", PASSWORD, "admin")
    accounts.create_user(db, "eve", PASSWORD, "user")
    with pytest.raises(Exception, match="already"):
        accounts.create_user(db, "EVE", PASSWORD, "admin")


def test_cli_creates_the_first_admin(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.cli import cli
    from app.db import Database
    from app.settings import Settings

    monkeypatch.setenv("DOCENT_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    short = runner.invoke(cli, ["create-admin", "ada", "--password", "short"])
    assert short.exit_code == 1 and "at least 10" in short.output
    made = runner.invoke(cli, ["create-admin", "ada"], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert made.exit_code == 0, made.output
    assert "Sign-in is required from now on" in made.output
    key = runner.invoke(cli, ["create-api-key", "bot"])
    assert key.exit_code == 0 and key.output.strip().splitlines()[-1].startswith("dk_")
    db = Database(Settings().sqlalchemy_url)
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(User)) == 1
        assert s.scalar(select(User.role)) == "admin"
    db.close()


@pytest.mark.slow
def test_command_line_tools_keep_working_against_a_server_that_requires_sign_in(
    tmp_path: Any,
) -> None:
    import json
    import stat
    import subprocess
    import sys

    import httpx

    from tests.conftest import docent_serve, serve_env

    data_dir = tmp_path / "data"
    env = serve_env(data_dir, embedder="hash", ingest_own_docs="true")

    def docent(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "app.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert docent("create-admin", "ada", "--password", PASSWORD).returncode == 0
    with docent_serve(data_dir, env) as url:
        assert httpx.get(f"{url}/api/documents").status_code == 401
        listed = docent("documents", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout), "the CLI went through the server with its local key"
        info = data_dir / "server.json"
        assert stat.S_IMODE(info.stat().st_mode) == 0o600, "the local key is private"


def test_each_person_sees_and_continues_only_their_own_conversations(
    client: TestClient[Any], admin: str
) -> None:
    from tests.test_api import sse_events

    db = services(client).db
    accounts.create_user(db, "bob", PASSWORD, "user")
    sign_in(client, "bob")
    bob = {"X-CSRF-Token": csrf_of(client)}
    events = sse_events(
        client.post("/api/chat", json={"question": "What is Docent?"}, headers=bob).text
    )
    conv = events[0][1]["conversation_id"]
    assert [c["id"] for c in client.get("/api/conversations").json()] == [conv]

    client.cookies.clear()
    sign_in(client, admin)
    ada = {"X-CSRF-Token": csrf_of(client)}
    assert client.get("/api/conversations").json() == [], "ada does not see bob's"
    assert client.get(f"/api/conversations/{conv}").status_code == 404
    follow = sse_events(
        client.post(
            "/api/chat",
            json={"question": "And more?", "conversation_id": conv},
            headers=ada,
        ).text
    )
    assert follow[-1][0] == "error" and follow[-1][1]["code"] == "not_found"
    key = accounts.create_api_key(db, "bot", "user")
    client.cookies.clear()
    bot = client.get("/api/conversations", headers={"Authorization": f"Bearer {key}"})
    assert bot.json() == []
