"""The SeaweedFS harness, and `clients/sigv4.py` proven against a server that checks signatures.

Plain `http.client` on purpose: the signer must stand on its own before any client uses it.
"""

from __future__ import annotations

import datetime
import glob
import hashlib
import socket
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import s3_support
from s3_support import S3Bucket
from s3_support import request
from s3_support import running_seaweedfs
from s3_support import send

from pywharf.clients import sigv4
from pywharf.clients.sigv4 import Credentials

pytestmark = pytest.mark.slow

# `!`, `+`, a space, `~`, unicode, and characters S3 documents as needing care.
AWKWARD_KEY = "dir/a!b+c d~e-ሴ é('x')*.whl"
BODY = bytes(range(256)) * 4


def xml_values(body: bytes, tag: str) -> list[str]:
    """Text of every element named `tag`, whatever the namespace (rclone omits S3's xmlns)."""
    return [el.text or "" for el in ET.fromstring(body).iter() if el.tag.split("}")[-1] == tag]


def test_a_wrong_secret_is_refused_with_signature_does_not_match(seaweedfs: S3Bucket) -> None:
    wrong = Credentials(seaweedfs.access_key, seaweedfs.secret_key + "x")
    answer = request("PUT", seaweedfs.location("k"), wrong, body=b"x")
    assert answer.status == 403
    assert xml_values(answer.body, "Code") == ["SignatureDoesNotMatch"]


def test_an_awkward_key_round_trips(seaweedfs: S3Bucket) -> None:
    keys = Credentials(seaweedfs.access_key, seaweedfs.secret_key)
    location = seaweedfs.location(AWKWARD_KEY)
    put = request("PUT", location, keys, body=BODY)
    assert put.status == 200, put
    # SeaweedFS answers a single-part PUT with the quoted hex MD5, as AWS does.
    assert put.headers["etag"] == f'"{hashlib.md5(BODY).hexdigest()}"'

    got = request("GET", location, keys)
    assert (got.status, got.body) == (200, BODY)

    ranged = request("GET", location, keys, headers=[("Range", "bytes=10-19")])
    assert (ranged.status, ranged.body) == (206, BODY[10:20])
    assert ranged.headers["content-range"] == f"bytes 10-19/{len(BODY)}"

    head = request("HEAD", location, keys)
    assert (head.status, head.body) == (200, b"")
    assert head.headers["content-length"] == str(len(BODY))
    assert head.headers["etag"] == put.headers["etag"]


def test_a_prefix_listing_finds_the_awkward_key_only(seaweedfs: S3Bucket) -> None:
    keys = Credentials(seaweedfs.access_key, seaweedfs.secret_key)
    for key in (AWKWARD_KEY, "dir/a!b other", "elsewhere"):
        assert request("PUT", seaweedfs.location(key), keys, body=b"x").status == 200
    # The bucket path with no key: path-style `/bucket/`, the query holds the signed prefix.
    query = [("list-type", "2"), ("prefix", "dir/a!b+")]
    listing = request("GET", seaweedfs.location(), keys, query=query)
    assert listing.status == 200, listing
    assert xml_values(listing.body, "Key") == [AWKWARD_KEY]


def test_create_if_absent_refuses_the_second_write_with_412(seaweedfs: S3Bucket) -> None:
    keys = Credentials(seaweedfs.access_key, seaweedfs.secret_key)
    location = seaweedfs.location("once/" + AWKWARD_KEY)
    condition = [("If-None-Match", "*")]
    first = request("PUT", location, keys, headers=condition, body=b"first")
    assert first.status == 200, first
    second = request("PUT", location, keys, headers=condition, body=b"second")
    assert second.status == 412
    assert xml_values(second.body, "Code") == ["PreconditionFailed"]
    assert request("GET", location, keys).body == b"first"


def test_a_presigned_url_needs_no_credentials(seaweedfs: S3Bucket) -> None:
    keys = Credentials(seaweedfs.access_key, seaweedfs.secret_key)
    location = seaweedfs.location(AWKWARD_KEY)
    assert request("PUT", location, keys, body=BODY).status == 200
    now = datetime.datetime.now(datetime.timezone.utc)
    presigned = sigv4.presign_get(location, keys, now, 300)
    parts = urlsplit(presigned.url)
    answer = send("GET", parts.netloc, presigned.target)
    assert (answer.status, answer.body) == (200, BODY)

    forged = sigv4.presign_get(location, replace(keys, secret_access_key="wrong"), now, 300)
    refused = send("GET", parts.netloc, forged.target)
    assert refused.status == 403
    assert xml_values(refused.body, "Code") == ["SignatureDoesNotMatch"]


def test_a_port_taken_before_weed_binds_it_is_retried_and_everything_is_cleaned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race the harness cannot avoid (weed cannot bind port 0) ends in a retry."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        picks = iter([busy])
        original = s3_support.free_ports

        def first_pick_is_taken(count: int) -> tuple[int, ...]:
            ports = list(original(count))
            for port in picks:  # the first call only
                ports[s3_support.SERVICES.index("s3")] = port
            return tuple(ports)

        monkeypatch.setattr(s3_support, "free_ports", first_pick_is_taken)
        with running_seaweedfs(tmp_path) as server:
            # A retry's own pick can collide too (another suite's weed, seen in CI): at least
            # the first try failed, and every failed try's folder is gone.
            tries = int(server.directory.name.removeprefix("weed-"))
            assert tries >= 1
            assert [n for n in range(tries) if (tmp_path / f"weed-{n}").exists()] == []
            assert urlsplit(server.endpoint_url).port != busy
    assert server.process.poll() is not None
    assert not server.directory.exists()
    assert [p for port in server.ports for p in glob.glob(f"/tmp/seaweedfs-*-{port}.sock")] == []
