"""PEP 740: the attestations an upload carries, checked by their shape, and the provenance object.

Pure. The upload's `attestations` form field (a JSON array, as twine and uv send it) is checked
against the PEP's schema and its statement's subject against the uploaded file. Sigstore
signatures are not verified here: a client verifies them with `pypi-attestations` (README).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from pywharf.errors import BadRequest
from pywharf.errors import PayloadTooLarge

__all__ = [
    "MAX_ATTESTATIONS",
    "MAX_ATTESTATIONS_BYTES",
    "PROVENANCE_SUFFIX",
    "Identity",
    "parse_attestations",
    "provenance_json",
    "publisher",
]

# A Sigstore attestation is 5 to 10 KiB (a certificate, a Rekor entry, a DSSE envelope); PyPI
# takes one per predicate type (publish, SLSA provenance). The bound keeps the index lean.
MAX_ATTESTATIONS_BYTES = 256 * 1024
MAX_ATTESTATIONS = 16
PROVENANCE_SUFFIX = ".provenance"  # PEP 740: served at `<file URL>.provenance`
IN_TOTO_STATEMENT = "https://in-toto.io/Statement/v1"


@dataclass(frozen=True)
class Identity:
    """Who made a request, as the audit log names them.

    `actor` is "secret:write" for a repository's write secret; tokens will be "token:<label>",
    and trusted publishing "oidc:<repository>@<workflow>" (with its claims, for `publisher`).
    """

    repository: str
    actor: str


def publisher(identity: Identity) -> dict[str, Any]:
    """PEP 740's publisher of an upload: the one place that maps an identity to it.

    An upload with an OIDC-minted token is to carry its trusted-publishing claims here.
    """
    return {"kind": "pywharf", "repository": identity.repository, "actor": identity.actor}


def _object(value: Any, where: str, keys: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"attestations: {where} is not a JSON object (PEP 740)")
    missing = [key for key in keys if key not in value]
    if missing:
        raise BadRequest(f"attestations: {where} has no {missing[0]!r} (PEP 740)")
    return value


def _base64(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise BadRequest(f"attestations: {where} is not a string (PEP 740)")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"attestations: {where} is not base64 (PEP 740)") from None


def _check_statement(data: bytes, where: str, filename: str, sha256: str) -> None:
    """The in-toto statement must name exactly this file and its sha256 (PEP 740)."""
    try:
        statement = json.loads(data)
    except ValueError:
        raise BadRequest(f"attestations: {where} is not a JSON in-toto statement") from None
    statement = _object(statement, where, ("_type", "subject", "predicateType"))
    subjects = statement["subject"]
    if statement["_type"] != IN_TOTO_STATEMENT or not isinstance(subjects, list):
        raise BadRequest(f"attestations: {where} is not an in-toto v1 statement")
    if len(subjects) != 1 or not isinstance(subjects[0], dict):
        raise BadRequest(f"attestations: {where} must have exactly one subject (PEP 740)")
    digest = subjects[0].get("digest")
    if subjects[0].get("name") != filename or not isinstance(digest, dict):
        raise BadRequest(f"attestations: {where}'s subject is not {filename!r}")
    if digest.get("sha256") != sha256:
        raise BadRequest(f"attestations: {where}'s subject digest is not this file's sha256")


def _check_attestation(item: Any, where: str, filename: str, sha256: str) -> None:
    """The PEP 740 Attestation object, by its shape; signatures are not verified."""
    item = _object(item, where, ("version", "verification_material", "envelope"))
    if item["version"] != 1 or isinstance(item["version"], bool):
        raise BadRequest(f"attestations: {where}.version is not 1 (PEP 740)")
    material = _object(
        item["verification_material"],
        f"{where}.verification_material",
        ("certificate", "transparency_entries"),
    )
    _base64(material["certificate"], f"{where}.verification_material.certificate")
    entries = material["transparency_entries"]
    listed = isinstance(entries, list) and bool(entries)
    if not listed or not all(isinstance(entry, dict) for entry in entries):
        raise BadRequest(
            f"attestations: {where}.verification_material.transparency_entries is not a "
            "non-empty array of objects (PEP 740)"
        )
    envelope = _object(item["envelope"], f"{where}.envelope", ("statement", "signature"))
    _base64(envelope["signature"], f"{where}.envelope.signature")
    statement = _base64(envelope["statement"], f"{where}.envelope.statement")
    _check_statement(statement, f"{where}.envelope.statement", filename, sha256)


def parse_attestations(text: str, filename: str, sha256: str) -> list[dict[str, Any]]:
    """The upload's `attestations` field: a JSON array of PEP 740 attestations of this file."""
    if len(text.encode()) > MAX_ATTESTATIONS_BYTES:
        raise PayloadTooLarge(f"the attestations field is over {MAX_ATTESTATIONS_BYTES} bytes")
    try:
        attestations = json.loads(text)
    except ValueError as error:
        raise BadRequest(f"attestations: not JSON: {error}") from None
    if not isinstance(attestations, list):
        raise BadRequest("attestations: not a JSON array (PEP 740)")
    if len(attestations) > MAX_ATTESTATIONS:
        raise BadRequest(f"attestations: more than {MAX_ATTESTATIONS} in one upload")
    for number, item in enumerate(attestations):
        _check_attestation(item, f"attestation {number}", filename, sha256)
    return attestations


def provenance_json(attestations: list[dict[str, Any]], by: dict[str, Any]) -> str:
    """PEP 740's provenance object for one file, as served at `<file URL>.provenance`."""
    bundle = {"publisher": by, "attestations": attestations}
    return json.dumps({"version": 1, "attestation_bundles": [bundle]}, separators=(",", ":"))
