#!/usr/bin/env python3
"""Fuzz every parser of client input with a million mutated inputs each (a long job, not CI).

Usage: python3 benchmarks/fuzz.py [--inputs 1000000] [--seconds S] [--seed 1] [--parsers ...]

Each input is a valid seed (a request head, a multipart body, a small wheel, ...) with one to
four mutations: characters or bytes replaced, inserted, deleted, duplicated, spliced in from
another seed or from a dictionary of tokens that broke parsers before ('²', KELVIN SIGN,
0xFFFFFFFF in a zip header). A parser may answer or raise a `PywharfError`; anything else, or
a broken invariant, is a failure: printed with its input, and the exit code is 1.
The suite runs the short, derandomized version (tests/unit/test_fuzz.py).
"""

from __future__ import annotations

import argparse
import base64
import io
import random
import socket
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pywharf.connection import Connection
from pywharf.connection import parse_head
from pywharf.dists import check_storable_filename
from pywharf.dists import normalize_project_name
from pywharf.dists import parse_filename
from pywharf.errors import PywharfError
from pywharf.http import HTML
from pywharf.http import JSON
from pywharf.http import TEXT_HTML
from pywharf.http import accepts_gzip
from pywharf.http import negotiate
from pywharf.http import parse_basic_auth
from pywharf.http import parse_range
from pywharf.http import prefers_html
from pywharf.metadata import wheel_metadata
from pywharf.multipart import NEED_DATA
from pywharf.multipart import MultipartDecoder
from tests.factory import make_wheel

SHOWN_FAILURES = 5  # per parser: enough to act on, not a flood

# Text that broke or could break parsers: Unicode digits int() takes, look-alike letters,
# separators and controls.
TRICKY_TEXT = [
    "\u00b2", "\u00b3", "\u0661", "\u06f1", "\uff11", "\u212a", "\ufb01", "\u01c5", "\u00e9",
    "_", "+", "-", "=", ",", ";", ":", " ", "\t", "\r\n", "\n", '"', "'", "/", "\\", "*", ".",
    "\x00", "\x7f", "0", "9", "9" * 30, "1e999", "nan", "%ff", "%2f",
]  # fmt: skip
# Zip header fields an attacker sets: the zip64 markers, zero, huge.
TRICKY_INTEGERS = [0, 1, 0xFF, 0xFFFF, 0xFFFFFFFF, 0x7FFFFFFF, 200_000, 16 * 1024 * 1024 + 1]


@dataclass
class Target:
    """One parser: valid seeds, the tokens its grammar uses, and a checked call."""

    name: str
    seeds: Sequence[Any]  # all str or all bytes
    tokens: Sequence[Any]
    run: Callable[[Any], bool]  # True: parsed; False: refused with our error


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


# --- mutation -----------------------------------------------------------------------------------


def _random_unit(rng: random.Random, text: bool) -> Any:
    if not text:
        return bytes([rng.randrange(256)])
    if rng.random() < 0.5:
        return chr(rng.randrange(0x20, 0x7F))
    point = rng.randrange(0x110000)
    return chr(point) if not 0xD800 <= point < 0xE000 else "\ufffd"  # no client sends surrogates


def _integer_patch(rng: random.Random) -> bytes:
    value = rng.choice(TRICKY_INTEGERS)
    wide = value > 0xFFFF or rng.random() < 0.5
    return struct.pack("<L" if wide else "<H", value)


def mutate(rng: random.Random, target: Target) -> Any:
    data = rng.choice(target.seeds)
    text = isinstance(data, str)
    for _ in range(rng.randint(1, 4)):
        size = len(data)
        at = rng.randint(0, size)
        end = min(size, at + rng.randint(1, 8))
        operation = rng.randrange(7)
        if operation == 0:  # replace one unit
            data = data[:at] + _random_unit(rng, text) + data[at + 1 :]
        elif operation == 1:  # insert a grammar token or a tricky one
            data = data[:at] + rng.choice(target.tokens) + data[at:]
        elif operation == 2:
            data = data[:at] + data[end:]
        elif operation == 3:
            data = data[:at] + data[at:end] * rng.randint(2, 50) + data[at:]
        elif operation == 4:
            data = data[:at]
        elif operation == 5:  # splice from another seed
            other = rng.choice(target.seeds)
            start = rng.randint(0, len(other))
            data = data[:at] + other[start : start + rng.randint(1, 64)] + data[end:]
        elif not text:  # overwrite a header field with an integer an attacker would choose
            patch = _integer_patch(rng)
            data = data[:at] + patch + data[at + len(patch) :]
        else:
            data = data[:at] + rng.choice(TRICKY_TEXT) + data[at:]
    return data


# --- targets ------------------------------------------------------------------------------------


def _ours(call: Callable[[], object]) -> bool:
    try:
        call()
    except PywharfError:
        return False
    return True


def head_target() -> Target:
    left, right = socket.socketpair()
    with left, right:  # parse_head keeps the connection for the body and never reads it here
        connection = Connection(left)
    seeds = [
        b"GET /simple/demo/ HTTP/1.1\r\nHost: x\r\nAccept: */*",
        b"POST /simple/ HTTP/1.1\r\nContent-Length: 12\r\nExpect: 100-continue\r\n"
        b"Content-Type: multipart/form-data; boundary=b",
        b"GET /simple/demo/demo-1.0.tar.gz?x=%ff&y HTTP/1.0\r\nConnection: keep-alive\r\n"
        b"Range: bytes=0-9\r\nAuthorization: Basic bG9jYWw6cw==",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close",
    ]
    tokens = [b"\r\n", b": ", b"Content-Length: ", b"Transfer-Encoding", b" HTTP/1.1", b"\xb2",
              b"\xb9", b"%", b"?", b"&", b"=", b"9" * 5000]  # fmt: skip

    def run(head: bytes) -> bool:
        try:
            request, keep_alive = parse_head(head, connection)
        except PywharfError:
            return False
        _check(request.content_length is None or request.content_length >= 0, "negative length")
        _check(isinstance(keep_alive, bool), "keep_alive is not a bool")
        return True

    return Target("head", seeds, tokens, run)


def basic_auth_target() -> Target:
    raw = [b"local:secret", "l\u00f6kal:s\u00ebcret".encode(), b":", b"a:b:c", b"\xff\xfe:x"]
    seeds = [f"Basic {base64.b64encode(value).decode()}" for value in raw] + ["Basic", "basic x"]
    tokens = [
        "Basic ",
        "=",
        "==",
        "+",
        "/",
        " ",
        "\u00e9",
        "\u0430",
        base64.b64encode(b":").decode(),
    ]

    def run(header: str) -> bool:
        result = parse_basic_auth(header)  # never raises: bad credentials are no credentials
        _check(result is None or len(result) == 2, "not a (user, password) pair")
        return result is not None

    return Target("basic_auth", seeds, tokens, run)


def range_target() -> Target:
    seeds = ["bytes=0-9", "bytes=5-", "bytes=-3", "bytes=0-1,3-4", "items=0-1", "bytes=10-"]
    tokens = ["bytes=", "-", ",", "0", "9" * 5000, "\u00b2", "\u0661", " "]

    def run(header: str) -> bool:
        size = len(header) % 20  # varies, and deterministic for the failure report
        try:
            result = parse_range(header, size)
        except PywharfError:
            return False
        _check(result is None or 0 <= result[0] <= result[1] < size, f"{result} for {size}")
        return True

    return Target("range", seeds, tokens, run)


def accept_target() -> Target:
    seeds = [
        "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
        "text/html;q=0.01",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        "*/*", "gzip, deflate, br", "gzip;q=0", "application/vnd.pypi.simple.latest+json",
    ]  # fmt: skip
    tokens = [";q=", "q=1.0", ",", "*/*", "text/*", "gzip", JSON, HTML, "1e999", "nan", ";"]

    def run(value: str) -> bool:
        _check(negotiate(value, value[:20]) in (JSON, HTML, TEXT_HTML), "unknown media type")
        _check(isinstance(prefers_html(value), bool), "prefers_html")
        _check(isinstance(accepts_gzip(value), bool), "accepts_gzip")
        return True

    return Target("accept", seeds, tokens, run)


def filename_target() -> Target:
    seeds = [
        "demo-1.0.tar.gz", "demo_pkg-2!1.0.post1-1-py3-none-any.whl", "Foo.Bar-1.0.zip",
        "numpy-1.26.4-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "foo-bar-1.0.tar.gz", "x" * 180 + "-1.0.tar.gz",
    ]  # fmt: skip
    tokens = ["-", "_", ".", ".whl", ".tar.gz", "/", "..", "\u212a", "\u00e9", "x" * 100]

    def run(filename: str) -> bool:
        parsed = _ours(lambda: _parsed_filename(filename))
        named = _ours(lambda: normalize_project_name(filename.partition("-")[0]))
        return parsed or named

    return Target("filename", seeds, tokens, run)


def _parsed_filename(filename: str) -> None:
    project = filename.partition("-")[0] if len(filename) % 2 else None
    distribution = parse_filename(filename, project)
    _check(filename.isascii() and distribution.project.isascii(), "a non-ASCII name passed")
    check_storable_filename(filename)


def multipart_target() -> Target:
    def body(boundary: bytes, *parts: bytes) -> bytes:
        return b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts) + (
            b"--" + boundary + b"--\r\n"
        )

    seeds = [
        body(b"b", b'Content-Disposition: form-data; name=":action"\r\n\r\nfile_upload',
             b'Content-Disposition: form-data; name="content"; filename="demo-1.0.tar.gz"\r\n'
             b"Content-Type: application/octet-stream\r\n\r\n\x1f\x8b\x08data"),
        body(b"b", b"Content-Disposition: form-data; name*=UTF-8''n%C3%A9\r\n\r\nv",
             b"Content-Disposition: form-data; name=f; filename*=UTF-8''%E2%84%AA.whl\r\n\r\nx"),
    ]  # fmt: skip
    tokens = [b"\r\n", b"--b", b"--b--", b"\r\n\r\n", b'"', b";", b"*=UTF-8''", b"%ff",
              b"Content-Disposition: form-data; ", b"filename=", b"\x00"]  # fmt: skip

    def run(data: bytes) -> bool:
        decoder = MultipartDecoder(b"b")
        start = 0
        try:
            for cut in sorted({len(data) // 3, len(data) // 2, len(data)}):
                decoder.feed(data[start:cut])
                start = cut
                while decoder.next_event() is not NEED_DATA:  # End is followed by NEED_DATA
                    pass
            decoder.end()
            while decoder.next_event() is not NEED_DATA:
                pass
        except PywharfError:
            return False
        return True

    return Target("multipart", seeds, tokens, run)


def wheel_target() -> Target:
    with tempfile.TemporaryDirectory() as folder:
        seeds = [
            make_wheel(Path(folder), "demo", "1.0").read_bytes(),
            make_wheel(Path(folder), "demo", "1.0", requires_python=">=3.8",
                       requires_dist=("a", "b>1")).read_bytes(),
        ]  # fmt: skip
    tokens = [b"PK\x01\x02", b"PK\x03\x04", b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07",
              b"\xff\xff\xff\xff", b"METADATA", b".dist-info/", b"\x00" * 8]  # fmt: skip
    distribution = parse_filename("demo-1.0-py3-none-any.whl")

    def run(data: bytes) -> bool:
        try:
            metadata = wheel_metadata(io.BytesIO(data), distribution)
        except PywharfError:
            return False
        _check(metadata.name.lower() == "demo", f"accepted METADATA of {metadata.name!a}")
        return True

    return Target("wheel", seeds, tokens, run)


TARGETS: dict[str, Callable[[], Target]] = {
    "multipart": multipart_target,
    "head": head_target,
    "basic_auth": basic_auth_target,
    "range": range_target,
    "filename": filename_target,
    "accept": accept_target,
    "wheel": wheel_target,
}


# --- the loop -----------------------------------------------------------------------------------


def fuzz(target: Target, inputs: int, seconds: float, seed: int) -> int:
    """Run one parser; print its line; return its failure count."""
    rng = random.Random(f"{seed}-{target.name}")
    parsed = refused = failures = count = 0
    started = time.perf_counter()
    deadline = started + seconds
    while count < inputs and (count % 1000 or time.perf_counter() < deadline):
        data = mutate(rng, target)
        count += 1
        try:
            if target.run(data):
                parsed += 1
            else:
                refused += 1
        except Exception as error:  # the finding: anything outside our error tree
            failures += 1
            if failures <= SHOWN_FAILURES:
                print(f"  FAIL {target.name}: {type(error).__name__}: {error}\n    input: {data!a}")
    elapsed = time.perf_counter() - started
    print(
        f"{target.name:<11} {count:>10,} inputs  {parsed:>10,} parsed  {refused:>10,} refused  "
        f"{failures:>5} failures  {elapsed:7.1f} s  {count / elapsed:>9,.0f}/s",
        flush=True,
    )
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=1_000_000, help="inputs per parser")
    parser.add_argument("--seconds", type=float, default=float("inf"), help="time per parser")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--parsers", nargs="+", choices=list(TARGETS), default=list(TARGETS))
    options = parser.parse_args(argv)
    failures = sum(
        fuzz(TARGETS[name](), options.inputs, options.seconds, options.seed)
        for name in options.parsers
    )
    print(f"{failures} failures in all" if failures else "no failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
