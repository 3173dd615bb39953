"""The README documents every command, flag and configuration key (one table drives them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pywharf.backends import BACKEND_TYPES
from pywharf.backends import backend_settings
from pywharf.settings import COMMANDS

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_and_flag_is_documented(name: str) -> None:
    command = COMMANDS[name]
    assert f"`pywharf {name}" in README or f" {name} " in README
    for setting in command.flags:
        if setting.key in command.positionals:
            assert f"`{setting.key.upper()}" in README or setting.key.upper() in README
        else:
            assert f"--{setting.key}" in README, f"--{setting.key} of {name}"


@pytest.mark.parametrize("type_name", sorted(BACKEND_TYPES))
def test_every_backend_key_is_documented(type_name: str) -> None:
    for setting in backend_settings(type_name, "test"):
        assert f"`{setting.key}`" in README, f"{type_name}.{setting.key}"
