"""The read API (PEP 503/691) against a real server: auth first, redirects, pages, downloads."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote
from urllib.parse import urlsplit

import pytest
from factory import make_sdist
from factory import make_wheel
from support import READ
from support import WRITE
from support import Live
from support_upload import upload

from pywharf import connection

PIP_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
    "text/html; q=0.01"
)
# A legacy sdist version may hold characters HTML cares about; the filename must survive.
ODD_SDIST = "odd-1.0<b>&'x.tar.gz"
ODD_REQUIRES = ">=3.8,<4,!=3.9.*\"&'"


@dataclass
class Filled:
    live: Live
    files: dict[str, bytes]  # filename -> bytes, as uploaded

    def sha256(self, filename: str) -> str:
        return hashlib.sha256(self.files[filename]).hexdigest()


@pytest.fixture
def filled(live_server: Live, tmp_path: Path) -> Filled:
    dists = tmp_path / "up"
    dists.mkdir()
    paths = [
        make_wheel(dists, "demo-pkg", "1.0", requires_python=">=3.8,<4", payload_bytes=5000),
        make_sdist(dists, "demo-pkg", "1.0"),
        make_wheel(dists, "demo-pkg", "2.0"),
        make_wheel(dists, "other", "0.1"),
    ]
    files = {p.name: p.read_bytes() for p in paths}
    for path in paths:
        status, _, body = upload(live_server, path)
        assert status == 200, body
    odd = make_sdist(dists, "odd", "1.0").read_bytes()
    status, _, body = upload(
        live_server, ODD_SDIST, odd, version="1.0<b>&'x", requires_python=ODD_REQUIRES
    )
    assert status == 200, body
    files[ODD_SDIST] = odd
    return Filled(live_server, files)


class Links(HTMLParser):
    """The anchors of a page as pip reads them (`convert_charrefs=True`)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[tuple[dict[str, str | None], str]] = []
        self._open: dict[str, str | None] | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._open, self._text = dict(attrs), ""

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open is not None:
            self.anchors.append((self._open, self._text))
            self._open = None


def links(body: bytes) -> list[tuple[dict[str, str | None], str]]:
    parser = Links()
    parser.feed(body.decode())
    parser.close()
    return parser.anchors


# --- auth before any lookup ---------------------------------------------------------------------

PATHS = [
    "/simple/",
    "/simple/demo-pkg/",
    "/simple/missing-project/",
    "/simple/Demo_Pkg/",
    "/simple/demo-pkg",
    "/simple/demo-pkg/demo_pkg-1.0-py3-none-any.whl",
    "/simple/demo-pkg/missing-1.0.tar.gz",
    "/simple/missing-project/missing-1.0.tar.gz",
    "/simple/demo-pkg/demo_pkg-1.0-py3-none-any.whl.metadata",
    "/index_mtime/",
]
BAD_CREDENTIALS = {
    "anonymous": None,
    "wrong secret": ("local", "wrong"),
    "empty secret": ("local", ""),
    "unknown repository": ("nosuchrepo", READ),
    "unknown repository, write secret": ("nosuchrepo", WRITE),
    "secret as user": (READ, READ),
}


@pytest.mark.parametrize("credentials", BAD_CREDENTIALS.values(), ids=list(BAD_CREDENTIALS))
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_401_with_a_basic_challenge_before_any_lookup(
    filled: Filled, credentials: tuple[str, str] | None, method: str
) -> None:
    answers = set()
    for path in PATHS:
        status, headers, body = filled.live.request(method, path, auth=credentials)
        assert status == 401, path
        assert headers["www-authenticate"].lower().startswith("basic"), path
        assert "realm=" in headers["www-authenticate"]
        assert b"demo" not in body and b"missing" not in body and b"Traceback" not in body
        answers.add((body, headers.get("content-type"), headers.get("content-length")))
    # The same answer for an existing and a missing project, file or page: nothing leaks.
    assert len(answers) == 1, answers


def test_a_wrong_secret_and_an_unknown_repository_get_the_same_answer(filled: Filled) -> None:
    wrong = filled.live.request("GET", "/simple/demo-pkg/", auth=("local", "wrong"))
    unknown = filled.live.request("GET", "/simple/demo-pkg/", auth=("nosuchrepo", "wrong"))
    assert wrong[0] == unknown[0] == 401
    assert wrong[2] == unknown[2]


@pytest.mark.parametrize(
    "header",
    ["Bearer abc", "Basic !!!", "Basic " + "bG9jYWw=", "Digest x", "Basic"],
    ids=["bearer", "bad base64", "no colon", "digest", "no token"],
)
def test_malformed_authorization_is_401_not_400_or_500(filled: Filled, header: str) -> None:
    status, headers, _ = filled.live.request(
        "GET", "/simple/demo-pkg/", headers={"Authorization": header}, auth=None
    )
    assert status == 401
    assert headers["www-authenticate"].lower().startswith("basic")


@pytest.mark.parametrize("user", ["local", "LOCAL", "Local", "lOcAl"])
@pytest.mark.parametrize("secret", [READ, WRITE], ids=["read secret", "write secret"])
def test_either_secret_reads_and_the_repository_name_ignores_case(
    filled: Filled, user: str, secret: str
) -> None:
    auth = (user, secret)
    assert filled.live.request("GET", "/simple/", auth=auth)[0] == 200
    assert filled.live.request("GET", "/simple/demo-pkg/", auth=auth)[0] == 200
    status, _, body = filled.live.request(
        "GET", "/simple/demo-pkg/demo_pkg-2.0-py3-none-any.whl", auth=auth
    )
    assert status == 200
    assert body == filled.files["demo_pkg-2.0-py3-none-any.whl"]


def test_the_secret_is_case_sensitive(filled: Filled) -> None:
    assert filled.live.request("GET", "/simple/", auth=("local", READ.upper()))[0] == 401


# --- redirects and 404 --------------------------------------------------------------------------

REDIRECTS = {
    "/simple/Demo_Pkg/": "/simple/demo-pkg/",
    "/simple/DEMO.PKG/": "/simple/demo-pkg/",
    "/simple/demo__pkg/": "/simple/demo-pkg/",
    "/simple/demo-pkg": "/simple/demo-pkg/",
    "/simple/Demo_Pkg": "/simple/demo-pkg/",  # both at once: still one hop
    "/simple/Demo.-_Pkg": "/simple/demo-pkg/",
    "/simple": "/simple/",
}


@pytest.mark.parametrize(("path", "target"), REDIRECTS.items(), ids=list(REDIRECTS))
def test_one_hop_301_to_the_normalized_url(filled: Filled, path: str, target: str) -> None:
    status, headers, _ = filled.live.request("GET", path)
    assert status == 301
    location = headers["location"]
    assert urlsplit(location).path == target
    status, _, _ = filled.live.request("GET", location)
    assert status == 200  # one hop: the target is the final page


def test_a_redirect_keeps_the_query(filled: Filled) -> None:
    status, headers, _ = filled.live.request(
        "GET", "/simple/Demo_Pkg/?format=application/vnd.pypi.simple.v1%2Bjson"
    )
    assert status == 301
    location = headers["location"]
    status, headers, _ = filled.live.request("GET", location)
    assert status == 200
    assert "format=" in location, "the ?format= of a redirected page is lost"
    assert headers["content-type"].startswith("application/vnd.pypi.simple.v1+json")


@pytest.mark.parametrize(
    "path",
    ["/simple/missing-project/", "/simple/demo-pkg/missing-1.0.tar.gz", "/simple/x/y/z"],
)
def test_404_for_what_is_not_there(filled: Filled, path: str) -> None:
    status, _, body = filled.live.request("GET", path)
    assert status == 404
    assert b"Traceback" not in body


def test_a_file_is_only_found_under_its_own_project(filled: Filled) -> None:
    status, _, _ = filled.live.request("GET", "/simple/other/demo_pkg-2.0-py3-none-any.whl")
    assert status == 404


# --- pages --------------------------------------------------------------------------------------


def test_the_root_page_lists_every_project_normalized(filled: Filled) -> None:
    status, headers, body = filled.live.request("GET", "/simple/")
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    anchors = links(body)
    assert sorted(text for _, text in anchors) == ["demo-pkg", "odd", "other"]
    for attributes, text in anchors:
        assert attributes["href"] in (f"{text}/", f"/simple/{text}/")


def test_every_file_link_carries_the_real_sha256(filled: Filled) -> None:
    seen = set()
    for project in ("demo-pkg", "other", "odd"):
        status, _, body = filled.live.request("GET", f"/simple/{project}/")
        assert status == 200
        assert b'<meta name="pypi:repository-version"' in body
        for attributes, text in links(body):
            href = attributes["href"] or ""
            url, _, fragment = href.partition("#")
            assert text in filled.files, text  # the anchor text is exactly the filename
            assert unquote(url.rsplit("/", 1)[-1]) == text
            assert fragment == f"sha256={filled.sha256(text)}"
            # ... and the link really serves bytes with that hash
            target = url if url.startswith("/") else f"/simple/{project}/{url}"
            status, _, data = filled.live.request("GET", target)
            assert status == 200
            assert hashlib.sha256(data).hexdigest() == filled.sha256(text)
            seen.add(text)
    assert seen == set(filled.files)


def test_requires_python_is_html_escaped(filled: Filled) -> None:
    _, _, body = filled.live.request("GET", "/simple/demo-pkg/")
    assert b'data-requires-python="&gt;=3.8,&lt;4"' in body
    by_name = {text: attributes for attributes, text in links(body)}
    assert by_name["demo_pkg-1.0-py3-none-any.whl"]["data-requires-python"] == ">=3.8,<4"
    assert "data-requires-python" not in by_name["demo_pkg-2.0-py3-none-any.whl"]


def test_odd_names_and_attributes_are_escaped(filled: Filled) -> None:
    _, _, body = filled.live.request("GET", "/simple/odd/")
    assert b"<b>" not in body
    assert b"<4" not in body
    assert b"&'x" not in body.replace(b"&amp;", b"")
    ((attributes, text),) = links(body)
    assert text == ODD_SDIST
    assert attributes["data-requires-python"] == ODD_REQUIRES
    assert unquote((attributes["href"] or "").partition("#")[0]) == ODD_SDIST
    status, _, data = filled.live.request(
        "GET", "/simple/odd/" + (attributes["href"] or "").partition("#")[0]
    )
    assert status == 200
    assert data == filled.files[ODD_SDIST]


def test_the_json_page_agrees_with_the_html_page(filled: Filled) -> None:
    status, headers, body = filled.live.request(
        "GET", "/simple/odd/", headers={"Accept": PIP_ACCEPT}
    )
    assert status == 200
    assert headers["content-type"] == "application/vnd.pypi.simple.v1+json"
    assert "Accept" in headers["vary"]
    document = json.loads(body)
    (entry,) = document["files"]
    assert entry["filename"] == ODD_SDIST
    assert entry["hashes"] == {"sha256": filled.sha256(ODD_SDIST)}
    assert entry["requires-python"] == ODD_REQUIRES
    assert entry["size"] == len(filled.files[ODD_SDIST])


def test_a_page_answers_304_to_its_etag(filled: Filled) -> None:
    status, headers, _ = filled.live.request("GET", "/simple/demo-pkg/")
    etag = headers["etag"]
    status, headers304, body = filled.live.request(
        "GET", "/simple/demo-pkg/", headers={"If-None-Match": etag}
    )
    assert status == 304
    assert body == b""
    assert headers304["etag"] == etag


# --- downloads ----------------------------------------------------------------------------------

WHEEL = "demo_pkg-1.0-py3-none-any.whl"
WHEEL_PATH = f"/simple/demo-pkg/{WHEEL}"
BINARY_TYPES = {
    "application/octet-stream",
    "application/zip",
    "application/x-wheel+zip",
    "application/gzip",
    "application/x-gzip",
    "application/x-tar",
}


def test_a_download_has_the_headers_of_an_immutable_private_file(filled: Filled) -> None:
    status, headers, body = filled.live.request("GET", WHEEL_PATH)
    data = filled.files[WHEEL]
    assert status == 200
    assert body == data
    assert int(headers["content-length"]) == len(data)
    assert headers["content-type"].split(";")[0] in BINARY_TYPES
    assert "content-encoding" not in headers  # never content-encode files
    etag = headers["etag"]
    assert etag.startswith('"') and etag.endswith('"')  # strong, quoted
    assert not etag.startswith("W/")
    parsedate_to_datetime(headers["last-modified"])
    cache = {
        part.strip().split("=")[0]: part.strip() for part in headers["cache-control"].split(",")
    }
    assert "private" in cache
    assert "immutable" in cache
    assert "public" not in cache and "no-store" not in cache
    assert int(cache["max-age"].split("=")[1]) >= 86400
    assert headers["accept-ranges"] == "bytes"


def test_head_has_the_same_headers_and_no_body(filled: Filled) -> None:
    _, get_headers, _ = filled.live.request("GET", WHEEL_PATH)
    status, headers, body = filled.live.request("HEAD", WHEEL_PATH)
    assert status == 200
    assert body == b""
    for name in (
        "content-length",
        "content-type",
        "etag",
        "last-modified",
        "cache-control",
        "accept-ranges",
    ):
        assert headers[name] == get_headers[name], name


def test_head_of_a_page(filled: Filled) -> None:
    _, get_headers, get_body = filled.live.request("GET", "/simple/demo-pkg/")
    status, headers, body = filled.live.request("HEAD", "/simple/demo-pkg/")
    assert status == 200
    assert body == b""
    assert headers["etag"] == get_headers["etag"]
    assert int(headers["content-length"]) == len(get_body)


@pytest.mark.parametrize(
    ("header", "piece"),
    [
        ("bytes=0-9", slice(0, 10)),
        ("bytes=10-", slice(10, None)),
        ("bytes=-7", slice(-7, None)),
        ("bytes=100-199", slice(100, 200)),
        ("bytes=0-99999999", slice(0, None)),
        ("bytes=-99999999", slice(0, None)),
    ],
)
def test_single_byte_ranges_get_206(filled: Filled, header: str, piece: slice) -> None:
    data = filled.files[WHEEL]
    status, headers, body = filled.live.request("GET", WHEEL_PATH, headers={"Range": header})
    assert status == 206
    assert body == data[piece]
    first = range(len(data))[piece][0]
    last = range(len(data))[piece][-1]
    assert headers["content-range"] == f"bytes {first}-{last}/{len(data)}"
    assert int(headers["content-length"]) == last - first + 1


def test_a_range_past_the_end_is_416(filled: Filled) -> None:
    size = len(filled.files[WHEEL])
    for header in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}"):
        status, headers, body = filled.live.request("GET", WHEEL_PATH, headers={"Range": header})
        assert status == 416
        assert headers["content-range"] == f"bytes */{size}"
        assert b"Traceback" not in body


def test_a_multi_range_gets_the_whole_file(filled: Filled) -> None:
    status, _, body = filled.live.request("GET", WHEEL_PATH, headers={"Range": "bytes=0-1,5-6"})
    assert status == 200
    assert body == filled.files[WHEEL]


def test_a_range_on_head(filled: Filled) -> None:
    status, _, body = filled.live.request("HEAD", WHEEL_PATH, headers={"Range": "bytes=-7"})
    assert status in (200, 206)
    assert body == b""


def test_if_range_with_a_stale_etag_gets_the_whole_file(filled: Filled) -> None:
    _, headers, _ = filled.live.request("HEAD", WHEEL_PATH)
    data = filled.files[WHEEL]
    status, _, body = filled.live.request(
        "GET", WHEEL_PATH, headers={"Range": "bytes=0-9", "If-Range": headers["etag"]}
    )
    assert (status, body) == (206, data[:10])
    status, _, body = filled.live.request(
        "GET", WHEEL_PATH, headers={"Range": "bytes=0-9", "If-Range": '"stale"'}
    )
    assert (status, body) == (200, data)


def test_if_none_match_gets_304(filled: Filled) -> None:
    _, headers, _ = filled.live.request("GET", WHEEL_PATH)
    etag = headers["etag"]
    for value in (etag, f'"other", {etag}', "*"):
        status, headers304, body = filled.live.request(
            "GET", WHEEL_PATH, headers={"If-None-Match": value}
        )
        assert status == 304, value
        assert body == b""
        assert headers304["etag"] == etag
    status, _, _ = filled.live.request("GET", WHEEL_PATH, headers={"If-None-Match": '"other"'})
    assert status == 200


def test_the_metadata_of_a_wheel_is_served_with_its_hash(filled: Filled) -> None:
    _, _, page = filled.live.request("GET", "/simple/demo-pkg/")
    attributes = {text: a for a, text in links(page)}[WHEEL]
    declared = (attributes.get("data-core-metadata") or "").removeprefix("sha256=")
    status, _, metadata = filled.live.request("GET", WHEEL_PATH + ".metadata")
    assert status == 200
    assert hashlib.sha256(metadata).hexdigest() == declared
    assert b"Name: demo-pkg" in metadata


def _count_sendfile(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = os.sendfile

    def counting(out_fd: int, in_fd: int, offset: int, count: int) -> int:
        calls.append(count)
        return original(out_fd, in_fd, offset, count)

    monkeypatch.setattr(os, "sendfile", counting)
    return calls


def test_downloads_go_out_by_sendfile(filled: Filled, monkeypatch: pytest.MonkeyPatch) -> None:
    """Zero-copy: a file above the small-file size is handed to the kernel, not read."""
    calls = _count_sendfile(monkeypatch)
    monkeypatch.setattr(connection, "SMALL_FILE_BYTES", 0)
    data = filled.files[WHEEL]
    status, _, body = filled.live.request("GET", WHEEL_PATH)
    assert (status, body) == (200, data)
    status, _, body = filled.live.request("GET", WHEEL_PATH, headers={"Range": "bytes=5-"})
    assert (status, body) == (206, data[5:])
    assert calls == [len(data), len(data) - 5]


def test_small_downloads_are_read_once_and_sent_from_memory(
    filled: Filled, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small file goes out with its head in one write; its bytes are read on the first
    download only, and a Range of it is cut from them."""
    calls = _count_sendfile(monkeypatch)
    reads: list[str] = []
    cache = connection.SmallFiles()
    original = cache._read

    def reading(path: str) -> bytes:
        reads.append(path)
        return original(path)

    monkeypatch.setattr(cache, "_read", reading)
    monkeypatch.setattr(connection, "SMALL_FILES", cache)
    data = filled.files[WHEEL]
    assert len(data) <= connection.SMALL_FILE_BYTES
    for _ in range(2):
        status, _, body = filled.live.request("GET", WHEEL_PATH)
        assert (status, body) == (200, data)
    status, _, body = filled.live.request("GET", WHEEL_PATH, headers={"Range": "bytes=5-9"})
    assert (status, body) == (206, data[5:10])
    assert (calls, len(reads)) == ([], 1)


def test_if_modified_since_gets_304_unless_the_file_is_newer(filled: Filled) -> None:
    """RFC 9110 section 13.1.3; If-None-Match, when present, decides instead (13.2.2)."""
    status, headers, _ = filled.live.request("GET", WHEEL_PATH)
    last_modified = headers["last-modified"]
    same = {"If-Modified-Since": last_modified}
    assert filled.live.request("GET", WHEEL_PATH, headers=same)[0] == 304
    for stale in ("Thu, 01 Jan 1970 00:00:01 GMT", "not a date", "Sun, 06 Nov 1994 08:49:37"):
        status, _, body = filled.live.request(
            "GET", WHEEL_PATH, headers={"If-Modified-Since": stale}
        )
        assert status == 200 and body, stale
    both = {"If-Modified-Since": last_modified, "If-None-Match": '"other"'}
    assert filled.live.request("GET", WHEEL_PATH, headers=both)[0] == 200


def test_a_non_ascii_name_is_shown_escaped_in_the_404(filled: Filled) -> None:
    """Reason phrases are Latin-1: a look-alike letter must not turn into '?' (issue 9)."""
    connection = http.client.HTTPConnection(filled.live.host, filled.live.port, timeout=30)
    try:
        auth = base64.b64encode(f"local:{READ}".encode()).decode()
        connection.request(
            "GET", "/simple/%EF%AC%81le/", headers={"Authorization": f"Basic {auth}"}
        )
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    assert response.status == 404
    assert "\\ufb01le" in response.reason and b"\\ufb01le" in body and b"?le" not in body
