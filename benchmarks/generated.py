"""A pywharf file-system repository written directly, not uploaded: journal, files, sidecars.

A million files through the upload API would take hours; written here they take minutes. The
journal lines and `.meta` sidecars are what an upload writes (`pywharf.index.event_to_json`,
`pywharf.backends.sidecars`), so the server reads, serves and rescans them as its own. Each
file holds a few unique bytes (its sha256 is real), not a real wheel: pages, start-up, memory
and `update_index` never open a file's contents; a download sends whatever bytes are there.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmarks.corpus import sdist_name
from benchmarks.corpus import version_name
from tests.factory import wheel_name

__all__ = ["GeneratedRepository", "generate_repository"]

UPLOAD_TIME = 1_700_000_000.0
PREFIX = "scale-project-"  # not the corpus's `bench-project-`: those are uploaded beside these
_META = """\
name = "{project}"
version = "{version}"
filetype = "{filetype}"
distrib = "{project}"
sha256 = "{sha256}"

[pywharf]
filename = "{filename}"
project = "{project}"
version = "{version}"
sha256 = "{sha256}"
size = {size}
upload_time = {upload_time}
requires_python = ">=3.9"
"""


@dataclass(frozen=True)
class GeneratedRepository:
    root: Path  # the server's ROOT
    storage: Path  # ROOT/cache/<repo>/storage
    projects: int
    files: int
    first_file: str  # `/simple/<project>/<filename>` of one stored file

    @property
    def page_paths(self) -> list[str]:
        return [f"/simple/{project_name(p)}/" for p in range(self.projects)]


def project_name(index: int) -> str:
    return f"{PREFIX}{index:06d}"


def _planned(projects: int, versions: int) -> Iterator[tuple[str, str, str, str]]:
    for p in range(projects):
        project = project_name(p)
        for v in range(versions):
            version = version_name(v)
            yield project, version, wheel_name(project, version), "bdist_wheel"
            yield project, version, sdist_name(project, version), "sdist"


def generate_repository(
    root: Path, repository: str, projects: int, versions: int, with_files: bool = True
) -> GeneratedRepository:
    """ROOT for a `file_system` repository of projects x versions x (wheel + sdist).

    `with_files=False` writes the journal alone (start-up, memory and pages read nothing
    else); `update_index` needs the files and sidecars.
    """
    storage = root / "cache" / repository / "storage"
    private = storage / ".pywharf"
    private.mkdir(parents=True, exist_ok=True)
    started, count, made = time.monotonic(), 0, set()
    with (private / "journal.jsonl").open("w") as journal:
        for project, version, filename, filetype in _planned(projects, versions):
            content = f"{filename}\n".encode()
            sha256 = hashlib.sha256(content).hexdigest()
            record = {"filename": filename, "project": project, "version": version,
                      "sha256": sha256, "size": len(content), "upload_time": UPLOAD_TIME,
                      "requires_python": ">=3.9"}  # fmt: skip
            journal.write(json.dumps({"op": "add", **record}) + "\n")
            if with_files:
                folder = storage / project
                if project not in made:
                    folder.mkdir(exist_ok=True)
                    made.add(project)
                _write(folder / filename, content)
                meta = _META.format(filetype=filetype, **record)
                _write(folder / f"{filename}.meta", meta.encode())
            count += 1
            if count % 100_000 == 0:
                print(f"  generated {count:,} files ({time.monotonic() - started:.0f} s)")
    first = next(_planned(1, 1))
    return GeneratedRepository(root, storage, projects, count, f"/simple/{first[0]}/{first[2]}")


def _write(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(descriptor, data)
    finally:
        os.close(descriptor)
