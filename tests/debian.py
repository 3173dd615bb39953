"""Debian packages the suite installs itself when they are missing (Chromium, nginx).

apt-get runs as root, non-interactive, and waits for a dpkg lock another installer holds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

__all__ = ["apt_install"]

APT_TIMEOUT_SECONDS = 900
DPKG_LOCK_SECONDS = 300  # another engineer's (or CI step's) apt-get may hold the lock


def _apt(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "-o", f"DPkg::Lock::Timeout={DPKG_LOCK_SECONDS}", *args]
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_SECONDS
    )


def apt_install(packages: Sequence[str], needed: Sequence[Path]) -> str | None:
    """Install `packages` unless every path in `needed` exists; a reason to skip if apt cannot.

    Debian's packages start no daemon here (no init: invoke-rc.d's policy denies it).
    """
    if all(path.exists() for path in needed):
        return None
    names = ", ".join(packages)
    if shutil.which("apt-get") is None:
        return f"{names} missing and there is no apt-get to install them"
    if os.geteuid() != 0:
        return f"{names} missing and apt-get needs root to install them"
    update = _apt("update")
    if update.returncode != 0:
        return f"apt-get update failed: {update.stderr.strip()[-500:]}"
    install = _apt("install", "-y", "--no-install-recommends", *packages)
    if install.returncode != 0:
        return f"apt cannot install {names}: {install.stderr.strip()[-500:]}"
    missing = [str(path) for path in needed if not path.exists()]
    if missing:
        return f"apt installed {names} but {', '.join(missing)} is missing"
    return None
