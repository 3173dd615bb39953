"""The backend registry: read-only, fed by `register_backend`, imported lazily."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from pywharf.backends import BACKEND_TYPES
from pywharf.backends import _registry
from pywharf.backends import backend_class
from pywharf.backends import backend_settings
from pywharf.backends import register_backend
from pywharf.backends.file_system import FileSystemSettings
from pywharf.backends.github import GitHubSettings
from pywharf.backends.memory import MemoryBackend
from pywharf.backends.s3 import S3Settings
from pywharf.config import parse_repositories
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


@pytest.mark.parametrize(
    ("type_name", "settings_type"),
    [
        ("file_system", FileSystemSettings),
        ("memory", FileSystemSettings),
        ("github", GitHubSettings),
        ("s3", S3Settings),
    ],
)
def test_each_backend_reads_its_table_as_one_frozen_value(
    type_name: str, settings_type: type
) -> None:
    """The settings dataclass names exactly the keys of the backend's own table."""
    table = backend_class(type_name, "test").SETTINGS
    assert {f.name for f in dataclasses.fields(settings_type)} == {s.key for s in table}
    assert settings_type.__dataclass_params__.frozen  # type: ignore[attr-defined]


def test_a_choice_outside_the_settings_choices_is_refused_by_name() -> None:
    text = '[team]\ntype = "github"\nowner = "o"\nrepo = "r"\ndownload = "mirror"\n'
    with pytest.raises(ConfigError, match=r"download: 'mirror' is not 'redirect' or 'proxy'"):
        parse_repositories(text, "repos.toml", backend_settings)
