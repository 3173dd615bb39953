"""Browser sessions: signed cookies that carry no secret, and tokens against cross-site posts.

A session cookie is `repository.permission.expiry.epoch.id.signature`, signed with HMAC-SHA256
under a key kept in ROOT (0600), so servers sharing a ROOT accept each other's sessions and a
restart keeps them. The original put the raw secret in its cookie; ours holds only what was
granted. Logging out revokes the id in `ROOT/sessions-revoked`, which every server sharing the
ROOT reads, so a copied cookie dies with its logout.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pywharf.auth import Permission

__all__ = ["SESSION_COOKIE", "CSRF_COOKIE", "Session", "SessionKeys", "parse_cookies"]

SESSION_COOKIE = "pywharf_session"
CSRF_COOKIE = "pywharf_csrf"
_KEY_FILE = "session-key"
_REVOKED_FILE = "sessions-revoked"
# A login form is filled in within this long; an older token is refused (a planted one too).
CSRF_TOKEN_SECONDS = 3600


@dataclass(frozen=True)
class Session:
    repository: str
    permission: Permission
    expires: int
    epoch: str  # the repository's configuration when it was issued: a new secret ends it
    id: str  # revoked by logout


def parse_cookies(header: str | None) -> dict[str, str]:
    cookies = {}
    for item in (header or "").split(";"):
        name, equals, value = item.strip().partition("=")
        if equals:
            cookies[name] = value
    return cookies


def _load_key(root: Path) -> bytes:
    path = root / _KEY_FILE
    try:
        return bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError):
        pass
    key = secrets.token_bytes(32)
    root.mkdir(parents=True, exist_ok=True)
    temporary = root / f".{_KEY_FILE}.{os.getpid()}"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(key.hex())
    try:
        os.link(temporary, path)  # the first server to write the key wins; others read it
    except FileExistsError:
        key = bytes.fromhex(path.read_text().strip())
    finally:
        temporary.unlink()
    return key


class Revocations:
    """Session ids logged out before they expired: one `id expiry` line each, in ROOT.

    Appended with O_APPEND (one short write, so lines never interleave) and re-read when the
    file grew, so a logout on one server ends the session on every server sharing the ROOT.
    """

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._revoked: dict[str, int] = {}
        self._size = 0
        self._lock = threading.Lock()

    def revoke(self, session_id: str, expires: int) -> None:
        with self._lock:
            self._revoked[session_id] = expires
            if self._path is None:
                return
            line = f"{session_id} {expires}\n".encode()
            descriptor = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(descriptor, line)
            finally:
                os.close(descriptor)

    def is_revoked(self, session_id: str, now: float) -> bool:
        with self._lock:
            self._reload(now)
            return session_id in self._revoked

    def _reload(self, now: float) -> None:
        try:
            size = self._path.stat().st_size if self._path else 0
        except FileNotFoundError:
            size = 0
        if self._path is None or size == self._size:
            return
        self._size = size
        text = self._path.read_bytes().decode("ascii", "replace")
        for line in text.splitlines():
            session_id, _, expires = line.partition(" ")
            if expires.isdigit() and expires.isascii() and int(expires) >= now:
                self._revoked[session_id] = int(expires)
        # Forget what expired anyway: the cookie's own expiry refuses it now.
        self._revoked = {k: v for k, v in self._revoked.items() if v >= now}


class SessionKeys:
    """Signs and checks session cookies and CSRF tokens."""

    def __init__(self, key: bytes, lifetime: int, revoked: Path | None = None) -> None:
        self._key = key
        self.lifetime = lifetime
        self._revocations = Revocations(revoked)

    @classmethod
    def load(cls, root: Path, lifetime: int) -> SessionKeys:
        return cls(_load_key(root), lifetime, root / _REVOKED_FILE)

    def _sign(self, payload: str) -> str:
        mac = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def signer(self, purpose: str) -> Callable[[str], str]:
        """A MAC under this key for another use (minted tokens): `purpose` keeps it apart from
        session cookies, so neither can be passed off as the other."""
        return lambda payload: self._sign(f"{purpose}\n{payload}")

    def issue(
        self, repository: str, permission: Permission, epoch: str = "", now: float | None = None
    ) -> str:
        expires = int((time.time() if now is None else now) + self.lifetime)
        name = base64.urlsafe_b64encode(repository.encode()).rstrip(b"=").decode()
        session_id = secrets.token_urlsafe(12)
        payload = f"{name}.{int(permission)}.{expires}.{epoch}.{session_id}"
        return f"{payload}.{self._sign(payload)}"

    def check(self, cookie: str | None, now: float | None = None) -> Session | None:
        session = self._verified(cookie, time.time() if now is None else now)
        if session is None or self._revocations.is_revoked(session.id, time.time()):
            return None
        return session

    def _verified(self, cookie: str | None, now: float) -> Session | None:
        if not cookie or cookie.count(".") != 5:
            return None
        payload, _, signature = cookie.rpartition(".")
        if not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            return None
        name, permission, expires, epoch, session_id = payload.split(".")
        if int(expires) < now:  # signed by us: the fields are ours, ASCII digits
            return None
        padded = name + "=" * (-len(name) % 4)
        repository = base64.urlsafe_b64decode(padded).decode()
        return Session(repository, Permission(int(permission)), int(expires), epoch, session_id)

    def revoke(self, cookie: str | None) -> None:
        """Logout: the session ends on every server, even if a copy of the cookie survives."""
        session = self._verified(cookie, time.time())
        if session is not None:
            self._revocations.revoke(session.id, session.expires)

    def fingerprint(self, text: str) -> str:
        """A keyed digest naming a configuration: it changes with the secrets in `text`, and
        without the key it tells nothing of them (it travels in the session cookie)."""
        mac = hmac.new(self._key, b"configuration:" + text.encode(), hashlib.sha256)
        return mac.hexdigest()[:16]

    def csrf_token(self, now: float | None = None, session: str = "") -> str:
        """A fresh token, signed and dated: only this server's recent tokens are accepted.

        With `session` (a session id) it is bound to that session: the web pages' change forms
        carry one, so a token read from one session never acts for another.
        """
        expires = int((time.time() if now is None else now) + CSRF_TOKEN_SECONDS)
        payload = f"csrf.{secrets.token_urlsafe(18)}.{expires}"  # urlsafe base64 has no "."
        return f"{payload}.{self._sign(f'{payload}|{session}')}"

    def csrf_valid(self, token: str, now: float | None = None, session: str = "") -> bool:
        """Made by `csrf_token` under our key (for this session), and not expired: a value an
        attacker planted in the form and the cookie alike (a "login CSRF" pair) is neither."""
        parts = token.split(".")
        if not token.isascii() or len(parts) != 4 or parts[0] != "csrf":
            return False
        payload, signature, expires = ".".join(parts[:3]), parts[3], parts[2]
        expected = self._sign(f"{payload}|{session}")
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            return False
        return expires.isdigit() and int(expires) >= (time.time() if now is None else now)
