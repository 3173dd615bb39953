"""The access log: one line per request, escaped, written by one thread."""

from __future__ import annotations

import collections
import os
import re
import sys
import threading
from typing import TextIO

__all__ = ["AccessLog", "default_access_log", "log_field", "log_fields"]

ACCESS_LOG_FLUSH_SECONDS = 0.2
# Escaped in access-log fields: everything outside printable ASCII, plus the quote and the
# backslash, as nginx escapes its log variables (`\xNN`).
_UNSAFE_IN_LOG = re.compile(r'[^\x20-\x7e]|["\\]')


def log_field(value: str) -> str:
    """A client-controlled access-log field with every unsafe byte as `\\xNN` (nginx's escape):
    one request is always one line, and a `%0a` in a path cannot forge another."""
    if _UNSAFE_IN_LOG.search(value) is None:
        return value
    return _UNSAFE_IN_LOG.sub(
        lambda match: "".join(f"\\x{byte:02X}" for byte in match[0].encode("utf-8", "replace")),
        value,
    )


def log_fields(*values: str) -> tuple[str, ...]:
    """`log_field` of each value, with one search over them all when none needs escaping (the
    usual case: three searches were a microsecond of every request)."""
    if _UNSAFE_IN_LOG.search("".join(values)) is None:
        return values
    return tuple(log_field(value) for value in values)


class AccessLog:
    """Access-log lines, written by one thread a few times a second.

    A write per request, under the stream's lock, serialized every connection thread on it
    (the largest cost of a cached page under 64 connections); a deque's append needs no lock.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lines: collections.deque[str] = collections.deque()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)
        self._thread.start()

    def add(self, line: str) -> None:
        self._lines.append(line)

    def _run(self) -> None:
        while not self._closed.wait(ACCESS_LOG_FLUSH_SECONDS):
            self.flush()

    def flush(self) -> None:
        lines = []
        while self._lines:
            lines.append(self._lines.popleft())
        if lines:
            self._stream.write("".join(lines))
            self._stream.flush()

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)
        self.flush()


def default_access_log() -> TextIO:
    return os.fdopen(os.dup(sys.stderr.fileno()), "w")
