"""The CPython interpreters 3.9 to 3.13 on this machine, each checked by running it."""

from __future__ import annotations

import functools
import glob
import os
import shutil
import subprocess
from dataclasses import dataclass

__all__ = ["MINORS", "Interpreter", "interpreters"]

MINORS = ("3.9", "3.10", "3.11", "3.12", "3.13")


@dataclass(frozen=True)
class Interpreter:
    minor: str  # "3.11"
    version: str  # "3.11.7"
    path: str


def _candidates(minor: str) -> list[str]:
    found = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{minor}*/bin/python3")))
    on_path = shutil.which(f"python{minor}")
    return [*found, *([on_path] if on_path else [])]


def _probe(path: str) -> tuple[str, str] | None:
    """(version, real executable) of a working CPython, or None."""
    code = (
        "import sys, platform; "
        "print(platform.python_implementation(), platform.python_version(), sys.executable)"
    )
    try:
        result = subprocess.run(
            [path, "-I", "-c", code], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = result.stdout.strip().split(maxsplit=2)
    if result.returncode != 0 or len(parts) != 3 or parts[0] != "CPython":
        return None
    return parts[1], os.path.realpath(parts[2])


@functools.cache
def interpreters() -> tuple[Interpreter, ...]:
    """One interpreter per minor version found, the first that works (its version checked)."""
    chosen = []
    for minor in MINORS:
        for path in _candidates(minor):
            probed = _probe(path)
            if probed is not None and probed[0].startswith(minor + "."):
                chosen.append(Interpreter(minor, probed[0], probed[1]))
                break
    return tuple(chosen)
