"""Make small, valid distributions for tests and benchmarks: wheels pip can install, sdists.

The wheels hold one importable module named after the project, a METADATA file, WHEEL and a
RECORD with real hashes, so pip and uv install them for real.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import tarfile
import zipfile
from pathlib import Path

__all__ = [
    "make_attestation",
    "make_attestation_file",
    "make_sdist",
    "make_wheel",
    "metadata_text",
    "wheel_name",
]
PUBLISH_PREDICATE = "https://docs.pypi.org/attestations/publish/v1"

# A fixed timestamp keeps the archives byte-for-byte reproducible.
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)


def _escaped(name: str) -> str:
    """PEP 427: the name in a filename, normalized with runs of -_. as one underscore."""
    return re.sub(r"[-_.]+", "_", name).lower()


def wheel_name(name: str, version: str, tag: str = "py3-none-any") -> str:
    return f"{_escaped(name)}-{version}-{tag}.whl"


def metadata_text(
    name: str,
    version: str,
    requires_python: str | None = None,
    summary: str = "A test package",
    requires_dist: tuple[str, ...] = (),
    description: str = "Long description.",
) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", f"Summary: {summary}"]
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    lines += [f"Requires-Dist: {requirement}" for requirement in requires_dist]
    return "\n".join(lines) + f"\n\n{description}\n"


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def make_wheel(
    directory: Path,
    name: str,
    version: str,
    requires_python: str | None = None,
    payload_bytes: int = 0,
    tag: str = "py3-none-any",
    requires_dist: tuple[str, ...] = (),
    summary: str = "A test package",
    description: str = "Long description.",
) -> Path:
    """Write an installable wheel; `payload_bytes` pads it with an incompressible data file."""
    module = _escaped(name)
    dist_info = f"{module}-{version}.dist-info"
    files: dict[str, bytes] = {
        f"{module}/__init__.py": f"__version__ = {version!r}\n".encode(),
        f"{dist_info}/METADATA": metadata_text(
            name, version, requires_python, summary, requires_dist, description
        ).encode(),
        f"{dist_info}/WHEEL": (
            f"Wheel-Version: 1.0\nGenerator: pywharf-tests\nRoot-Is-Purelib: true\nTag: {tag}\n"
        ).encode(),
    }
    if payload_bytes:
        files[f"{module}/payload.bin"] = _pseudo_random(payload_bytes, seed=f"{name}{version}")
    record = [_record_line(path, data) for path, data in files.items()]
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    path = Path(directory) / wheel_name(name, version, tag)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, data in files.items():
            info = zipfile.ZipInfo(member, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return path


def make_sdist(
    directory: Path, name: str, version: str, requires_python: str | None = None
) -> Path:
    """Write a PEP 625 sdist: `{name}-{version}.tar.gz` with PKG-INFO and pyproject.toml."""
    stem = f"{_escaped(name)}-{version}"
    members = {
        f"{stem}/PKG-INFO": metadata_text(name, version, requires_python).encode(),
        f"{stem}/pyproject.toml": f'[project]\nname = "{name}"\nversion = "{version}"\n'.encode(),
    }
    path = Path(directory) / f"{stem}.tar.gz"
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as archive:
        for member, data in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            info.mtime = 1577836800
            archive.addfile(info, io.BytesIO(data))
    return path


def _pseudo_random(size: int, seed: str) -> bytes:
    """Incompressible bytes, cheap to make: a sha256 chain, repeated in 1 MiB blocks."""
    block = bytearray()
    digest = seed.encode()
    while len(block) < min(size, 1 << 20):
        digest = hashlib.sha256(digest).digest()
        block += digest
    whole, rest = divmod(size, len(block))
    return bytes(block) * whole + bytes(block[:rest])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def make_attestation(dist: Path, predicate_type: str = PUBLISH_PREDICATE) -> dict[str, object]:
    """A PEP 740 attestation object of `dist`, in the PEP's format, with no real Sigstore: the
    statement is a real in-toto statement of the file; certificate and signature are bytes."""
    sha256 = hashlib.sha256(dist.read_bytes()).hexdigest()
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": dist.name, "digest": {"sha256": sha256}}],
        "predicateType": predicate_type,
        "predicate": None,
    }
    entry = {
        "logIndex": "12345",
        "logId": {"keyId": _b64(b"log-key-id")},
        "kindVersion": {"kind": "dsse", "version": "0.0.1"},
        "integratedTime": "1700000000",
        "canonicalizedBody": _b64(b'{"kind":"dsse"}'),
    }
    return {
        "version": 1,
        "verification_material": {
            "certificate": _b64(b"0\x82 not a real DER certificate " + dist.name.encode()),
            "transparency_entries": [entry],
        },
        "envelope": {
            "statement": _b64(json.dumps(statement).encode()),
            "signature": _b64(hashlib.sha512(dist.name.encode()).digest()),
        },
    }


def make_attestation_file(dist: Path, kind: str = "publish") -> Path:
    """`<dist>.<kind>.attestation` beside the distribution, as twine and uv look for it."""
    path = dist.with_name(f"{dist.name}.{kind}.attestation")
    path.write_text(json.dumps(make_attestation(dist)))
    return path
