"""The command line as a user meets it: `python -m pywharf` in a subprocess.

Bad arguments get one clear line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO
from support import Live
from support import ServerProcess
from support import announced_port
from support import stop
from support import wait_until_serving

from pywharf.errors import ConfigError
from pywharf.settings import COMMANDS
from pywharf.settings import SERVER
from pywharf.settings import BackendOptions
from pywharf.settings import option_keys
from pywharf.settings import parse_flags

TIMEOUT = 20


def pywharf_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PYWHARF_")}
    env["PYTHONPATH"] = str(REPO)
    return env


def run_cli(*args: str, cwd: Path, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pywharf", *args]
    try:
        return subprocess.run(
            command, cwd=cwd, env=pywharf_env(), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as error:  # run() has killed it
        raise AssertionError(
            f"pywharf {' '.join(args)} did not exit within {timeout} s "
            f"(it should refuse its arguments at once); output: {error.stdout!r}"
        ) from None


# --- help --------------------------------------------------------------------------------------


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "server" in result.stdout
    assert "update_index" in result.stdout
    assert result.stderr == ""


# The flags issue 2 names, with the defaults it names (the settings table must not lose one).
ISSUE_FLAGS = {
    "config": None,
    "admin_secret": None,
    "config_or_admin_secret_can_be_text": None,
    "auth_read_expires": "3600",
    "auth_write_expires": "300",
    "extra_index_url": None,
    "debug": None,
    "host": "0.0.0.0",
    "port": "8888",
}


def test_server_help_documents_every_flag_of_the_settings_table(tmp_path: Path) -> None:
    result = run_cli("server", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "ROOT" in result.stdout
    for setting in SERVER.flags:
        if setting.required:  # the positional ROOT
            continue
        documented = [line for line in lines if f"--{setting.key} " in line + " "]
        assert documented, f"--{setting.key} is not in `pywharf server --help`"
        assert setting.help.split(".")[0][:30] in " ".join(lines), setting.key


@pytest.mark.parametrize(("flag", "default"), ISSUE_FLAGS.items(), ids=list(ISSUE_FLAGS))
def test_server_help_shows_the_flags_and_defaults_issue_2_names(
    flag: str, default: str | None, tmp_path: Path
) -> None:
    result = run_cli("server", "--help", cwd=tmp_path)
    line = next((x for x in result.stdout.splitlines() if f"--{flag} " in x + " "), None)
    assert line is not None, f"--{flag} missing from:\n{result.stdout}"
    if default is not None:
        assert default in line


def test_help_after_other_flags_still_helps(tmp_path: Path) -> None:
    result = run_cli("server", "ROOT", "--port", "1", "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "--port" in result.stdout
    assert not (tmp_path / "ROOT").exists()


# --- flag spellings ----------------------------------------------------------------------------

SPELLINGS = {
    "--flag value": ["r", "--port", "9001", "--host", "127.0.0.2"],
    "--flag=value": ["r", "--port=9001", "--host=127.0.0.2"],
    "dashed --flag value": ["r", "--port", "9001", "--host", "127.0.0.2"],
    "dashed, mixed": ["--port=9001", "r", "--host", "127.0.0.2"],
}


@pytest.mark.parametrize("argv", SPELLINGS.values(), ids=list(SPELLINGS))
def test_flag_spellings(argv: list[str]) -> None:
    options = parse_flags(SERVER, argv)
    assert options.root == "r"
    assert options.port == 9001
    assert options.host == "127.0.0.2"


@pytest.mark.parametrize(
    "argv",
    [
        ["r", "--auth-read-expires", "5", "--auth-write-expires=6", "--extra-index-url", ""],
        ["r", "--auth_read_expires=5", "--auth_write_expires", "6", "--extra_index_url="],
        ["r", "--AUTH-READ-EXPIRES=5", "--auth_write-expires", "6", "--extra-index_url="],
    ],
    ids=["dashed", "underscored", "mixed case"],
)
def test_dashed_and_underscored_flags_are_one_flag(argv: list[str]) -> None:
    options = parse_flags(SERVER, argv)
    assert (options.auth_read_expires, options.auth_write_expires) == (5, 6)
    assert options.extra_index_url == ""


@pytest.mark.parametrize(
    ("argv", "debug", "as_text"),
    [
        (["r"], False, False),
        (["r", "--debug"], True, False),
        (["r", "--debug", "--port", "1"], True, False),
        (["r", "--debug=false"], False, False),
        (["r", "--debug", "true"], True, False),
        (["r", "--config-or-admin-secret-can-be-text", "--debug"], True, True),
    ],
)
def test_boolean_flags(argv: list[str], debug: bool, as_text: bool) -> None:
    options = parse_flags(SERVER, argv)
    assert options.debug is debug
    assert options.config_or_admin_secret_can_be_text is as_text


def test_defaults() -> None:
    options = parse_flags(SERVER, ["r"])
    assert options.auth_read_expires == 3600
    assert options.auth_write_expires == 300
    assert options.host == "0.0.0.0"
    assert options.port == 8888
    assert options.config is None
    assert options.debug is False


@pytest.mark.parametrize(
    "argv",
    [[], ["--port", "1"], ["r", "s"], ["r", "--nope"], ["r", "--port"], ["r", "--port", "x"]],
)
def test_parse_flags_raises_usage_errors(argv: list[str]) -> None:
    with pytest.raises(ConfigError):  # UsageError or a flag's ConfigError: both exit 2
        parse_flags(SERVER, argv)


def test_the_server_starts_with_mixed_spellings(tmp_path: Path) -> None:
    """`--flag=value`, `--flag value` and dashed names together, through the real entry point."""
    log = tmp_path / "server.log"
    command = [sys.executable, "-m", "pywharf", "server", str(tmp_path / "root"),
               "--port=0", "--host", "127.0.0.1", "--extra-index-url=",
               "--auth-read-expires", "10", "--auth_write_expires=10"]  # fmt: skip
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, env=pywharf_env(), cwd=tmp_path
        )
    server = ServerProcess(process, Live("127.0.0.1", 0, tmp_path / "root"), log)
    try:
        server.live.port = announced_port(process, log)
        wait_until_serving(server.live, process, log)
        status, _, _ = server.live.request("GET", "/simple/", auth=None)
        assert status == 401
    finally:
        if process.poll() is None:
            assert stop(server) == 0


# --- bad arguments -----------------------------------------------------------------------------

BAD = {
    "unknown command": ["bogus"],
    "unknown command, flag-like": ["--bogus"],
    "missing ROOT": ["server"],
    "missing ROOT with flags": ["server", "--port", "1"],
    "unknown flag": ["server", "ROOT", "--nope"],
    "unknown flag=value": ["server", "ROOT", "--nope=1"],
    "single-dash flag": ["server", "-x", "--host", "127.0.0.1", "--port", "0"],
    "flag without value": ["server", "ROOT", "--port"],
    "port not a number": ["server", "ROOT", "--port", "abc"],
    "port out of range": ["server", "ROOT", "--host", "127.0.0.1", "--port", "99999"],
    "negative port": ["server", "ROOT", "--host", "127.0.0.1", "--port", "-1"],
    "expires not a number": ["server", "ROOT", "--auth_read_expires=soon"],
    "boolean not a boolean": ["server", "ROOT", "--debug", "maybe"],
    "extra positional": ["server", "ROOT", "OTHER"],
    "ROOT twice": ["server", "ROOT", "--root", "OTHER"],
    "missing config file": ["server", "ROOT", "--config", "/nonexistent/pywharf.toml"],
    "update_index without type": ["update_index"],
}


@pytest.mark.parametrize("argv", BAD.values(), ids=list(BAD))
def test_bad_arguments_exit_2_with_one_line_and_no_traceback(
    argv: list[str], tmp_path: Path
) -> None:
    result = run_cli(*argv, cwd=tmp_path, timeout=8)  # a refusal is immediate
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr + result.stdout
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pywharf: ")
    assert result.stdout == ""
    assert not (tmp_path / "ROOT").exists() or argv[0] != "server"


# --- configuration errors name the file and the key --------------------------------------------

CONFIGS = {
    "unknown key": (
        '[local]\ntype = "file_system"\nread_secret = "r"\nwrite_secret = "w"\ncolour = "red"\n',
        "colour",
    ),
    "wrong type": (
        '[local]\ntype = "file_system"\nread_secret = "r"\nmax_file_bytes = "big"\n',
        "max_file_bytes",
    ),
    "missing type": ('[local]\nread_secret = "r"\n', "type"),
    "unknown backend type": ('[local]\ntype = "floppy"\n', "floppy"),
    "not TOML": ("[local\n", "TOML"),
    "same name twice, other case": (
        '[local]\ntype = "file_system"\n[LOCAL]\ntype = "file_system"\n',
        "LOCAL",
    ),
    "no repository": ("", "no repository"),
}


@pytest.mark.parametrize(("text", "key"), CONFIGS.values(), ids=list(CONFIGS))
def test_config_errors_name_the_file_and_the_key(text: str, key: str, tmp_path: Path) -> None:
    config = tmp_path / "repos.toml"
    config.write_text(text)
    result = run_cli("server", str(tmp_path / "root"), "--config", str(config), cwd=tmp_path)
    assert "Traceback" not in result.stderr
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert str(config) in lines[0]
    assert key in lines[0]


def test_admin_secret_errors_name_the_file_and_the_key(tmp_path: Path) -> None:
    config = tmp_path / "repos.toml"
    config.write_text('[local]\ntype = "file_system"\nread_secret = "r"\nwrite_secret = "w"\n')
    admin = tmp_path / "admin.toml"
    admin.write_text('[local]\ntype = "file_system"\nenv = "PYWHARF_TEST_UNSET_VARIABLE"\n')
    result = run_cli(
        "server", str(tmp_path / "root"), "--config", str(config), "--admin_secret", str(admin),
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert str(admin) in result.stderr
    assert "local.env" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_taken_port_is_one_line_and_no_traceback(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(
            "server", str(tmp_path / "root"), "--host", "127.0.0.1", "--port", str(port),
            cwd=tmp_path,
        )  # fmt: skip
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("pywharf: ")]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_parses_into_its_own_frozen_options(name: str) -> None:
    """Every flag is a field of the options dataclass; a field without a flag has a default."""
    command = COMMANDS[name]
    flags = {s.key for s in command.flags}
    assert flags <= option_keys(command)
    for unflagged in option_keys(command) - flags:  # unyank and delete take no --reason
        assert getattr(parse_flags(command, ["t", "n", "p", "x"]), unflagged) == ""
    assert command.options.__dataclass_params__.frozen


def test_backend_keys_given_as_flags_travel_in_extra() -> None:
    options = parse_flags(COMMANDS["update_index"], ["github", "team", "--owner", "acme"])
    assert isinstance(options, BackendOptions)
    assert (options.type, options.name, dict(options.extra)) == (
        "github",
        "team",
        {"owner": "acme"},
    )
