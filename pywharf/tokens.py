"""Repository tokens: what a credential may do (a `Grant`), and the table of created tokens.

A token is `pywharf_<id>_<secret>`: the id finds its entry, and the SHA-256 of the whole token
is compared in constant time with the stored one. Only that hash is stored (the secret has 256
bits, so a fast hash is enough: nothing can be guessed from it). The table is one JSON
document in the repository's own storage (`Backend.read_tokens` / `update_tokens`), so every
server sharing the storage sees a creation or a revocation at its next sync.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
from fnmatch import fnmatchcase
from typing import Any

from pywharf.errors import BadRequest

__all__ = [
    "ACTIONS",
    "ALL_RIGHTS",
    "MINTED_PREFIX",
    "TOKEN_PREFIX",
    "Grant",
    "TokenRecord",
    "TokenTable",
    "decode_minted",
    "dump_tokens",
    "encode_minted",
    "new_token",
    "parse_rights",
    "parse_globs",
    "with_last_use",
    "with_token",
    "without_token",
]

TOKEN_PREFIX = "pywharf_"
MINTED_PREFIX = "pywharf_m."  # a minted (trusted publishing) token: signed, stored nowhere
ACTIONS = ("read", "upload", "yank", "delete")
ALL_RIGHTS = frozenset(ACTIONS)
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_ID = re.compile(r"[0-9a-f]{12}\Z")
_GLOB = re.compile(r"[a-z0-9*?\[\]._-]{1,100}\Z")


def parse_rights(text: str | Iterable[str]) -> frozenset[str]:
    """`read,upload,yank,delete` (any of them); an unknown action is a `BadRequest`."""
    items = text.split(",") if isinstance(text, str) else list(text)
    rights = frozenset(item.strip().lower() for item in items if item.strip())
    unknown = sorted(rights - ALL_RIGHTS)
    if unknown or not rights:
        raise BadRequest(f"--can takes {','.join(ACTIONS)}; got {','.join(unknown) or 'none'}")
    return rights


def parse_globs(text: str | Iterable[str]) -> tuple[str, ...] | None:
    """Globs over normalized project names (`acme-*`); none given: every project (None)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    globs = tuple(sorted({item.strip().lower() for item in items if item.strip()}))
    for glob in globs:
        if not _GLOB.match(glob):
            raise BadRequest(f"{glob!r} is not a glob over normalized project names")
    return globs or None


@dataclass(frozen=True)
class Grant:
    """What a credential may do in one repository, and who it is (for the audit log)."""

    actor: str  # `secret:read`, `secret:write`, `token:<label>`, `oidc:<repo>@<workflow>`
    rights: frozenset[str]
    projects: tuple[str, ...] | None = None  # globs; None: every project
    _seen: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    def can(self, action: str) -> bool:
        return action in self.rights

    def covers(self, project: str) -> bool:
        """Whether `project` (a normalized name) is within the scope; memoized per name."""
        if self.projects is None:
            return True
        known = self._seen.get(project)
        if known is None:
            if len(self._seen) > 4096:  # a long-lived grant (a minted token) stays small
                self._seen.clear()
            known = self._seen[project] = any(fnmatchcase(project, g) for g in self.projects)
        return known


@dataclass(frozen=True)
class TokenRecord:
    """One created token as stored: never the token, only its hash."""

    label: str
    id: str
    sha256: str
    rights: frozenset[str]
    projects: tuple[str, ...] | None
    expires: float | None  # seconds since the epoch; None: never
    created: float
    last_used: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label, "id": self.id, "sha256": self.sha256,
            "can": sorted(self.rights), "projects": list(self.projects or ()),
            "expires": self.expires, "created": self.created, "last_used": self.last_used,
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TokenRecord:
        return cls(
            str(data["label"]), str(data["id"]), str(data["sha256"]),
            frozenset(data["can"]) & ALL_RIGHTS, parse_globs(data.get("projects") or ()),
            data.get("expires"), float(data.get("created", 0)), data.get("last_used"),
        )  # fmt: skip

    def grant(self) -> Grant:
        return Grant(f"token:{self.label}", self.rights, self.projects)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(
    label: str,
    rights: frozenset[str],
    projects: tuple[str, ...] | None,
    expires: float | None,
    now: float,
) -> tuple[str, TokenRecord]:
    """A fresh token and the record that stores its hash."""
    if not _LABEL.match(label):
        raise BadRequest(f"label {label!r}: 1 to 64 letters, digits, '.', '_' or '-'")
    token_id = secrets.token_hex(6)
    token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    return token, TokenRecord(label, token_id, _digest(token), rights, projects, expires, now)


class TokenTable:
    """A repository's created tokens, by id; replaced whole when the stored document changes."""

    def __init__(self, records: Iterable[TokenRecord] = ()) -> None:
        self.by_id = {r.id: r for r in records}
        # One Grant per token, so its scope checks stay memoized from request to request.
        self.grants = {r.id: r.grant() for r in self.by_id.values()}
        self.used: dict[str, float] = {}  # label -> last use here, not yet stored

    @classmethod
    def parse(cls, document: bytes) -> TokenTable:
        return cls(cls.records(document))

    @staticmethod
    def records(document: bytes) -> list[TokenRecord]:
        if not document.strip():
            return []
        data = json.loads(document)
        return [TokenRecord.from_json(item) for item in data.get("tokens", [])]

    def check(self, token: str) -> TokenRecord | None:
        """The record of a well-formed token whose hash matches (compared in constant time)."""
        token_id, _, rest = token[len(TOKEN_PREFIX) :].partition("_")
        record = self.by_id.get(token_id) if rest else None
        if record is None:
            return None
        if not hmac.compare_digest(_digest(token).encode(), record.sha256.encode()):
            return None
        return record


def dump_tokens(records: Iterable[TokenRecord]) -> bytes:
    document = {"tokens": [r.to_json() for r in sorted(records, key=lambda r: r.label)]}
    return json.dumps(document, indent=1).encode()


def with_token(document: bytes, record: TokenRecord) -> bytes:
    records = TokenTable.records(document)
    if any(r.label == record.label for r in records):
        raise BadRequest(f"a token labelled {record.label!r} exists; revoke it first")
    return dump_tokens([*records, record])


def without_token(document: bytes, label: str) -> bytes:
    records = TokenTable.records(document)
    kept = [r for r in records if r.label != label]
    if len(kept) == len(records):
        raise BadRequest(f"no token is labelled {label!r}")
    return dump_tokens(kept)


def with_last_use(document: bytes, used: dict[str, float]) -> bytes:
    """Merge last-use times (the later one wins: servers report in any order)."""
    records = [
        replace(r, last_used=max(r.last_used or 0.0, used[r.label])) if r.label in used else r
        for r in TokenTable.records(document)
    ]
    return dump_tokens(records)


# --- minted tokens (trusted publishing): signed by the server's key, stored nowhere ----------


def encode_minted(payload: dict[str, Any], sign: Any) -> str:
    body = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode())
    text = body.rstrip(b"=").decode()
    return f"{MINTED_PREFIX}{text}.{sign(text)}"


def decode_minted(token: str, sign: Any) -> dict[str, Any] | None:
    """The payload of a token `encode_minted` made under the same key, else None."""
    text, _, signature = token[len(MINTED_PREFIX) :].partition(".")
    if not text or not signature.isascii() or len(token) > 4096:
        return None
    if not hmac.compare_digest(signature.encode(), str(sign(text)).encode()):
        return None
    payload: dict[str, Any] = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    return payload
