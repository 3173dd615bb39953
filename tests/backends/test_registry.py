"""The backend registry: read-only, fed by `register_backend`, imported lazily."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pywharf.backends import BACKEND_TYPES
from pywharf.backends import _registry
from pywharf.backends import backend_class
from pywharf.backends import register_backend
from pywharf.backends.memory import MemoryBackend
from pywharf.errors import ConfigError


@pytest.fixture(autouse=True)
def registry_restored() -> Iterator[None]:
    """Types registered here do not outlive their test."""
    saved = dict(BACKEND_TYPES)
    yield
    _registry.clear()
    _registry.update(saved)


def test_the_registry_is_read_only() -> None:
    with pytest.raises(TypeError):
        BACKEND_TYPES["evil"] = "os:system"  # type: ignore[index]


def test_built_ins_are_registered_as_a_third_party_would_be() -> None:
    assert BACKEND_TYPES["memory"] == "pywharf.backends.memory:MemoryBackend"
    assert backend_class("memory", "test") is MemoryBackend


def test_a_missing_dependency_names_the_type_and_what_to_install() -> None:
    register_backend("test_missing_dependency", "pywharf_no_such_module.s3:S3Backend")
    with pytest.raises(
        ConfigError, match=r"'test_missing_dependency' needs 'pywharf_no_such_module'.*install"
    ):
        backend_class("test_missing_dependency", "repos.toml [team]")


def test_a_missing_class_and_an_unknown_type_are_config_errors() -> None:
    register_backend("test_missing_class", "pywharf.backends.memory:NoSuchBackend")
    with pytest.raises(ConfigError, match="does not exist"):
        backend_class("test_missing_class", "test")
    with pytest.raises(ConfigError, match=r"known types: .*file_system.*github.*memory"):
        backend_class("nope", "test")


def test_a_type_cannot_be_taken_over_or_malformed() -> None:
    with pytest.raises(ValueError, match="already"):
        register_backend("github", "evil.module:Backend")
    with pytest.raises(ValueError, match="not 'module:Class'"):
        register_backend("test_malformed", "no_colon")
