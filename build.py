#!/usr/bin/env python3
"""Build dist/pywharf.pyz: pywharf and its runtime dependencies in one shiv zipapp.

Usage: python3 build.py [--output PATH]

The dependencies are resolved for the oldest Python we support (3.9), as pure-Python wheels, so
the same file runs on every CPython 3.9 to 3.13. tomli is always bundled: it is needed below 3.11
and harmless above. shiv is installed into a private build venv when it is missing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUILD = HERE / "build"
RUNTIME_REQUIREMENTS = ["urllib3>=2,<3", "packaging>=24", "tomli>=2", "tomli-w>=1"]
SHEBANG = "/usr/bin/env python3"


def pip_env() -> dict[str, str]:
    """Resolve from the package index alone: a machine-wide pip config must not leak in."""
    return {
        **os.environ,
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_ROOT_USER_ACTION": "ignore",
    }


def shiv_command() -> list[str]:
    """`shiv` from this interpreter if it has it, else from a private build venv."""
    try:
        import shiv  # noqa: F401

        return [sys.executable, "-m", "shiv"]
    except ImportError:
        pass
    tools = BUILD / "tools-venv"
    python = tools / "bin" / "python"
    if not python.exists():
        venv.create(tools, with_pip=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "shiv>=1.0.8"], check=True, env=pip_env()
    )
    return [str(python), "-m", "shiv"]


def stage_site_packages(site: Path) -> None:
    """Install the runtime dependencies for Python 3.9 and copy our package beside them."""
    shutil.rmtree(site, ignore_errors=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--target",
            str(site),
            "--only-binary=:all:",
            "--python-version",
            "3.9",
            "--implementation",
            "py",
            "--no-compile",
            *RUNTIME_REQUIREMENTS,
        ],
        check=True,
        env=pip_env(),
    )
    shutil.copytree(
        HERE / "pywharf", site / "pywharf", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )


def build(output: Path) -> None:
    site = BUILD / "site-packages"
    stage_site_packages(site)
    output.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            *shiv_command(),
            "--site-packages",
            str(site),
            "--entry-point",
            "pywharf.cli:main",
            "--python",
            SHEBANG,
            "--output-file",
            str(output),
            "--compressed",
            "--reproducible",
            "--no-modify",
            # Compile the bytecode once, when the first start extracts the zipapp: without it
            # every start compiles every module again wherever bytecode is not written
            # (PYTHONDONTWRITEBYTECODE, a read-only SHIV_ROOT), 0.42 s of CPU instead of 0.28 s
            # to the first answer with 20,000 files (issue 16).
            "--compile-pyc",
        ],
        check=True,
        env=pip_env(),
    )
    print(f"built {output} ({output.stat().st_size // 1024} KiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=HERE / "dist" / "pywharf.pyz")
    build(parser.parse_args().output)


if __name__ == "__main__":
    main()
