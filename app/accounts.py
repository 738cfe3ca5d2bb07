"""People and keys: who may use Docent, and as what.

- Users sign in to the web pages with a password (hashed with Argon2id by argon2-cffi) and get
  a session: a random cookie value whose SHA-256 is stored with the user, an expiry, and the
  token that unsafe requests of that session must echo (CSRF). Signing in always starts a new
  session, so a session id planted before sign-in is worth nothing after it.
- API clients send ``Authorization: Bearer <key>``; only the key's SHA-256 is stored.
- Roles: ``admin`` (the chat, the console, documents) and ``user`` (the chat).

Until the first admin exists (``docent create-admin``), Docent is open: everyone is an admin,
which is the embedded default on 127.0.0.1. After that, every page and API call needs a
session or a key.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select

from app.db import Database
from app.db.tables import ApiKey, User, WebSession, utcnow
from app.errors import DocentError, InvalidRequest

Role = Literal["admin", "user"]
SESSION_DAYS = 14
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_hasher = PasswordHasher()
# Verified when a username is unknown, so that a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


class SignInFailed(DocentError):
    code = "sign_in_failed"
    status = 401
    audience = "user"


@dataclass(frozen=True)
class Principal:
    """Who is making a request."""

    user_id: str | None
    name: str
    role: Role
    via: Literal["open", "session", "api_key"]
    csrf_token: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def owner(self) -> str | None:
        """Whose conversations these are; None for everyone when no sign-in is set up."""
        if self.user_id:
            return f"user:{self.user_id}"
        return f"key:{self.name}" if self.via == "api_key" else None


OPEN = Principal(None, "everyone (no sign-in set up)", "admin", "open")


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


_users_created = 0


def users_created() -> int:
    """How many users this process has created: a cheap way for caches of the user count to
    notice a new one."""
    return _users_created


def count_users(db: Database) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(User)) or 0


def create_user(db: Database, username: str, password: str, role: Role) -> str:
    if not _USERNAME.match(username):
        raise InvalidRequest(
            "A username is 1-64 letters, digits, '.', '_', '-' or '@', starting with a letter "
            "or digit."
        )
    if len(password) < 10:
        raise InvalidRequest("A password needs at least 10 characters.")
    if role not in ("admin", "user"):
        raise InvalidRequest("A role is 'admin' or 'user'.")
    with db.session() as s:
        if s.scalar(select(User).where(func.lower(User.username) == username.lower())):
            raise InvalidRequest(f"There is already a user called {username}.")
        user = User(
            id=str(uuid.uuid4()), username=username, password_hash=_hasher.hash(password), role=role
        )
        s.add(user)
        user_id = user.id
    global _users_created
    _users_created += 1
    return user_id


def sign_in(db: Database, username: str, password: str) -> tuple[str, Principal]:
    """A new session for the user: (the cookie's value, who they are)."""
    with db.session() as s:
        user = s.scalar(select(User).where(func.lower(User.username) == username.lower()))
        try:
            _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            user = None
        if user is None:
            raise SignInFailed("That username and password do not match. Try again.")
        if _hasher.check_needs_rehash(user.password_hash):
            user.password_hash = _hasher.hash(password)
        cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = utcnow()
        s.execute(delete(WebSession).where(WebSession.expires_at < now))
        s.add(
            WebSession(
                id_hash=_sha256(cookie),
                user_id=user.id,
                csrf_token=csrf,
                expires_at=now + timedelta(days=SESSION_DAYS),
            )
        )
        role: Role = "admin" if user.role == "admin" else "user"
        return cookie, Principal(user.id, user.username, role, "session", csrf)


def session_principal(db: Database, cookie: str) -> Principal | None:
    with db.session() as s:
        row = s.get(WebSession, _sha256(cookie))
        if row is None or row.expires_at < utcnow():
            return None
        user = s.get(User, row.user_id)
        if user is None:
            return None
        role: Role = "admin" if user.role == "admin" else "user"
        return Principal(user.id, user.username, role, "session", row.csrf_token)


def sign_out(db: Database, cookie: str) -> None:
    with db.session() as s:
        s.execute(delete(WebSession).where(WebSession.id_hash == _sha256(cookie)))


def create_api_key(db: Database, name: str, role: Role) -> str:
    """A new key, returned once: only its hash is kept."""
    key = "dk_" + secrets.token_urlsafe(32)
    with db.session() as s:
        s.add(ApiKey(id=str(uuid.uuid4()), key_hash=_sha256(key), name=name, role=role))
    return key


def api_key_principal(db: Database, key: str) -> Principal | None:
    with db.session() as s:
        row = s.scalar(select(ApiKey).where(ApiKey.key_hash == _sha256(key)))
        if row is None:
            return None
        role: Role = "admin" if row.role == "admin" else "user"
        return Principal(None, f"API key {row.name}", role, "api_key")
