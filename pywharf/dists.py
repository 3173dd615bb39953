"""Project names and distribution filenames: the one place a filename becomes a `Distribution`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from packaging.utils import InvalidWheelFilename
from packaging.utils import NormalizedName
from packaging.utils import canonicalize_name
from packaging.utils import parse_wheel_filename
from packaging.version import InvalidVersion
from packaging.version import Version

from pywharf.errors import BadRequest
from pywharf.errors import InvalidFilename

__all__ = [
    "MAX_STORED_FILENAME_BYTES",
    "SDIST_SUFFIXES",
    "Distribution",
    "NormalizedName",
    "canonicalize_name",
    "check_storable_filename",
    "normalize_project_name",
    "parse_filename",
    "same_version",
]

# Name-format spec (PEP 508): the living spec uses \Z, since $ lets a trailing newline through;
# re.ASCII, since IGNORECASE alone lets KELVIN SIGN (U+212A) match [A-Z] as 'k'.
_VALID_NAME = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])\Z", re.IGNORECASE | re.ASCII)
# What pip accepts as an sdist, longest suffix first so ".tar.gz" wins over ".gz".
SDIST_SUFFIXES = (
    ".tar.lzma", ".tar.bz2", ".tar.gz", ".tar.xz", ".tar.lz",
    ".tbz", ".tgz", ".txz", ".tlz", ".tar", ".zip",
)  # fmt: skip
_MAX_FILENAME_BYTES = 255  # one path component on every file system we store on
# Stored files get longer names beside them; the longest today is the file-system backend's
# temporary `.{filename}.metadata.{pid}.{thread id}.tmp`, 46 bytes more; 64 leaves room.
_SIDECAR_RESERVE_BYTES = 64
MAX_STORED_FILENAME_BYTES = _MAX_FILENAME_BYTES - _SIDECAR_RESERVE_BYTES
_UNSAFE_CHARACTER = re.compile(r"[/\\\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Distribution:
    """One distribution file, as its filename describes it."""

    filename: str
    project: NormalizedName
    version: str  # PEP 440 normal form, or the legacy string as written
    kind: str  # "wheel" or "sdist"


def normalize_project_name(name: str) -> NormalizedName:
    """Validate a project name by the name-format spec and return its normalized form."""
    if not _VALID_NAME.match(name):
        raise BadRequest(
            f"{name!a} is not a valid project name (PEP 508: ASCII letters, digits, '.', '_', '-')"
        )
    return canonicalize_name(name)


def _checked_component(filename: str) -> str:
    if not filename.isascii():  # binary distribution format, sdist spec: names, versions, tags
        raise InvalidFilename(
            f"{filename!a} is not ASCII: wheel and sdist filenames are (their specs' rule)"
        )
    if not filename or filename.startswith(".") or len(filename) > _MAX_FILENAME_BYTES:
        raise InvalidFilename(f"{filename!r} is not a usable filename")
    if _UNSAFE_CHARACTER.search(filename):
        raise InvalidFilename(f"{filename!r} must be one path component without control characters")
    return filename


def _normal_version(text: str) -> str:
    try:
        return str(Version(text))
    except InvalidVersion:
        return text  # legacy sdists: keep the version as an opaque string, never crash


def _parse_wheel(filename: str) -> Distribution:
    try:  # PEP 427: {name}-{version}(-{build})?-{python}-{abi}-{platform}.whl
        name, version, _build, _tags = parse_wheel_filename(filename)
    except InvalidWheelFilename as error:
        raise InvalidFilename(f"{filename!r} is not a valid wheel filename: {error}") from None
    return Distribution(filename, name, str(version), "wheel")


def _split_sdist_stem(stem: str, project: str | None) -> tuple[str, str]:
    """pip's method when the project is known: the first '-' whose prefix names the project."""
    if project is not None:
        wanted = canonicalize_name(project)
        for index, character in enumerate(stem):
            if character == "-" and canonicalize_name(stem[:index]) == wanted:
                return stem[:index], stem[index + 1 :]
    name, _, version = stem.rpartition("-")  # PEP 625: exactly one '-' separates them
    return name, version


def _parse_sdist(filename: str, suffix: str, project: str | None) -> Distribution:
    name, version = _split_sdist_stem(filename.removesuffix(suffix), project)
    if not name or not version or not _VALID_NAME.match(name):
        raise InvalidFilename(f"{filename!r} is not a valid sdist filename (name-version{suffix})")
    return Distribution(filename, canonicalize_name(name), _normal_version(version), "sdist")


def parse_filename(filename: str, project: str | None = None) -> Distribution:
    """Turn a filename into a `Distribution`; `project` disambiguates legacy sdist names.

    >>> parse_filename("Foo.Bar-1.0.tar.gz").project
    'foo-bar'
    """
    _checked_component(filename)
    if filename.endswith(".whl"):
        return _parse_wheel(filename)
    for suffix in SDIST_SUFFIXES:
        if filename.endswith(suffix):
            return _parse_sdist(filename, suffix, project)
    raise InvalidFilename(f"{filename!r} has an unsupported extension; use .whl or .tar.gz")


def check_storable_filename(filename: str) -> None:
    """Refuse, before storing, a filename whose sidecar or temporary names would be too long."""
    if len(filename.encode()) > MAX_STORED_FILENAME_BYTES:
        raise InvalidFilename(
            f"{filename[:40]!a}... is {len(filename.encode())} bytes long; stored filenames are "
            f"at most {MAX_STORED_FILENAME_BYTES} bytes (255 less room for our sidecar files)"
        )


def same_version(left: str, right: str) -> bool:
    """PEP 440 equality (1.0 == 1.0.0); legacy strings compare as written."""
    try:
        return Version(left) == Version(right)
    except InvalidVersion:
        return left == right
