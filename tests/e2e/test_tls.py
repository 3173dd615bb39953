"""HTTPS with --certfile/--keyfile, against the built pyz, with a throwaway CA made here.

pip (`--cert`), uv (`SSL_CERT_FILE`) and twine (`--cert`) install and upload over it; plain
HTTP on the port gets a 400 and a clean close; SIGHUP swaps in a rotated certificate; the
session cookie is `Secure`; the access log can be JSON.
"""

from __future__ import annotations

import contextlib
import datetime
import http.client
import ipaddress
import json
import signal
import socket
import ssl
import subprocess
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from factory import make_wheel
from support import BIN
from support import CONFIG
from support import READ
from support import WRITE
from support import ServerProcess
from support import client_env
from support import poll
from support import start_pyz
from support import stop


@dataclass
class Authority:
    """A throwaway CA: its certificate file, and what it signs server certificates with."""

    path: Path
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def issue(self, cert_path: Path, key_path: Path) -> int:
        """A certificate for 127.0.0.1 and localhost; returns its serial number."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        names = x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        )
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(names, critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return certificate.serial_number


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pywharf test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return Authority(path, certificate, key)


# This machine points requests, curl and OpenSSL at its own CA bundle; requests lets
# REQUESTS_CA_BUNDLE override twine's --cert, so the clients run without any of them.
_CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")


def tls_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in client_env(home).items() if k not in _CA_VARIABLES}
    return {**env, **extra}


@dataclass
class TLSServer:
    server: ServerProcess
    authority: Authority
    cert: Path
    key: Path
    serial: int

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.live.port}"

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.authority.path))

    def get(self, path: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
        live = self.server.live
        connection = http.client.HTTPSConnection(
            live.host, live.port, timeout=30, context=self.context()
        )
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        response.read()
        connection.close()
        return response

    def peer_serial(self) -> int:
        live = self.server.live
        raw = socket.create_connection((live.host, live.port), timeout=10)
        with self.context().wrap_socket(raw, server_hostname="127.0.0.1") as secured:
            der = secured.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number


@pytest.fixture
def tls_server(pyz: Path, tmp_path: Path, authority: Authority) -> Iterator[TLSServer]:
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    serial = authority.issue(cert, key)
    config = tmp_path / "repos.toml"
    config.write_text(CONFIG)
    server = start_pyz(
        pyz, tmp_path / "root", "--config", str(config), "--extra_index_url", "",
        "--certfile", str(cert), "--keyfile", str(key), "--log_format", "json",
    )  # fmt: skip
    try:
        yield TLSServer(server, authority, cert, key, serial)
    finally:
        if server.process.poll() is None:
            stop(server)


def test_twine_uploads_then_pip_and_uv_install_over_https(
    tls_server: TLSServer, tmp_path: Path
) -> None:
    wheel = make_wheel(tmp_path, "tls-demo", "1.0")
    ca = str(tls_server.authority.path)
    upload = subprocess.run(
        [str(BIN / "twine"), "upload", "--non-interactive", "--disable-progress-bar",
         "--repository-url", f"{tls_server.url}/simple/", "--cert", ca, "-u", "local",
         "-p", WRITE, str(wheel)],
        env=tls_env(tmp_path / "twine-home"), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert upload.returncode == 0, upload.stdout + upload.stderr
    index = f"https://local:{READ}@127.0.0.1:{tls_server.server.live.port}/simple/"
    installed = _pip(index, tmp_path / "pip-target", tmp_path / "pip-home", "--cert", ca)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert (tmp_path / "pip-target" / "tls_demo").is_dir()
    env = tls_env(tmp_path / "uv-home", SSL_CERT_FILE=ca)
    uv = subprocess.run(
        [str(BIN / "uv"), "pip", "install", "--no-cache", "--target",
         str(tmp_path / "uv-target"), "--index-url", index, "--python", str(BIN / "python"),
         "tls-demo"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert uv.returncode == 0, uv.stdout + uv.stderr
    assert (tmp_path / "uv-target" / "tls_demo").is_dir()
    # Without the CA, the certificate is refused: TLS is really checked.
    untrusted = _pip(index, tmp_path / "t2", tmp_path / "pip-home2", "--retries", "0")
    assert (
        untrusted.returncode != 0
        and "CERTIFICATE_VERIFY_FAILED" in untrusted.stdout + untrusted.stderr
    )


def _pip(index: str, target: Path, home: Path, *options: str) -> subprocess.CompletedProcess[str]:
    command = [str(BIN / "python"), "-m", "pip", "install", "--isolated", "--no-cache-dir",
               "--target", str(target), "--index-url", index, *options, "tls-demo"]  # fmt: skip
    return subprocess.run(command, env=tls_env(home), capture_output=True, text=True, timeout=120)


def test_plain_http_on_the_tls_port_gets_400_and_a_close(tls_server: TLSServer) -> None:
    live = tls_server.server.live
    for _ in range(3):
        with socket.create_connection((live.host, live.port), timeout=10) as raw:
            raw.sendall(b"GET /simple/ HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while chunk := raw.recv(4096):  # the server closes: recv returns b""
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 400 ") and b"https://" in answer
    with socket.create_connection((live.host, live.port), timeout=10) as raw:
        raw.sendall(b"\x16\x03\x01\x00\x05garbage")  # a broken handshake: closed, nothing else
        # An alert then FIN, or a reset; the reset may come before our shutdown, which then
        # finds the connection gone (ENOTCONN, seen in CI): each is the answer expected.
        with contextlib.suppress(OSError):
            raw.shutdown(socket.SHUT_WR)
            while raw.recv(4096):
                pass
    assert tls_server.get("/healthz").status == 200  # the server is unharmed
    assert tls_server.server.process.poll() is None


def test_only_tls_12_and_up_with_modern_ciphers(tls_server: TLSServer) -> None:
    live = tls_server.server.live
    old = tls_server.context()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # what we test is deprecated
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("ALL:@SECLEVEL=0")
    cbc = tls_server.context()
    cbc.maximum_version = ssl.TLSVersion.TLSv1_2
    cbc.set_ciphers("ECDHE-ECDSA-AES128-SHA")  # forward secret, but CBC with SHA-1: not offered
    for context in (old, cbc):
        raw = socket.create_connection((live.host, live.port), timeout=10)
        with raw, pytest.raises(ssl.SSLError):
            context.wrap_socket(raw, server_hostname="127.0.0.1").close()
    tls12 = tls_server.context()
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    raw = socket.create_connection((live.host, live.port), timeout=10)
    with tls12.wrap_socket(raw, server_hostname="127.0.0.1") as secured:
        cipher, version, _ = secured.cipher()  # type: ignore[misc]
    assert (
        version == "TLSv1.2"
        and cipher.startswith("ECDHE-")
        and ("GCM" in cipher or "CHACHA" in cipher)
    )


def test_sighup_reloads_a_rotated_certificate(tls_server: TLSServer) -> None:
    assert tls_server.peer_serial() == tls_server.serial
    rotated = tls_server.authority.issue(tls_server.cert, tls_server.key)
    tls_server.server.process.send_signal(signal.SIGHUP)
    poll(lambda: True if tls_server.peer_serial() == rotated else None, "the rotated certificate")
    tls_server.cert.write_text("not a certificate")
    tls_server.server.process.send_signal(signal.SIGHUP)  # a broken file: the current one stays
    poll(lambda: True if "not reloaded" in tls_server.server.output() else None, "the log line")
    assert tls_server.peer_serial() == rotated


def test_the_session_cookie_is_secure_and_the_log_is_json(tls_server: TLSServer) -> None:
    response = tls_server.get("/login/", {"Accept": "text/html"})
    assert response.status == 200
    assert "; Secure" in (response.getheader("set-cookie") or "")

    def logged() -> list[dict[str, object]] | None:
        lines = [json.loads(line) for line in tls_server.server.output().splitlines()
                 if line.startswith("{")]  # fmt: skip
        return lines if any(entry["path"] == "/login/" for entry in lines) else None

    entry = next(e for e in poll(logged, "the JSON access-log line") if e["path"] == "/login/")
    assert entry["method"] == "GET" and entry["status"] == 200 and entry["client"] == "127.0.0.1"
    assert set(entry) == {"time", "client", "user", "method", "path", "status", "bytes", "ms"}
