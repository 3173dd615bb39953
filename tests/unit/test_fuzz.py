"""Every parser of client input answers or raises one of our errors, never anything else.

Short and deterministic (derandomized, no example database): a few hundred inputs a parser
on each run. The multipart decoder's own fuzz tests are in test_multipart.py;
`benchmarks/fuzz.py` runs the long version (a million inputs a parser).
"""

from __future__ import annotations

import base64
import io
import socket
from collections.abc import Callable
from collections.abc import Iterator
from typing import TypeVar

import pytest
from factory import make_wheel
from hypothesis import HealthCheck
from hypothesis import example
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from packaging.utils import canonicalize_name

from benchmarks import fuzz as long_fuzz
from pywharf.connection import Connection
from pywharf.connection import parse_head
from pywharf.dists import Distribution
from pywharf.dists import check_storable_filename
from pywharf.dists import normalize_project_name
from pywharf.dists import parse_filename
from pywharf.errors import InvalidFilename
from pywharf.errors import PywharfError
from pywharf.errors import RangeNotSatisfiable
from pywharf.http import HTML
from pywharf.http import JSON
from pywharf.http import TEXT_HTML
from pywharf.http import accepts_gzip
from pywharf.http import negotiate
from pywharf.http import parse_basic_auth
from pywharf.http import parse_byte_count
from pywharf.http import parse_range
from pywharf.http import prefers_html
from pywharf.metadata import wheel_metadata
from pywharf.multipart import parse_boundary

T = TypeVar("T")
FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Characters that broke parsers before: Unicode digits int() takes, separators, controls.
TRICKY = "0123456789\u00b2\u00b3\u00b9\u0661\u06f1\uff11_+-=,;: \t\r\n\"'/\\*.\x00\x7f\u212a\u00e9"
tricky_text = st.text(alphabet=st.sampled_from(TRICKY), max_size=40)
any_text = st.one_of(st.text(max_size=60), tricky_text)


def ours_or_nothing(call: Callable[..., T], *args: object) -> T | None:
    """Call; an exception outside our tree fails the test with the input that raised it."""
    try:
        return call(*args)
    except PywharfError:
        return None


# --- byte counts, ranges -----------------------------------------------------------------------


@FUZZ
@given(st.one_of(any_text, st.integers(0, 10**30).map(str)))
def test_byte_count(text: str) -> None:
    count = parse_byte_count(text)
    if text.isascii() and text.isdigit():
        assert count == min(int(text), 10**18)
    else:
        assert count is None


ranges = st.one_of(
    any_text,
    st.builds(lambda a, b: f"bytes={a}-{b}", tricky_text, tricky_text),
    st.builds(lambda a, b: f"bytes={a}-{b}", st.integers(0, 30), st.integers(0, 30)),
)


@FUZZ
@given(ranges, st.integers(0, 20))
def test_range(header: str, size: int) -> None:
    try:
        result = parse_range(header, size)
    except RangeNotSatisfiable as error:
        assert ("Content-Range", f"bytes */{size}") in error.headers
        return
    if result is not None:
        first, last = result
        assert 0 <= first <= last < size


# --- Basic credentials -------------------------------------------------------------------------


credentials = st.one_of(
    any_text,
    st.binary(max_size=40).map(lambda raw: "Basic " + base64.b64encode(raw).decode()),
    tricky_text.map(lambda text: "Basic " + text),
)


@FUZZ
@given(credentials)
def test_basic_auth_never_raises(header: str) -> None:
    result = parse_basic_auth(header)
    assert result is None or (isinstance(result[0], str) and isinstance(result[1], str))


@FUZZ
@given(st.text().filter(lambda user: ":" not in user), st.text())
def test_basic_auth_round_trip(user: str, password: str) -> None:
    try:
        raw = f"{user}:{password}".encode()
    except UnicodeEncodeError:  # lone surrogates: no client can send them
        return
    assert parse_basic_auth("Basic " + base64.b64encode(raw).decode()) == (user, password)


# --- Accept and Accept-Encoding ----------------------------------------------------------------

media = st.sampled_from(
    ["text/html", "*/*", "text/*", JSON, HTML, "application/vnd.pypi.simple.latest+json", "x"]
)
accepts = st.one_of(
    any_text,
    st.lists(
        st.builds(lambda m, q: f"{m};q={q}", media, st.one_of(tricky_text, st.floats())),
        max_size=4,
    ).map(", ".join),
)


@FUZZ
@given(st.one_of(st.none(), accepts), st.one_of(st.none(), any_text))
def test_accept_negotiation(accept: str | None, format_param: str | None) -> None:
    assert negotiate(accept, format_param) in (JSON, HTML, TEXT_HTML)
    assert isinstance(prefers_html(accept), bool)
    assert isinstance(accepts_gzip(accept), bool)


@FUZZ
@given(st.one_of(st.none(), any_text, accepts.map(lambda a: "multipart/form-data; " + a)))
def test_boundary(content_type: str | None) -> None:
    boundary = ours_or_nothing(parse_boundary, content_type)
    assert boundary is None or isinstance(boundary, bytes)


# --- the request head --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def connection() -> Iterator[Connection]:
    """parse_head only keeps the connection for the body: a socket pair nobody reads."""
    left, right = socket.socketpair()
    with left, right:
        yield Connection(left)


header_names = st.sampled_from(
    ["Content-Length", "Transfer-Encoding", "Connection", "Expect", "Host", "X", ""]
)
header_lines = st.builds(lambda n, v: f"{n}:{v}", header_names, any_text)
heads = st.one_of(
    st.binary(max_size=200),
    st.builds(
        lambda method, target, version, lines: "\r\n".join(
            [f"{method} {target} {version}", *lines]
        ).encode("latin-1", "replace"),  # heads are read as Latin-1: b"\xb2" is '²'
        st.sampled_from(["GET", "POST", "HEAD", "", "G T"]),
        st.one_of(any_text, st.just("/simple/?a=%ff&b")),
        st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2", "", "http/1.1"]),
        st.lists(header_lines, max_size=5),
    ),
)


@FUZZ
@given(heads)
@example(b"GET / HTTP/1.1\r\nContent-Length: \xb2")  # found by fuzzing: int() took '²'
def test_head(connection: Connection, head: bytes) -> None:
    parsed = ours_or_nothing(parse_head, head, connection)
    if parsed is not None:
        request, keep_alive = parsed
        assert request.content_length is None or request.content_length >= 0
        assert isinstance(keep_alive, bool)


# --- names and filenames -----------------------------------------------------------------------

filenames = st.one_of(
    any_text,
    st.builds(
        lambda name, version, suffix: f"{name}-{version}{suffix}",
        st.one_of(tricky_text, st.from_regex(r"[A-Za-z0-9._\-]{1,12}", fullmatch=True)),
        st.one_of(tricky_text, st.sampled_from(["1.0", "1.0-py3-none-any", "2!1.0.post1"])),
        st.sampled_from([".whl", ".tar.gz", ".zip", ".tar", ".exe", ""]),
    ),
)


@FUZZ
@given(filenames, st.one_of(st.none(), tricky_text))
def test_filename(filename: str, project: str | None) -> None:
    try:
        distribution = parse_filename(filename, project)
    except InvalidFilename:
        return
    assert distribution.filename == filename and filename.isascii()
    assert distribution.project.isascii() and distribution.kind in ("wheel", "sdist")
    ours_or_nothing(check_storable_filename, filename)


@FUZZ
@given(st.one_of(any_text, st.from_regex(r"[A-Za-z0-9._\-]{1,12}", fullmatch=True)))
@example("\u212aelvin")  # KELVIN SIGN matched [A-Z] under re.IGNORECASE
def test_project_name(name: str) -> None:
    normalized = ours_or_nothing(normalize_project_name, name)
    assert normalized is None or (name.isascii() and isinstance(normalized, str))


# --- the wheel reader: small valid wheels, mutated -----------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_wheel(tmp_path_factory.mktemp("fuzz"), "demo", "1.0").read_bytes()


DEMO: Distribution = parse_filename("demo-1.0-py3-none-any.whl")
# (offset from the start or, negative, from the end; bytes written there)
mutations = st.lists(
    st.tuples(st.integers(-200, 1200), st.binary(min_size=1, max_size=4)), min_size=1, max_size=4
)


def mutated(data: bytes, edits: list[tuple[int, bytes]], cut: int | None) -> bytes:
    out = bytearray(data)
    for offset, patch in edits:
        position = offset % len(out)
        out[position : position + len(patch)] = patch
    return bytes(out[:cut] if cut is not None else out)


@FUZZ
@given(mutations, st.one_of(st.none(), st.integers(0, 2000)))
def test_wheel_reader(wheel: bytes, edits: list[tuple[int, bytes]], cut: int | None) -> None:
    metadata = ours_or_nothing(wheel_metadata, io.BytesIO(mutated(wheel, edits, cut)), DEMO)
    assert metadata is None or canonicalize_name(getattr(metadata, "name", "")) == "demo"


def test_the_unmutated_wheel_reads(wheel: bytes) -> None:
    assert wheel_metadata(io.BytesIO(wheel), DEMO).name == "demo"


def test_the_long_fuzzer_runs_and_finds_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert long_fuzz.main(["--inputs", "300", "--seed", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len([line for line in lines if " 300 inputs " in line]) == len(long_fuzz.TARGETS)
