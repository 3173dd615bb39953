"""The in-memory backend: the shared contract, nothing else (it is the contract's reference)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w
from contract import BackendContract
from support import READ
from support import WRITE

from pywharf.backends import Backend
from pywharf.backends import backend_settings
from pywharf.backends import create_backend
from pywharf.backends.memory import Blob
from pywharf.backends.memory import MemoryBackend
from pywharf.config import parse_repositories
from pywharf.index import FileRecord


def new_backend(root: Path) -> MemoryBackend:
    section = {"type": "memory", "read_secret": READ, "write_secret": WRITE}
    (config,) = parse_repositories(tomli_w.dumps({"local": section}), "test", backend_settings)
    backend = create_backend(config, root, None)
    assert isinstance(backend, MemoryBackend)
    return backend


class MemoryTamper:
    """Changes made to the store directly, behind the index."""

    def add_behind(self, backend: Backend, filename: str, data: bytes) -> None:
        assert isinstance(backend, MemoryBackend)
        with backend.store.lock:
            backend.store.files[filename] = Blob(data)

    def remove_behind(self, backend: Backend, record: FileRecord) -> None:
        assert isinstance(backend, MemoryBackend)
        with backend.store.lock:
            del backend.store.files[record.filename]

    def damage_behind(self, backend: Backend, record: FileRecord) -> None:
        assert isinstance(backend, MemoryBackend)
        with backend.store.lock:
            backend.store.files[record.filename].data += b"tampered"


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[MemoryBackend]:
    backend = new_backend(tmp_path / "root")
    yield backend
    backend.close()


@pytest.fixture
def twin(tmp_path: Path, backend: MemoryBackend) -> MemoryBackend:
    return new_backend(tmp_path / "root")


@pytest.fixture
def tamper() -> MemoryTamper:
    return MemoryTamper()


class TestMemoryContract(BackendContract):
    pass
