"""The relay's helper threads (issue 12): every chunk written and hashed, in order; errors kept."""

from __future__ import annotations

import hashlib
import io
import os
import threading

import pytest

from pywharf.backends.hashing import HashingWriter


def _helpers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name in ("spool-writer", "hasher")]


@pytest.mark.parametrize("count", [0, 1, 3, 50])
def test_every_chunk_is_written_and_hashed_in_order(count: int) -> None:
    chunks = [os.urandom(1000 + i) for i in range(count)]
    out = io.BytesIO()
    writer = HashingWriter(out)
    for chunk in chunks:
        writer.write(chunk)
    assert writer.hexdigest() == hashlib.sha256(b"".join(chunks)).hexdigest()
    assert out.getvalue() == b"".join(chunks)
    assert _helpers() == []


class _FullDisk(io.BytesIO):
    def write(self, data: object) -> int:
        raise OSError(28, "No space left on device")


def test_a_failed_write_is_raised_by_hexdigest_after_every_chunk_was_taken() -> None:
    writer = HashingWriter(_FullDisk())
    for _ in range(20):  # more than the queue holds: the helper keeps draining after the error
        writer.write(b"x" * 100)
    with pytest.raises(OSError, match="No space"):
        writer.hexdigest()
    assert _helpers() == []


def test_close_without_a_digest_stops_the_helpers_and_may_be_repeated() -> None:
    writer = HashingWriter(io.BytesIO())
    writer.write(b"part of a relay that was cut off")
    writer.close()
    writer.close()
    assert _helpers() == []
