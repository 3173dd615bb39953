#!/usr/bin/env python3
"""Run the whole test suite: make .venv from pyproject.toml, build the pyz, run pytest.

Usage: python3 tests/run.py [pytest arguments]   (`-n 0`: in one process)
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
VENV = HERE / ".venv"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".pyproject-sha256"
# The suite waits on subprocesses (pip, uv, twine, servers, SeaweedFS, Chromium) more than it
# computes: on two cores, four pytest-xdist workers took it from 5:53 to 1:36 (2,037 tests,
# measured 2026-12-06; six workers: 1:31). A whole file goes to one worker, so a module's
# fixtures (the container image, a team's servers) start once. A later `-n` overrides this.
WORKERS = ["-n", "4", "--dist", "loadfile"]


def ensure_venv() -> None:
    """(Re)install the project and its test extras when pyproject.toml changed."""
    digest = hashlib.sha256((HERE / "pyproject.toml").read_bytes()).hexdigest()
    if PYTHON.exists() and STAMP.exists() and STAMP.read_text() == digest:
        return
    if not PYTHON.exists():
        venv.create(VENV, with_pip=True)
    env = {
        **os.environ,
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_ROOT_USER_ACTION": "ignore",
    }
    subprocess.run(
        [str(PYTHON), "-m", "pip", "install", "-q", "-e", f"{HERE}[test]"], check=True, env=env
    )
    STAMP.write_text(digest)


def main() -> int:
    ensure_venv()
    subprocess.run([str(PYTHON), str(HERE / "build.py")], check=True)
    command = [str(PYTHON), "-m", "pytest", *WORKERS, *sys.argv[1:]]
    return subprocess.run(command, cwd=HERE).returncode


if __name__ == "__main__":
    sys.exit(main())
