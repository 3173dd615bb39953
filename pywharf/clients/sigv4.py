"""AWS Signature Version 4 for S3, as pure functions over values (stdlib only).

Section names below are those of the AWS documentation: "Create a canonical request" (the
IAM user guide's "Elements of an AWS API request signature" / "Create a signed AWS API request"),
and the S3 API reference's "Authenticating Requests: Using the Authorization Header" and
"Authenticating Requests: Using Query Parameters". Checked against AWS's published test suite
and S3 examples in `tests/data/sigv4-vectors.json`.

Only programmer errors raise (`SigV4Error`, a `ValueError`); nothing here does I/O.

>>> location = S3Location("examplebucket", "test.txt", addressing="virtual")
>>> location.host, location.path
('examplebucket.s3.us-east-1.amazonaws.com', '/test.txt')
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace

__all__ = [
    "ALGORITHM",
    "EMPTY_SHA256",
    "MAX_PRESIGN_EXPIRES",
    "UNSIGNED_PAYLOAD",
    "Credentials",
    "S3Location",
    "SigV4Error",
    "Signature",
    "SignedRequest",
    "amz_date",
    "authorization_header",
    "canonical_headers",
    "canonical_query",
    "canonical_request",
    "canonical_uri",
    "credential_scope",
    "payload_hash",
    "presign_get",
    "sign",
    "sign_request",
    "signed_headers",
    "signing_key",
    "string_to_sign",
    "uri_encode",
]

ALGORITHM = "AWS4-HMAC-SHA256"
# S3 "Signature Calculations for the Authorization Header": x-amz-content-sha256 may be this
# literal instead of the body's hash (every store in ../shared/reference/s3-storage.md takes it).
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# S3 "Authenticating Requests: Using Query Parameters": X-Amz-Expires is at most 7 days.
MAX_PRESIGN_EXPIRES = 7 * 24 * 3600
ADDRESSING = ("auto", "path", "virtual")
# Headers `sign_request` computes itself; a caller passing one would sign a second value.
_OWN_HEADERS = frozenset({"host", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token"})
_HEX = frozenset("0123456789abcdef")


class SigV4Error(ValueError):
    """A value the signer cannot sign (a bug in the caller, never bad input from a user)."""


@dataclass(frozen=True)
class Credentials:
    """An access key pair, with the session token of temporary (STS) credentials."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(default="", repr=False)


@dataclass(frozen=True)
class Signature:
    """Every intermediate of one signature, so tests can check each step."""

    canonical_request: str
    string_to_sign: str
    signature: str
    authorization: str


@dataclass(frozen=True)
class SignedRequest:
    """What to send: the target (path and query, as on the request line) and every header."""

    method: str
    url: str
    target: str
    headers: tuple[tuple[str, str], ...]
    signature: Signature


def uri_encode(text: str, *, keep_slash: bool = False) -> str:
    """Percent-encode UTF-8 bytes outside `A-Za-z0-9-._~`, uppercase hex ("UriEncode()").

    S3 "Create a canonical request": encode every byte but the unreserved characters, with
    uppercase hex digits; `/` is kept only in the path (`keep_slash`). Python's `quote` treats
    exactly RFC 3986's unreserved set as always safe (`~` since 3.7).

    >>> uri_encode("a b+c!*'()~/%ሴ", keep_slash=True)
    'a%20b%2Bc%21%2A%27%28%29~/%25%E1%88%B4'
    """
    return urllib.parse.quote(text, safe="/" if keep_slash else "", encoding="utf-8")


def canonical_uri(path: str) -> str:
    """The CanonicalURI of a raw (not yet encoded) S3 path: encoded once, `/` kept.

    S3 "Create a canonical request": S3 encodes the object key once and does not normalize the
    path (`//`, `.` and `..` segments are part of the key); other services double-encode and
    normalize, which is why the generic suite's normalize-path vectors do not apply to S3.
    """
    if not path.startswith("/"):
        raise SigV4Error(f"an S3 path starts with '/': {path!r}")
    return uri_encode(path, keep_slash=True)


def canonical_query(params: Iterable[tuple[str, str]]) -> str:
    """The CanonicalQueryString: names and values encoded, sorted by name then value.

    "Create a canonical request": encode each name and value (so `/`, `+`, `=` become `%2F`,
    `%2B`, `%3D`), sort by encoded name and then value, join with `&`; a parameter without a
    value keeps its `=` (`?uploads` signs as `uploads=`).
    """
    pairs = sorted((uri_encode(name), uri_encode(value)) for name, value in params)
    return "&".join(f"{name}={value}" for name, value in pairs)


def _canonical_header_map(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lowercase names, each value trimmed with inner whitespace runs collapsed, repeats joined.

    "Create a canonical request": `Lowercase(HeaderName) + ':' + Trimall(HeaderValue)`, values
    of a repeated header joined with `,` in the order sent (suite: get-header-value-order).
    """
    merged: dict[str, list[str]] = {}
    for name, value in headers:
        key = name.strip().lower()
        if not key:
            raise SigV4Error(f"empty header name (value {value!r})")
        merged.setdefault(key, []).append(" ".join(value.split()))
    return {key: ",".join(values) for key, values in sorted(merged.items())}


def canonical_headers(headers: Iterable[tuple[str, str]]) -> str:
    """The CanonicalHeaders block: one `name:value` line per header, sorted, each ending `\\n`."""
    return "".join(f"{name}:{value}\n" for name, value in _canonical_header_map(headers).items())


def signed_headers(headers: Iterable[tuple[str, str]]) -> str:
    """The SignedHeaders list: the lowercase names, sorted, joined with `;`."""
    return ";".join(_canonical_header_map(headers))


def payload_hash(body: bytes | None) -> str:
    """The x-amz-content-sha256 value: the body's hex sha256, or UNSIGNED-PAYLOAD for None.

    S3 "Signature Calculations for the Authorization Header: Transferring Payload in a Single
    Chunk": a signed payload is the lowercase hex SHA-256 of the body (of b"" when empty).
    """
    return UNSIGNED_PAYLOAD if body is None else hashlib.sha256(body).hexdigest()


def _check_payload_hash(value: str) -> None:
    if value != UNSIGNED_PAYLOAD and (len(value) != 64 or not set(value) <= _HEX):
        raise SigV4Error(f"payload hash is neither UNSIGNED-PAYLOAD nor hex sha256: {value!r}")


def canonical_request(
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Iterable[tuple[str, str]],
    payload: str,
) -> str:
    """The CanonicalRequest: six lines, the last the payload hash, with no trailing newline.

    "Create a canonical request": Method, CanonicalURI, CanonicalQueryString, CanonicalHeaders
    (which end in a newline, hence the blank line), SignedHeaders, HashedPayload.
    """
    _check_payload_hash(payload)
    headers = tuple(headers)
    return "\n".join(
        [
            method.upper(),
            canonical_uri(path),
            canonical_query(query),
            canonical_headers(headers),
            signed_headers(headers),
            payload,
        ]
    )


def credential_scope(date: str, region: str, service: str = "s3") -> str:
    """`YYYYMMDD/region/service/aws4_request` ("Create a string to sign")."""
    if len(date) != 8 or not date.isdigit():
        raise SigV4Error(f"a scope date is YYYYMMDD: {date!r}")
    return f"{date}/{region}/{service}/aws4_request"


def string_to_sign(timestamp: str, scope: str, request: str) -> str:
    """Algorithm, request timestamp, scope, hex sha256 of the canonical request ("Create a
    string to sign")."""
    digest = hashlib.sha256(request.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{timestamp}\n{scope}\n{digest}"


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret_access_key: str, date: str, region: str, service: str = "s3") -> bytes:
    """kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")
    ("Derive a signing key")."""
    key = _hmac(("AWS4" + secret_access_key).encode("utf-8"), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return key


def authorization_header(access_key_id: str, scope: str, signed: str, signature: str) -> str:
    """The Authorization value ("Add the signature to the request"); S3 accepts `, ` or `,`."""
    return (
        f"{ALGORITHM} Credential={access_key_id}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )


def amz_date(when: datetime.datetime) -> str:
    """The ISO 8601 basic timestamp of X-Amz-Date (`20130524T000000Z`) of an aware datetime."""
    if when.tzinfo is None:
        raise SigV4Error("a signing time must be timezone-aware (UTC)")
    return when.astimezone(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def sign(
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Iterable[tuple[str, str]],
    payload: str,
    credentials: Credentials,
    region: str,
    timestamp: str,
    service: str = "s3",
) -> Signature:
    """Sign a request whose headers (Host and X-Amz-Date included) are all signed, as given."""
    query, headers = tuple(query), tuple(headers)
    request = canonical_request(method, path, query, headers, payload)
    scope = credential_scope(timestamp[:8], region, service)
    to_sign = string_to_sign(timestamp, scope, request)
    key = signing_key(credentials.secret_access_key, timestamp[:8], region, service)
    value = hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    auth = authorization_header(credentials.access_key_id, scope, signed_headers(headers), value)
    return Signature(request, to_sign, value, auth)


@dataclass(frozen=True)
class S3Location:
    """An object (or with `key=""` the bucket itself) and where its bucket is served.

    S3 "Virtual hosting of buckets": `virtual` puts the bucket in the host name, `path` in
    the first path segment. `auto` is path-style when `endpoint_url` is set (SeaweedFS, MinIO,
    Ceph RGW serve no per-bucket host names) and virtual-hosted on AWS, which is deprecating
    path-style there. Without an endpoint URL the host is AWS's regional endpoint.
    """

    bucket: str
    key: str = ""
    endpoint_url: str = ""
    region: str = "us-east-1"
    addressing: str = "auto"

    def __post_init__(self) -> None:
        if self.addressing not in ADDRESSING:
            raise SigV4Error(f"addressing is one of {ADDRESSING}: {self.addressing!r}")
        if not self.bucket or "/" in self.bucket:
            raise SigV4Error(f"a bucket name is non-empty and holds no '/': {self.bucket!r}")
        if self.endpoint_url:
            parts = urllib.parse.urlsplit(self.endpoint_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise SigV4Error(f"an endpoint URL is http(s)://host[:port]: {self.endpoint_url!r}")
            if parts.path.strip("/") or parts.query or parts.fragment:
                raise SigV4Error(f"an endpoint URL has no path or query: {self.endpoint_url!r}")

    def at(self, key: str) -> S3Location:
        """The same bucket and endpoint, another key."""
        return replace(self, key=key)

    @property
    def path_style(self) -> bool:
        return self.addressing == "path" or (self.addressing == "auto" and bool(self.endpoint_url))

    @property
    def scheme(self) -> str:
        return urllib.parse.urlsplit(self.endpoint_url).scheme if self.endpoint_url else "https"

    @property
    def host(self) -> str:
        """The Host header, port included unless it is the scheme's default."""
        if self.endpoint_url:
            netloc = urllib.parse.urlsplit(self.endpoint_url).netloc.rpartition("@")[2]
            default = ":443" if self.scheme == "https" else ":80"
            base = netloc.removesuffix(default)
        else:
            base = f"s3.{self.region}.amazonaws.com"
        return base if self.path_style else f"{self.bucket}.{base}"

    @property
    def path(self) -> str:
        """The raw (unencoded) path: `/bucket/key` path-style, `/key` virtual-hosted."""
        return f"/{self.bucket}/{self.key}" if self.path_style else f"/{self.key}"

    def target(self, query: Iterable[tuple[str, str]] = ()) -> str:
        """The request-line target: the path encoded as signed, then the canonical query."""
        encoded = canonical_query(query)
        return canonical_uri(self.path) + (f"?{encoded}" if encoded else "")

    def url(self, query: Iterable[tuple[str, str]] = ()) -> str:
        return f"{self.scheme}://{self.host}{self.target(query)}"


def sign_request(
    method: str,
    location: S3Location,
    credentials: Credentials,
    when: datetime.datetime,
    *,
    query: Iterable[tuple[str, str]] = (),
    headers: Iterable[tuple[str, str]] = (),
    payload: str = UNSIGNED_PAYLOAD,
) -> SignedRequest:
    """Sign an S3 request with the Authorization header; every header sent is signed.

    Adds Host, X-Amz-Date, X-Amz-Content-Sha256 (required by S3 on every signed request) and,
    for temporary credentials, X-Amz-Security-Token (S3 "Using the Authorization Header").
    """
    query, extra = tuple(query), tuple(headers)
    clash = sorted({name.lower() for name, _ in extra} & _OWN_HEADERS)
    if clash:
        raise SigV4Error(f"sign_request sets these headers itself: {clash}")
    timestamp = amz_date(when)
    own = [("Host", location.host), ("X-Amz-Date", timestamp), ("X-Amz-Content-Sha256", payload)]
    if credentials.session_token:
        own.append(("X-Amz-Security-Token", credentials.session_token))
    all_headers = (*own, *extra)
    signature = sign(
        method, location.path, query, all_headers, payload, credentials, location.region, timestamp
    )
    sent = (*all_headers, ("Authorization", signature.authorization))
    target = location.target(query)
    return SignedRequest(method.upper(), location.url(query), target, sent, signature)


def presign_get(
    location: S3Location,
    credentials: Credentials,
    when: datetime.datetime,
    expires: int,
    *,
    query: Iterable[tuple[str, str]] = (),
) -> SignedRequest:
    """A presigned GET URL that needs no credentials to use, valid `expires` seconds.

    S3 "Authenticating Requests: Using Query Parameters": the X-Amz-* parameters (with
    X-Amz-Security-Token for temporary credentials, signed as S3 requires) are part of the
    canonical query, only `host` is signed, the payload is UNSIGNED-PAYLOAD, and
    X-Amz-Signature is appended last.
    """
    if not 1 <= expires <= MAX_PRESIGN_EXPIRES:
        raise SigV4Error(f"X-Amz-Expires is 1 to {MAX_PRESIGN_EXPIRES} seconds: {expires}")
    timestamp = amz_date(when)
    scope = credential_scope(timestamp[:8], location.region)
    params = [
        *query,
        ("X-Amz-Algorithm", ALGORITHM),
        ("X-Amz-Credential", f"{credentials.access_key_id}/{scope}"),
        ("X-Amz-Date", timestamp),
        ("X-Amz-Expires", str(expires)),
        ("X-Amz-SignedHeaders", "host"),
    ]
    if credentials.session_token:
        params.append(("X-Amz-Security-Token", credentials.session_token))
    host = (("host", location.host),)
    signature = sign(
        "GET", location.path, params, host, UNSIGNED_PAYLOAD, credentials, location.region,
        timestamp,
    )  # fmt: skip
    target = f"{location.target(params)}&X-Amz-Signature={signature.signature}"
    url = f"{location.scheme}://{location.host}{target}"
    return SignedRequest("GET", url, target, host, signature)
