"""Sign-in for the web and keys for the API (app/accounts.py holds the rules).

``AuthMiddleware`` works out who sends each request and puts it in ``request.user`` (a
``Principal``): an API key (``Authorization: Bearer``), else a session cookie, else nobody. Until
the first admin exists everyone is an admin (the open embedded default). Otherwise nobody gets
pages (they are sent to /login) or the API (401 with what to do).

CSRF: a request made with a session cookie that changes something (not GET, HEAD or OPTIONS)
must carry the session's token in the ``X-CSRF-Token`` header (the pages read it from a meta
tag), or in a ``csrf_token`` form field for the sign-out form. A cross-site page cannot read the
token, and cannot set that header without a CORS preflight, which Docent never grants. The
sign-in form is protected by a double-submit cookie. The session cookie is HttpOnly and
SameSite=Lax.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any, cast
from urllib.parse import quote

import anyio
from litestar import Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie, State
from litestar.enums import MediaType, RequestEncodingType, ScopeType
from litestar.exceptions import PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractMiddleware
from litestar.params import Body
from litestar.response import Redirect, Template
from litestar.types import Receive, Scope, Send

from app.accounts import (
    OPEN,
    SESSION_DAYS,
    Principal,
    SignInFailed,
    api_key_principal,
    count_users,
    session_principal,
    sign_in,
    sign_out,
    users_created,
)
from app.services import Services

LOCAL = Principal(None, "command line on this machine", "admin", "api_key")
SESSION_COOKIE = "docent_session"
LOGIN_CSRF_COOKIE = "docent_login_csrf"
_PUBLIC = ("/login", "/static/", "/health", "/favicon.ico")
_SAFE = ("GET", "HEAD", "OPTIONS")


class _UserCount:
    """How many users exist, re-read at most every two seconds, so that an open Docent (no
    users) answers a request without a database read or a thread. A user created in this
    process counts at once; one created by the CLI in another process within two seconds."""

    def __init__(self) -> None:
        self.value: int | None = None
        self.read_at = float("-inf")
        self.seen = -1

    def fresh(self) -> int | None:
        stale = time.monotonic() - self.read_at > 2.0 or self.seen != users_created()
        return None if stale else self.value

    def read(self, services: Services) -> int:
        self.seen = users_created()
        self.value = count_users(services.db)
        self.read_at = time.monotonic()
        return self.value

    def get(self, services: Services) -> int:
        found = self.fresh()
        return self.read(services) if found is None else found


class AuthMiddleware(AbstractMiddleware):
    def __init__(self, app: Any, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._users = _UserCount()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        connection: ASGIConnection[Any, Any, Any, Any] = ASGIConnection(scope, receive=receive)
        services: Services = connection.app.state.services
        path, method = scope["path"], str(cast(Any, scope)["method"])
        if connection.headers.get("authorization") or connection.cookies.get(SESSION_COOKIE):
            principal = await anyio.to_thread.run_sync(self._who, connection, services)
        else:  # nobody signed in: open, or not, from the cached count
            users = self._users.fresh()
            if users is None:
                users = await anyio.to_thread.run_sync(self._users.read, services)
            principal = OPEN if users == 0 else None
        if principal is None and not path.startswith(_PUBLIC):
            if path.startswith(("/api/", "/v1/")):
                await _send_json(
                    send,
                    401,
                    "sign_in_required",
                    "Sign in first, or send an API key as 'Authorization: Bearer <key>' (an "
                    "admin creates one with 'docent create-api-key').",
                )
            else:
                target = quote(
                    path
                    + ("?" + scope["query_string"].decode() if scope.get("query_string") else "")
                )
                await _send_redirect(send, f"/login?next={target}")
            return
        if (
            principal is not None
            and principal.via == "session"
            and method not in _SAFE
            and path not in ("/login", "/logout")  # each checks its own form token
        ):
            sent = connection.headers.get("x-csrf-token", "")
            if not principal.csrf_token or not secrets.compare_digest(sent, principal.csrf_token):
                await _send_json(
                    send,
                    403,
                    "csrf_failed",
                    "This page is out of date or the request did not come from Docent's own "
                    "pages. Reload the page and try again.",
                )
                return
        scope["user"] = principal
        scope["auth"] = principal.via if principal else None
        await self.app(scope, receive, send)

    def _who(
        self, connection: ASGIConnection[Any, Any, Any, Any], services: Services
    ) -> Principal | None:
        bearer = connection.headers.get("authorization", "")
        if bearer.lower().startswith("bearer "):
            key = bearer[7:].strip()
            local = getattr(connection.app.state, "local_token", None)
            if local and secrets.compare_digest(key, local):
                return LOCAL
            found = api_key_principal(services.db, key)
            if found is not None or self._users.get(services):
                return found
        cookie = connection.cookies.get(SESSION_COOKIE)
        if cookie:
            found = session_principal(services.db, cookie)
            if found is not None:
                return found
        if self._users.get(services) == 0:
            return OPEN
        return None


async def _send_json(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"code": code, "message": message, "retryable": False}).encode()
    start: Any = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ],
    }
    await send(start)
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _send_redirect(send: Send, location: str) -> None:
    start: Any = {
        "type": "http.response.start",
        "status": 303,
        "headers": [(b"location", location.encode()), (b"content-length", b"0")],
    }
    await send(start)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def principal_of(request: Request[Any, Any, Any]) -> Principal | None:
    """Who sent the request (None: nobody signed in, on a public page)."""
    user = request.scope.get("user")
    return user if isinstance(user, Principal) else None


def admin_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard: the console and document changes are for admins."""
    user = connection.scope.get("user")
    if not isinstance(user, Principal) or not user.is_admin:
        raise PermissionDeniedException("Only an admin can do this. Ask an admin of this Docent.")


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never '//host' or 'https://host'."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _cookie_secure(request: Request[Any, Any, Any]) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"


def _login_form(
    request: Request[Any, Any, Any],
    target: str,
    error: str | None = None,
    username: str = "",
    status: int = 200,
) -> Template:
    """The sign-in page with a fresh form token, also set as a cookie (double submit)."""
    token = secrets.token_urlsafe(32)
    context = {"page": "login", "csrf": token, "next": target, "error": error}
    return Template(
        "login.html",
        context={**context, "username": username[:64]},
        status_code=status,
        cookies=[
            Cookie(
                key=LOGIN_CSRF_COOKIE,
                value=token,
                httponly=True,
                samesite="strict",
                secure=_cookie_secure(request),
                max_age=3600,
            )
        ],
    )


def owner_of(request: Request[Any, Any, Any]) -> str | None:
    """Whose conversations a request may see and continue."""
    who = principal_of(request)
    return who.owner if who else None


@get("/login", include_in_schema=False, media_type=MediaType.HTML)
async def login_page(request: Request[Any, Any, Any], next: str | None = None) -> Any:
    who = principal_of(request)
    if who is not None and who.via == "open":
        return Redirect("/")
    return _login_form(request, _safe_next(next))


@post("/login", include_in_schema=False, status_code=303, media_type=MediaType.HTML)
async def login(
    request: Request[Any, Any, Any],
    state: State,
    data: dict[str, str] = Body(media_type=RequestEncodingType.URL_ENCODED),
) -> Any:
    services: Services = state.services
    target = _safe_next(data.get("next"))
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    sent = data.get("csrf_token", "")

    def again(message: str, status: int) -> Template:
        return _login_form(request, target, message, data.get("username", ""), status)

    if not expected or not secrets.compare_digest(expected, sent):
        return again("The sign-in form was out of date. Please sign in again.", 403)
    try:
        cookie, _ = await anyio.to_thread.run_sync(
            sign_in, services.db, data.get("username", ""), data.get("password", "")
        )
    except SignInFailed as exc:
        return again(exc.message, 401)
    return Redirect(
        target,
        status_code=303,
        cookies=[
            Cookie(
                key=SESSION_COOKIE,
                value=cookie,
                httponly=True,
                samesite="lax",
                secure=_cookie_secure(request),
                max_age=SESSION_DAYS * 86400,
                path="/",
            ),
            Cookie(key=LOGIN_CSRF_COOKIE, value="", max_age=0),
        ],
    )


@post("/logout", include_in_schema=False, status_code=303)
async def logout(
    request: Request[Any, Any, Any],
    state: State,
    data: dict[str, str] = Body(media_type=RequestEncodingType.URL_ENCODED),
) -> Response[Any]:
    services: Services = state.services
    who = principal_of(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    if who is None or who.via != "session" or not cookie:
        return Redirect("/")
    if not secrets.compare_digest(data.get("csrf_token", ""), who.csrf_token or ""):
        raise PermissionDeniedException("This page is out of date. Reload it and sign out again.")
    await anyio.to_thread.run_sync(sign_out, services.db, cookie)
    return Redirect(
        "/login", status_code=303, cookies=[Cookie(key=SESSION_COOKIE, value="", max_age=0)]
    )
