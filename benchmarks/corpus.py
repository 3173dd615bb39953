"""The benchmark corpus: P projects x V versions x (wheel + sdist), and one large wheel.

Files are made by `tests/factory.py`, written once under `benchmarks/work/corpus/` and reused
while a manifest with the same parameters says they are there.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from collections.abc import Iterator
from dataclasses import asdict
from dataclasses import dataclass
from pathlib import Path

from tests.factory import make_sdist
from tests.factory import make_wheel
from tests.factory import wheel_name

__all__ = [
    "MANIFEST_VERSION",
    "Corpus",
    "CorpusFile",
    "CorpusSpec",
    "ensure_corpus",
    "ensure_large_file",
    "planned_files",
    "project_name",
    "sdist_name",
    "version_name",
]

# Bump when the naming or the file contents change, so stale corpora are rebuilt.
MANIFEST_VERSION = 1
LARGE_PROJECT = "bench-large"
HASH_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class CorpusSpec:
    """How many projects and versions; each version has one wheel and one sdist."""

    projects: int
    versions: int

    @property
    def key(self) -> str:
        return f"p{self.projects}-v{self.versions}"

    @property
    def file_count(self) -> int:
        return self.projects * self.versions * 2


@dataclass(frozen=True)
class CorpusFile:
    """One distribution on disk, with what a legacy upload form needs."""

    project: str
    version: str
    filename: str
    filetype: str  # the upload form's value: "bdist_wheel" or "sdist"
    sha256: str
    size: int
    path: Path

    @property
    def pyversion(self) -> str:
        return "py3" if self.filetype == "bdist_wheel" else "source"


@dataclass(frozen=True)
class Corpus:
    spec: CorpusSpec
    directory: Path
    files: tuple[CorpusFile, ...]

    def projects(self, limit: int | None = None) -> list[str]:
        """The first `limit` project names, in corpus order."""
        names = list(dict.fromkeys(f.project for f in self.files))
        return names if limit is None else names[:limit]

    def subset(self, projects: int) -> list[CorpusFile]:
        """The files of the first `projects` projects (a smaller repository, same names)."""
        keep = set(self.projects(projects))
        return [f for f in self.files if f.project in keep]


def project_name(index: int) -> str:
    """Already normalized (PEP 503), so every server uses the same URL for it."""
    return f"bench-project-{index:05d}"


def version_name(index: int) -> str:
    return f"1.0.{index}"


def sdist_name(project: str, version: str) -> str:
    """PEP 625: the same escaping as a wheel, then `.tar.gz`."""
    return wheel_name(project, version).split("-")[0] + f"-{version}.tar.gz"


def planned_files(spec: CorpusSpec) -> Iterator[tuple[str, str, str, str]]:
    """(project, version, filename, filetype) for every file, project by project."""
    for p in range(spec.projects):
        project = project_name(p)
        for v in range(spec.versions):
            version = version_name(v)
            yield project, version, wheel_name(project, version), "bdist_wheel"
            yield project, version, sdist_name(project, version), "sdist"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _describe(path: Path, project: str, version: str, filetype: str) -> CorpusFile:
    return CorpusFile(
        project, version, path.name, filetype, file_sha256(path), path.stat().st_size, path
    )


def _write_manifest(directory: Path, params: dict[str, int], files: Iterable[CorpusFile]) -> None:
    rows = [{**asdict(f), "path": f.path.name} for f in files]
    body = {"manifest_version": MANIFEST_VERSION, "params": params, "files": rows}
    tmp = directory / "manifest.json.tmp"
    tmp.write_text(json.dumps(body))
    tmp.replace(directory / "manifest.json")


def _read_manifest(directory: Path, params: dict[str, int]) -> list[CorpusFile] | None:
    """The files a matching manifest lists, or None when it is missing, stale or incomplete."""
    try:
        body = json.loads((directory / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if body.get("manifest_version") != MANIFEST_VERSION or body.get("params") != params:
        return None
    files = [CorpusFile(**{**row, "path": directory / row["path"]}) for row in body["files"]]
    if not all(f.path.is_file() and f.path.stat().st_size == f.size for f in files):
        return None
    return files


def _generate(directory: Path, spec: CorpusSpec) -> list[CorpusFile]:
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    started = time.monotonic()
    for n, (project, version, _name, filetype) in enumerate(planned_files(spec), 1):
        make = make_wheel if filetype == "bdist_wheel" else make_sdist
        files.append(_describe(make(directory, project, version), project, version, filetype))
        if n % 5000 == 0:
            print(f"  corpus: {n}/{spec.file_count} files ({time.monotonic() - started:.0f} s)")
    return files


def ensure_corpus(work: Path, spec: CorpusSpec) -> Corpus:
    """The corpus for `spec` under `work/corpus/`, generated only when missing or different."""
    directory = work / "corpus" / spec.key
    params = {"projects": spec.projects, "versions": spec.versions}
    files = _read_manifest(directory, params)
    if files is None:
        print(f"generating corpus {spec.key} ({spec.file_count} files) in {directory}")
        files = _generate(directory, spec)
        _write_manifest(directory, params, files)
    return Corpus(spec, directory, tuple(files))


def ensure_large_file(work: Path, payload_bytes: int) -> CorpusFile:
    """One installable wheel padded with `payload_bytes` of incompressible data."""
    directory = work / "corpus" / f"large-{payload_bytes}"
    params = {"payload_bytes": payload_bytes}
    files = _read_manifest(directory, params)
    if files is None:
        print(f"generating a {payload_bytes / 2**20:.0f} MiB wheel in {directory}")
        directory.mkdir(parents=True, exist_ok=True)
        path = make_wheel(directory, LARGE_PROJECT, "1.0.0", payload_bytes=payload_bytes)
        files = [_describe(path, LARGE_PROJECT, "1.0.0", "bdist_wheel")]
        _write_manifest(directory, params, files)
    return files[0]
