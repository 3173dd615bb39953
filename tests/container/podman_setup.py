#!/usr/bin/env python3
"""Podman for the container test: install it, bootstrap a local base image, build the Dockerfile.

Usage: python3 tests/container/podman_setup.py    (as root: set up, build pywharf:local, print
the environment variables that point podman at the private configuration)

Facts of this machine kind are in the reference notes (container-ci.md): Docker Hub is not
reachable, so the base image is bootstrapped from the Debian mirror apt already uses; crun
refuses the host's hybrid cgroups and podman's default ulimits exceed the hard limits, so podman
runs with a private containers.conf and storage.conf (named by CONTAINERS_CONF and
CONTAINERS_STORAGE_CONF; /etc is left alone). Everything podman keeps lives in CACHE, so later
runs reuse the base image and take seconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "BASE_IMAGE",
    "CACHE",
    "BuildFailed",
    "Unavailable",
    "build_image",
    "ensure_base_image",
    "ensure_packages",
    "podman",
    "podman_env",
]

CACHE = Path(os.environ.get("PYWHARF_PODMAN_CACHE", "/var/tmp/pywharf-podman"))
BASE_IMAGE = "localhost/pywharf-base:bookworm"
PACKAGES = {"podman": "podman", "runc": "runc", "debootstrap": "debootstrap"}  # package: program
SUITE = "bookworm"
FALLBACK_MIRROR = "http://deb.debian.org/debian"
# What `podman import` loses: a base image from debootstrap has no environment at all.
BASE_CHANGES = ["ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "ENV LANG=C.UTF-8"]  # fmt: skip
APT_SECONDS = 600
DEBOOTSTRAP_SECONDS = 900
BUILD_SECONDS = 300
LOCK_SECONDS = 1200
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/sbin"])


class Unavailable(Exception):
    """Podman cannot be installed here (no apt, not root, or apt refused): the test skips."""


class BuildFailed(Exception):
    """`podman build` failed; the message carries the whole build log."""


def _missing_programs() -> list[str]:
    return [package for package, program in PACKAGES.items()
            if shutil.which(program, path=SEARCH_PATH) is None]  # fmt: skip


def _apt(*args: str) -> subprocess.CompletedProcess[str]:
    # Another process may hold the dpkg lock (a concurrent test setup): wait for it, bounded.
    command = ["apt-get", "-q", "-o", f"DPkg::Lock::Timeout={APT_SECONDS // 2}", *args]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=APT_SECONDS, check=False
    )


def ensure_packages() -> None:
    """Install podman, runc and debootstrap with apt when any is missing; else do nothing."""
    if os.geteuid() != 0:
        # Rootless podman needs subuid ranges and a per-user store: not this machine kind.
        raise Unavailable("the container test runs podman as root (and installs it with apt)")
    missing = _missing_programs()
    if not missing:
        return
    if shutil.which("apt-get", path=SEARCH_PATH) is None:
        raise Unavailable(f"{', '.join(missing)} missing and there is no apt-get to install it")
    update = _apt("update")
    if update.returncode != 0:
        raise Unavailable(f"apt-get update failed:\n{update.stdout[-2000:]}{update.stderr}")
    install = _apt("install", "-y", "--no-install-recommends", *PACKAGES)
    if install.returncode != 0:
        raise Unavailable(
            f"apt-get install {' '.join(PACKAGES)} failed:\n"
            f"{install.stdout[-2000:]}{install.stderr}"
        )
    if still := _missing_programs():
        raise AssertionError(f"apt-get installed them, yet {', '.join(still)} is not on PATH")


def _ulimits() -> list[str]:
    """Podman's default ulimits exceed this host's hard limits, which root may not raise."""
    limits = []
    for name, which, ceiling in (
        ("nofile", resource.RLIMIT_NOFILE, 1048576),
        ("nproc", resource.RLIMIT_NPROC, 32768),
    ):
        hard = resource.getrlimit(which)[1]
        value = ceiling if hard == resource.RLIM_INFINITY else min(hard, ceiling)
        limits.append(f"{name}={value}:{value}")
    return limits


def _write_if_changed(path: Path, text: str) -> None:
    """Replace atomically: a concurrent test run's podman may be reading the file."""
    if path.exists() and path.read_text() == text:
        return
    spare = path.with_name(f".{path.name}.{os.getpid()}")
    spare.write_text(text)
    os.replace(spare, path)


def _write_configuration() -> tuple[Path, Path]:
    run = CACHE / "run"
    containers = CACHE / "containers.conf"
    quoted = ", ".join(f'"{limit}"' for limit in _ulimits())
    _write_if_changed(
        containers,
        "# Written by tests/container/podman_setup.py; see the reference notes, container-ci.md\n"
        f"[containers]\ndefault_ulimits = [{quoted}]\n"
        '\n[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
        f'tmp_dir = "{run / "libpod"}"\n',
    )
    storage = CACHE / "storage.conf"
    _write_if_changed(
        storage,
        '[storage]\ndriver = "overlay"\n'
        f'graphroot = "{CACHE / "storage"}"\nrunroot = "{run / "storage"}"\n',
    )
    return containers, storage


def _forget_previous_boot() -> None:
    """Runtime state normally lives on a tmpfs that a reboot empties; /run is disk here."""
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    stamp = CACHE / "boot_id"
    if stamp.exists() and stamp.read_text() != boot_id:
        shutil.rmtree(CACHE / "run", ignore_errors=True)
    stamp.write_text(boot_id)


def podman_env() -> dict[str, str]:
    """The environment that points podman at the private configuration in CACHE."""
    return {
        **os.environ,
        "CONTAINERS_CONF": str(CACHE / "containers.conf"),
        "CONTAINERS_STORAGE_CONF": str(CACHE / "storage.conf"),
    }


def podman(
    *args: str, timeout: float = 60, check: bool = True, stdin: int | None = None
) -> subprocess.CompletedProcess[str]:
    """Run podman with the private configuration; output is captured as text."""
    result: subprocess.CompletedProcess[str] = subprocess.run(
        ["podman", *args], env=podman_env(), capture_output=True, text=True,
        timeout=timeout, check=False, stdin=stdin,
    )  # fmt: skip
    if check and result.returncode != 0:
        raise AssertionError(
            f"podman {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
        )
    return result


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One setup at a time: concurrent test runs share CACHE."""
    CACHE.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + LOCK_SECONDS
    with (CACHE / "lock").open("w") as lock:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{CACHE / 'lock'} held for {LOCK_SECONDS} s") from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def debian_mirror(sources: Path = Path("/etc/apt/sources.list.d/debian.sources")) -> str:
    """The first Debian (not security) URI apt uses here, in deb822 or one-line format."""
    if sources.exists():
        for stanza in re.split(r"\n\s*\n", sources.read_text()):
            fields: dict[str, str] = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.MULTILINE))
            uris = fields.get("URIs", "").split()
            if uris and "security" not in fields.get("Suites", "") + uris[0]:
                return uris[0]
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for match in re.finditer(
            r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", legacy.read_text(), re.M
        ):
            if "security" not in match.group(1) + match.group(2):
                return match.group(1)
    return FALLBACK_MIRROR


def _bootstrap_base_image() -> None:
    """debootstrap a minbase bookworm with python3 and import it (175 MB, about a minute)."""
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="rootfs-") as scratch:
        rootfs = Path(scratch) / "rootfs"
        try:
            _debootstrap(rootfs)
            _import(rootfs)
        finally:
            _unmount_below(rootfs)


def _debootstrap(rootfs: Path) -> None:
    """debootstrap --variant=minbase with python3, then drop apt's caches."""
    command = ["debootstrap", "--variant=minbase", "--include=python3", SUITE, str(rootfs),
               debian_mirror()]  # fmt: skip
    # A session of its own: on timeout its dpkg and wget children are stopped with it.
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    ) as process:  # fmt: skip
        try:
            output, _ = process.communicate(timeout=DEBOOTSTRAP_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
    if process.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited {process.returncode}:\n{output[-4000:]}")
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for entry in (rootfs / cache).glob("*"):
            if entry.is_file():
                entry.unlink()


def _unmount_below(rootfs: Path) -> None:
    """A failed or timed-out debootstrap may leave /proc and /sys mounted in the target."""
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(f"{rootfs}/")), reverse=True):
        subprocess.run(["umount", "--lazy", mount], check=False, timeout=60)


def _import(rootfs: Path) -> None:
    tar = subprocess.Popen(
        ["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE
    )
    assert tar.stdout is not None
    changes = [arg for change in BASE_CHANGES for arg in ("--change", change)]
    try:
        podman("import", *changes, "-", BASE_IMAGE, stdin=tar.stdout.fileno(), timeout=300)
    finally:
        tar.stdout.close()  # if podman failed, tar now gets SIGPIPE instead of blocking
        try:
            code = tar.wait(60)
        except subprocess.TimeoutExpired:
            tar.kill()
            code = tar.wait()
    if code != 0:
        raise AssertionError(f"tar of {rootfs} exited {code}")


def ensure_base_image() -> None:
    """Write the private podman configuration and make the base image unless it is cached."""
    with _locked():
        _write_configuration()
        _forget_previous_boot()
        if podman("image", "exists", BASE_IMAGE, check=False).returncode != 0:
            _bootstrap_base_image()


def build_image(context: Path, tag: str) -> str:
    """`podman build` offline on the local base; returns the log, raises BuildFailed with it."""
    command = ["build", "--pull=never", "--network", "none", "--format", "docker",
               "--build-arg", f"PYTHON_IMAGE={BASE_IMAGE}", "-t", tag, str(context)]  # fmt: skip
    result = podman(*command, timeout=BUILD_SECONDS, check=False)
    log = f"$ podman {' '.join(command)}\n{result.stdout}{result.stderr}"
    if result.returncode != 0:
        raise BuildFailed(f"podman build exited {result.returncode}; build log:\n{log}")
    return log


def main() -> int:
    try:
        ensure_packages()
    except Unavailable as error:
        print(f"podman unavailable: {error}", file=sys.stderr)
        return 1
    ensure_base_image()
    repository = Path(__file__).resolve().parents[2]
    print(build_image(repository, "localhost/pywharf:local"))
    environment = podman_env()
    for name in ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF"):
        print(f"export {name}={environment[name]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
