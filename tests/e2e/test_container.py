"""The Dockerfile, built and run for real with podman on a locally bootstrapped Debian base.

tests/container/podman_setup.py installs podman with apt when it is missing and keeps its base
image in /var/tmp/pywharf-podman: the first run takes about a minute, later runs seconds. The
tests skip only where podman cannot be installed (not root, no apt, or apt refuses), saying why;
anything else that goes wrong fails them, a failed build with its whole log.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from factory import make_wheel
from support import BIN
from support import CONFIG
from support import READ
from support import REPO
from support import WRITE
from support import Live
from support import client_env

sys.path.insert(0, str(REPO / "tests" / "container"))

import podman_setup
from podman_setup import podman

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

UID = 10001  # the Dockerfile's PYWHARF_UID
ENTRYPOINT = ["python3", "/opt/pywharf/pywharf.pyz"]
START_SECONDS = 30
STOP_SECONDS = 10


@dataclass
class Container:
    """A container started by `running`, and the server it serves on the host network."""

    name: str
    live: Live

    def logs(self) -> str:
        result = podman("logs", self.name, check=False)
        return result.stdout + result.stderr

    def inspect(self, template: str) -> str:
        return podman("inspect", "--format", template, self.name).stdout.strip()

    def exec(self, *command: str) -> str:
        return podman("exec", self.name, *command).stdout


@pytest.fixture(scope="module")
def image(pyz: Path) -> Iterator[str]:
    """The repository's Dockerfile built offline on the local base, under a tag of its own."""
    try:
        podman_setup.ensure_packages()
    except podman_setup.Unavailable as error:
        pytest.skip(f"podman cannot be installed here: {error}")
    podman_setup.ensure_base_image()
    tag = f"localhost/pywharf-test:{uuid.uuid4().hex[:12]}"
    try:
        podman_setup.build_image(REPO, tag)
    except podman_setup.BuildFailed as error:
        pytest.fail(str(error), pytrace=False)
    try:
        yield tag
    finally:
        podman("rmi", "--force", tag, check=False)


def wait_until_serving(container: Container) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        try:
            container.live.request("GET", "/", auth=None)
            return
        except OSError:
            if container.inspect("{{.State.Running}}") != "true":
                raise AssertionError(f"the container exited:\n{container.logs()}") from None
            time.sleep(0.1)
    raise AssertionError(f"not serving after {START_SECONDS} s:\n{container.logs()}")


def free_port() -> int:
    """A port that was free a moment ago.

    Not `--port 0` as everywhere else: the Dockerfile's HEALTHCHECK probes PYWHARF_COMMAND_PORT,
    so the container must be given its real port before it starts.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def running(image: str, *options: str) -> Iterator[Container]:
    """Start the image with no arguments (environment mode) on a free port of the host."""
    port = free_port()
    name = f"pywharf-test-{uuid.uuid4().hex[:12]}"
    podman("run", "--detach", "--name", name, "--network", "host",
           "--env", f"PYWHARF_COMMAND_PORT={port}", *options, image)  # fmt: skip
    container = Container(name, Live("127.0.0.1", port, Path("/data")))
    try:
        wait_until_serving(container)
        yield container
    finally:
        podman("rm", "--force", "--volumes", "--time", "0", name, check=False)


@pytest.fixture(scope="module")
def served(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    """The image serving CONFIG (known secrets) from a mounted file, state in a host directory.

    The root filesystem is read-only with no tmpfs anywhere: the server may write only to /data.
    """
    folder = tmp_path_factory.mktemp("served")
    data = folder / "data"
    data.mkdir()
    shutil.chown(data, UID, UID)
    config = folder / "repos.toml"
    config.write_text(CONFIG)
    config.chmod(0o644)
    with running(
        image,
        "--read-only", "--read-only-tmpfs=false",
        "--volume", f"{data}:/data",
        "--volume", f"{config}:/etc/pywharf/repos.toml:ro",
        "--env", "PYWHARF_COMMAND_CONFIG=/etc/pywharf/repos.toml",
        "--env", "PYWHARF_COMMAND_EXTRA_INDEX_URL=",
    ) as container:  # fmt: skip
        container.live.root = data
        yield container


def multipart_upload(live: Live, wheel: Path, name: str, version: str) -> tuple[int, bytes]:
    """What twine sends (the fields pywharf checks), by hand over http.client."""
    content = wheel.read_bytes()
    fields = {":action": "file_upload", "protocol_version": "1", "name": name,
              "version": version, "filetype": "bdist_wheel", "pyversion": "py3",
              "sha256_digest": hashlib.sha256(content).hexdigest()}  # fmt: skip
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
        for key, value in fields.items()
    ]
    parts.append(
        f"--{boundary}\r\nContent-Disposition: form-data; "
        f'name="content"; filename="{wheel.name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + content
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    status, _headers, body = live.request(
        "POST", "/simple/", b"".join(parts), headers, auth=("local", WRITE)
    )
    return status, body


def test_image_configuration(image: str) -> None:
    inspected = json.loads(podman("image", "inspect", image).stdout)[0]
    config = inspected["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ENTRYPOINT
    assert not config.get("Cmd"), "no arguments: environment mode"
    assert {"PYWHARF_COMMAND=server", "PYWHARF_COMMAND_ROOT=/data"} <= set(config["Env"])
    assert "8888/tcp" in config["ExposedPorts"]
    assert "/data" in config["Volumes"]
    assert config["StopSignal"] == "SIGTERM"
    assert inspected["Healthcheck"]["Test"][0] == "CMD", "no HEALTHCHECK (--format docker?)"


def test_upload_then_pip_install_through_the_container(served: Container, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "container-demo", "1.0")
    status, body = multipart_upload(served.live, wheel, "container-demo", "1.0")
    assert status == 200, body.decode(errors="replace") + served.logs()
    target = tmp_path / "target"
    command = [str(BIN / "python"), "-m", "pip", "install", "--isolated", "--no-cache-dir",
               "--target", str(target), "--index-url", served.live.index_url(READ),
               "container-demo==1.0"]  # fmt: skip
    pip = subprocess.run(
        command, env=client_env(tmp_path / "home"), capture_output=True, text=True, timeout=120
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr + served.logs()
    assert (target / "container_demo" / "__init__.py").read_text() == "__version__ = '1.0'\n"
    stored = [path for path in served.live.root.rglob("*") if path.name == wheel.name]
    assert stored, "the wheel is not in the mounted /data"
    owners = {path.stat().st_uid for path in served.live.root.rglob("*")}
    assert owners == {UID}, f"files in /data owned by {owners}"


def test_healthcheck_is_healthy_on_a_changed_port(served: Container) -> None:
    result = podman("healthcheck", "run", served.name, check=False)
    assert result.returncode == 0, result.stdout + result.stderr + served.logs()
    assert served.inspect("{{.State.Health.Status}}") == "healthy"


def test_runs_as_a_non_root_user_with_python_as_pid_1(served: Container) -> None:
    assert served.exec("id", "-u").strip() == str(UID)
    assert served.exec("cat", "/proc/1/cmdline").split("\0")[:2] == ENTRYPOINT


def test_default_volume_and_a_clean_stop_on_sigterm(image: str) -> None:
    """Nothing but the port set: the embedded repository, state in the image's /data volume."""
    with running(image) as container:
        secrets = tomllib.loads(container.exec("cat", "/data/embedded-secrets.toml"))
        read = secrets["local"]["read_secret"]
        status, _headers, _body = container.live.request("GET", "/simple/", auth=("local", read))
        assert status == 200
        status, _headers, _body = container.live.request("GET", "/simple/", auth=None)
        assert status == 401
        started = time.monotonic()
        podman("stop", "--time", str(STOP_SECONDS), container.name, timeout=STOP_SECONDS + 30)
        elapsed = time.monotonic() - started
        code = container.inspect("{{.State.ExitCode}}")
        logs = container.logs()
        assert code == "0", f"exit code {code} after {elapsed:.1f} s (137: killed)\n{logs}"
        assert elapsed < STOP_SECONDS, logs
        assert "stopped" in logs


def test_github_actions_service_recipe(image: str) -> None:
    """The README's recipe: a service with no configuration, then one anonymous POST."""
    with running(image) as container:
        form = urllib.parse.urlencode({"config": CONFIG}).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        status, _headers, body = container.live.request(
            "POST", "/initialize/", form, headers, auth=None
        )
        assert status == 200, body.decode(errors="replace") + container.logs()
        status, _headers, body = container.live.request("GET", "/simple/", auth=("local", READ))
        assert status == 200, body.decode(errors="replace") + container.logs()
