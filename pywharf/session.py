"""Browser sessions: signed cookies that carry no secret, and tokens against cross-site posts.

A session cookie is `repository.permission.expiry.signature`, signed with HMAC-SHA256 under a
key kept in ROOT (0600), so servers sharing a ROOT accept each other's sessions and a restart
keeps them. The original put the raw secret in its cookie; ours holds only what was granted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from pywharf.auth import Permission

__all__ = ["SESSION_COOKIE", "CSRF_COOKIE", "Session", "SessionKeys", "parse_cookies"]

SESSION_COOKIE = "pywharf_session"
CSRF_COOKIE = "pywharf_csrf"
_KEY_FILE = "session-key"


@dataclass(frozen=True)
class Session:
    repository: str
    permission: Permission
    expires: int
    epoch: str  # the repository's configuration when it was issued: a new secret ends it


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


class SessionKeys:
    """Signs and checks session cookies and CSRF tokens."""

    def __init__(self, key: bytes, lifetime: int) -> None:
        self._key = key
        self.lifetime = lifetime

    @classmethod
    def load(cls, root: Path, lifetime: int) -> SessionKeys:
        return cls(_load_key(root), lifetime)

    def _sign(self, payload: str) -> str:
        mac = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def issue(
        self, repository: str, permission: Permission, epoch: str = "", now: float | None = None
    ) -> str:
        expires = int((time.time() if now is None else now) + self.lifetime)
        name = base64.urlsafe_b64encode(repository.encode()).rstrip(b"=").decode()
        payload = f"{name}.{int(permission)}.{expires}.{epoch}"
        return f"{payload}.{self._sign(payload)}"

    def check(self, cookie: str | None, now: float | None = None) -> Session | None:
        if not cookie or cookie.count(".") != 4:
            return None
        payload, _, signature = cookie.rpartition(".")
        if not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            return None
        name, permission, expires, epoch = payload.split(".")
        if int(expires) < (time.time() if now is None else now):
            return None
        padded = name + "=" * (-len(name) % 4)
        repository = base64.urlsafe_b64decode(padded).decode()
        return Session(repository, Permission(int(permission)), int(expires), epoch)

    def fingerprint(self, text: str) -> str:
        """A keyed digest naming a configuration: it changes with the secrets in `text`, and
        without the key it tells nothing of them (it travels in the session cookie)."""
        mac = hmac.new(self._key, b"configuration:" + text.encode(), hashlib.sha256)
        return mac.hexdigest()[:16]

    def csrf_token(self) -> str:
        return secrets.token_urlsafe(24)
