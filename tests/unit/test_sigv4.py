"""SigV4 against AWS's published vectors (tests/data/sigv4-vectors.json), step by step."""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import string
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl
from urllib.parse import unquote
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_layers import PACKAGE
from test_layers import imports_of

from pywharf.clients import sigv4
from pywharf.clients.sigv4 import Credentials
from pywharf.clients.sigv4 import S3Location

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[1] / "data" / "sigv4-vectors.json").read_text("utf-8")
)
GENERIC, S3 = VECTORS["generic"], VECTORS["s3"]
UTC = datetime.timezone.utc
MAY_24 = datetime.datetime(2013, 5, 24, tzinfo=UTC)
S3_KEYS = Credentials(S3["access_key_id"], S3["secret_access_key"])
# The S3 examples address the legacy global endpoint, virtual-hosted.
EXAMPLE = S3Location("examplebucket", endpoint_url="https://s3.amazonaws.com", addressing="virtual")
UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")


def pairs(raw: list[list[str]]) -> list[tuple[str, str]]:
    return [(name, value) for name, value in raw]


def timestamp_of(vector: dict[str, Any]) -> str:
    return str(next(value for name, value in vector["headers"] if name.lower() == "x-amz-date"))


def sign_vector(group: dict[str, Any], vector: dict[str, Any]) -> sigv4.Signature:
    keys = Credentials(group["access_key_id"], group["secret_access_key"])
    return sigv4.sign(
        vector["method"],
        vector["path"],
        pairs(vector["query"]),
        pairs(vector["headers"]),
        sigv4.payload_hash(vector["body"].encode("utf-8")),
        keys,
        group["region"],
        timestamp_of(vector),
        group["service"],
    )


def check_steps(signed: sigv4.Signature, vector: dict[str, Any]) -> None:
    """Each published step in turn, so a failure names the step that diverged."""
    if vector["canonical_request"] is not None:
        assert signed.canonical_request == vector["canonical_request"]
    if vector["string_to_sign"] is not None:
        assert signed.string_to_sign == vector["string_to_sign"]
    assert signed.signature == vector["signature"]
    assert signed.authorization.endswith(f", Signature={vector['signature']}")


@pytest.mark.parametrize("vector", GENERIC["vectors"], ids=lambda v: v["name"])
def test_the_aws_test_suite(vector: dict[str, Any]) -> None:
    check_steps(sign_vector(GENERIC, vector), vector)


@pytest.mark.parametrize("vector", GENERIC["normalize_path"], ids=lambda v: v["name"])
def test_s3_signs_the_path_as_sent_where_other_services_normalize(vector: dict[str, Any]) -> None:
    """The suite's normalize-path vectors sign the normalized path; S3 never normalizes."""
    assert sigv4.canonical_uri(vector["path"]) == vector["path"]
    normalized = {**GENERIC["vectors"][0], "path": vector["normalized"]}
    assert sign_vector(GENERIC, normalized).signature == vector["signature"]
    as_sent = {**GENERIC["vectors"][0], "path": vector["path"]}
    assert sign_vector(GENERIC, as_sent).signature != vector["signature"]


@pytest.mark.parametrize("vector", S3["vectors"], ids=lambda v: v["name"])
def test_the_s3_authorization_header_examples(vector: dict[str, Any]) -> None:
    check_steps(sign_vector(S3, vector), vector)
    assert sign_vector(S3, vector).authorization == (
        f"AWS4-HMAC-SHA256 Credential={S3['access_key_id']}/20130524/us-east-1/s3/aws4_request, "
        f"SignedHeaders={vector['canonical_request'].splitlines()[-2]}, "
        f"Signature={vector['signature']}"
    )


@pytest.mark.parametrize("vector", S3["vectors"], ids=lambda v: v["name"])
def test_sign_request_reproduces_the_s3_examples(vector: dict[str, Any]) -> None:
    """The high-level signer, given only what a caller knows, adds the rest itself."""
    own = {"host", "x-amz-date", "x-amz-content-sha256"}
    extra = [(name, value) for name, value in vector["headers"] if name.lower() not in own]
    location = EXAMPLE.at(vector["path"].removeprefix("/"))
    payload = sigv4.payload_hash(vector["body"].encode("utf-8"))
    query = pairs(vector["query"])
    signed = sigv4.sign_request(
        vector["method"], location, S3_KEYS, MAY_24, query=query, headers=extra, payload=payload
    )
    check_steps(signed.signature, vector)
    sent = dict(signed.headers)
    assert sent["Host"] == "examplebucket.s3.amazonaws.com"
    assert sent["X-Amz-Content-Sha256"] == payload
    assert sent["Authorization"] == signed.signature.authorization
    assert signed.url == "https://examplebucket.s3.amazonaws.com" + signed.target


def test_the_s3_presigned_url_example() -> None:
    vector = S3["presign"]
    location = EXAMPLE.at(vector["key"])
    signed = sigv4.presign_get(location, S3_KEYS, MAY_24, vector["expires"])
    check_steps(signed.signature, vector)
    parts = urlsplit(signed.url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", vector["host"], "/test.txt")
    query = parse_qsl(parts.query)
    assert query[-1] == ("X-Amz-Signature", vector["signature"])
    credential = dict(query)["X-Amz-Credential"]
    assert credential == "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request"
    assert "%2F" in parts.query  # the credential's slashes are encoded, as AWS asks


def test_a_session_token_is_signed_into_the_presigned_query() -> None:
    keys = Credentials("AKID", "secret", session_token="tok/en+=")
    signed = sigv4.presign_get(EXAMPLE.at("k"), keys, MAY_24, 60)
    assert "X-Amz-Security-Token=tok%2Fen%2B%3D" in signed.signature.canonical_request
    assert dict(parse_qsl(urlsplit(signed.url).query))["X-Amz-Security-Token"] == "tok/en+="
    plain = sigv4.presign_get(EXAMPLE.at("k"), Credentials("AKID", "secret"), MAY_24, 60)
    assert "Security-Token" not in plain.url


def test_a_session_token_is_a_signed_header() -> None:
    keys = Credentials("AKID", "secret", session_token="token")
    signed = sigv4.sign_request("GET", EXAMPLE.at("k"), keys, MAY_24)
    assert ("X-Amz-Security-Token", "token") in signed.headers
    assert "x-amz-security-token" in signed.signature.authorization


@pytest.mark.parametrize("expires", [0, -1, sigv4.MAX_PRESIGN_EXPIRES + 1])
def test_presign_refuses_an_expiry_s3_refuses(expires: int) -> None:
    with pytest.raises(sigv4.SigV4Error, match="X-Amz-Expires"):
        sigv4.presign_get(EXAMPLE.at("k"), S3_KEYS, MAY_24, expires)


def test_presign_takes_the_longest_expiry_s3_takes() -> None:
    signed = sigv4.presign_get(EXAMPLE.at("k"), S3_KEYS, MAY_24, 604800)
    assert "X-Amz-Expires=604800" in signed.url


@pytest.mark.parametrize(
    ("key", "encoded"),
    [
        ("a!b", "a%21b"),
        ("a+b", "a%2Bb"),
        ("a b", "a%20b"),
        ("a*b", "a%2Ab"),
        ("a'b", "a%27b"),
        ("(a)", "%28a%29"),
        ("a~b-c_d.e", "a~b-c_d.e"),
        ("100%", "100%25"),
        ("%2F", "%252F"),  # already-encoded text is encoded again: keys are raw
        ("é", "%C3%A9"),
        ("ሴ", "%E1%88%B4"),
        ("a/b//c/./d/../e", "a/b//c/./d/../e"),  # S3 keeps every segment
        ("x=1&y", "x%3D1%26y"),
    ],
)
def test_keys_are_encoded_once_with_uppercase_hex(key: str, encoded: str) -> None:
    assert sigv4.canonical_uri("/" + key) == "/" + encoded


def test_the_query_encodes_what_upload_ids_and_tokens_hold() -> None:
    query = [("uploadId", "a/b+c=="), ("partNumber", "1"), ("uploads", ""), ("a b", "ሴ")]
    assert sigv4.canonical_query(query) == (
        "a%20b=%E1%88%B4&partNumber=1&uploadId=a%2Fb%2Bc%3D%3D&uploads="
    )


def test_query_sorts_by_encoded_name_then_value() -> None:
    # "%" (0x25) sorts before letters: AWS sorts the encoded names, byte-wise.
    assert sigv4.canonical_query([("b", "2"), ("b", "1"), ("ሴ", "x"), ("B", "0")]) == (
        "%E1%88%B4=x&B=0&b=1&b=2"
    )


def test_headers_are_lowercased_trimmed_collapsed_and_sorted() -> None:
    headers = [("X-Amz-Meta-B", "  two   words \t here "), ("Host", "h"), ("x-amz-meta-a", "1")]
    assert sigv4.canonical_headers(headers) == (
        "host:h\nx-amz-meta-a:1\nx-amz-meta-b:two words here\n"
    )
    assert sigv4.signed_headers(headers) == "host;x-amz-meta-a;x-amz-meta-b"


def test_payload_hash_is_the_body_sha256_or_unsigned() -> None:
    assert sigv4.payload_hash(b"") == sigv4.EMPTY_SHA256
    assert sigv4.payload_hash(b"abc") == hashlib.sha256(b"abc").hexdigest()
    assert sigv4.payload_hash(None) == "UNSIGNED-PAYLOAD"


@pytest.mark.parametrize("payload", ["", "unsigned-payload", "ABC", "0" * 63, "G" * 64])
def test_a_malformed_payload_hash_is_a_bug(payload: str) -> None:
    with pytest.raises(sigv4.SigV4Error, match="payload hash"):
        sigv4.canonical_request("GET", "/", [], [("host", "h")], payload)


def test_the_signing_key_is_the_documented_hmac_chain() -> None:
    example = VECTORS["signing_key"]
    key = sigv4.signing_key(
        example["secret_access_key"], example["date"], example["region"], example["service"]
    )
    assert key.hex() == example["key"]


def test_amz_date_needs_an_aware_time_and_converts_to_utc() -> None:
    plus_two = datetime.timezone(datetime.timedelta(hours=2))
    assert sigv4.amz_date(datetime.datetime(2013, 5, 24, 2, 0, 1, tzinfo=plus_two)) == (
        "20130524T000001Z"
    )
    with pytest.raises(sigv4.SigV4Error, match="timezone-aware"):
        sigv4.amz_date(datetime.datetime(2013, 5, 24))


def test_sign_request_refuses_headers_it_sets_itself() -> None:
    with pytest.raises(sigv4.SigV4Error, match="x-amz-date"):
        sigv4.sign_request("GET", EXAMPLE.at("k"), S3_KEYS, MAY_24, headers=[("X-Amz-Date", "x")])


# --- where a bucket is served --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "host", "path"),
    [
        (S3Location("b", "k/x y"), "b.s3.us-east-1.amazonaws.com", "/k/x y"),
        (S3Location("b", "k", region="eu-west-3"), "b.s3.eu-west-3.amazonaws.com", "/k"),
        (S3Location("b", "k", addressing="path"), "s3.us-east-1.amazonaws.com", "/b/k"),
        (S3Location("b", "k", endpoint_url="http://127.0.0.1:8333"), "127.0.0.1:8333", "/b/k"),
        (S3Location("b", "", endpoint_url="http://127.0.0.1:8333/"), "127.0.0.1:8333", "/b/"),
        (S3Location("b", "k", endpoint_url="https://s3.example:443"), "s3.example", "/b/k"),
        (S3Location("b", "k", endpoint_url="http://s3.example:80"), "s3.example", "/b/k"),
        (
            S3Location("b", "k", endpoint_url="https://r2.example", addressing="virtual"),
            "b.r2.example",
            "/k",
        ),
    ],
)
def test_locations_yield_host_and_path(location: S3Location, host: str, path: str) -> None:
    assert (location.host, location.path) == (host, path)
    assert location.url().startswith(f"{location.scheme}://{host}/")


def test_the_url_carries_the_path_as_signed() -> None:
    location = S3Location("b", "dir/a b+c!", endpoint_url="http://127.0.0.1:9000")
    assert location.url([("x-id", "GetObject")]) == (
        "http://127.0.0.1:9000/b/dir/a%20b%2Bc%21?x-id=GetObject"
    )


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"bucket": "b", "addressing": "dns"}, "addressing"),
        ({"bucket": ""}, "bucket"),
        ({"bucket": "a/b"}, "bucket"),
        ({"bucket": "b", "endpoint_url": "s3.example"}, "endpoint URL"),
        ({"bucket": "b", "endpoint_url": "ftp://s3.example"}, "endpoint URL"),
        ({"bucket": "b", "endpoint_url": "http://s3.example/base"}, "no path"),
    ],
)
def test_a_location_refuses_what_it_cannot_address(kwargs: dict[str, str], reason: str) -> None:
    with pytest.raises(sigv4.SigV4Error, match=reason):
        S3Location(**kwargs)


# --- key encoding, for any key -------------------------------------------------------------------


@given(st.text())
def test_any_key_round_trips_and_leaves_only_unreserved_characters(key: str) -> None:
    encoded = sigv4.uri_encode(key, keep_slash=True)
    assert unquote(encoded, errors="strict") == key
    bare = encoded.replace("/", "")
    assert set(re.sub("%[0-9A-F]{2}", "", bare)) <= UNRESERVED
    assert encoded.count("/") == key.count("/")


@given(st.text())
def test_query_encoding_leaves_no_separator_unescaped(value: str) -> None:
    encoded = sigv4.uri_encode(value)
    assert unquote(encoded, errors="strict") == value
    assert set(re.sub("%[0-9A-F]{2}", "", encoded)) <= UNRESERVED
    assert sigv4.uri_encode(encoded) == encoded.replace("%", "%25")  # never decoded first


def test_the_signer_is_pure() -> None:
    """Stdlib only, and no sockets: the S3 client and the tests both build on it."""
    imported = imports_of(PACKAGE / "clients" / "sigv4.py")
    shell = ("http", "socket", "ssl", "urllib.request", "urllib3", "pywharf")
    wrong = {m for m in imported if m.split(".")[0] not in sys.stdlib_module_names}
    assert wrong | {m for m in imported if m.startswith(shell)} == set()
