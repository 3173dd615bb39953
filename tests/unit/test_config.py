"""Configuration (issue 2, point 4): the seed's TOML, admin secrets, defaults, and errors that
name the file and the dotted key. Also the runtime dependencies the zipapp may carry."""

from __future__ import annotations

import hmac
from pathlib import Path

import pytest
from support import REPO
from support import build_app
from support_upload import app_get

from pywharf import auth
from pywharf.backends import backend_settings
from pywharf.config import load_toml
from pywharf.config import parse_admin_secrets
from pywharf.config import parse_repositories
from pywharf.errors import ConfigError
from pywharf.upstream import UpstreamSettings

SOURCE = "/etc/pywharf/repos.toml"


def parse(text: str) -> dict[str, dict[str, object]]:
    return {c.name: dict(c.values) for c in parse_repositories(text, SOURCE, backend_settings)}


def test_a_file_system_section_gets_the_documented_defaults() -> None:
    values = parse('[main]\ntype = "file_system"\n')["main"]
    assert values["max_file_bytes"] == 5 * 1024**3 - 1
    assert values["sync_index_interval"] == 60
    assert values["read_secret"] == "" and values["write_secret"] == ""


def test_every_file_system_key_is_read() -> None:
    values = parse(
        '[main]\ntype = "file_system"\nread_secret = "r"\nwrite_secret = "w"\n'
        "max_file_bytes = 1000\nsync_index_interval = 5\n"
    )["main"]
    assert values == {
        "read_secret": "r",
        "write_secret": "w",
        "max_file_bytes": 1000,
        "sync_index_interval": 5.0,
        "upstream_url": "",
        "upstream_min_age": 0,
        "upstream_allow": ["*"],
        "upstream_deny": [],
        "upstream_page_ttl": 600,
    }


@pytest.mark.parametrize("type_name", ["file_system", "memory", "github"])
def test_every_backend_type_takes_the_upstream_keys(type_name: str) -> None:
    extra = 'owner = "o"\nrepo = "r"\n' if type_name == "github" else ""
    values = parse(
        f'[main]\ntype = "{type_name}"\n{extra}upstream_url = "https://u:p@pypi.example/simple/"\n'
        'upstream_min_age = 86400\nupstream_allow = ["req*"]\nupstream_deny = ["requests-x"]\n'
        "upstream_page_ttl = 60\n"
    )["main"]
    assert values["upstream_min_age"] == 86400
    assert values["upstream_allow"] == ["req*"] and values["upstream_deny"] == ["requests-x"]


def test_a_bad_upstream_url_is_refused_without_showing_it() -> None:
    (config,) = parse_repositories(
        '[main]\ntype = "file_system"\nupstream_url = "ftp://me:hunter2@host/"\n',
        SOURCE,
        backend_settings,
    )
    with pytest.raises(ConfigError) as caught:
        UpstreamSettings.from_config(config)
    assert "upstream_url" in str(caught.value) and "hunter2" not in str(caught.value)


def test_a_wrong_upstream_list_names_the_key() -> None:
    with pytest.raises(ConfigError, match="upstream_allow"):
        parse('[main]\ntype = "file_system"\nupstream_allow = [1]\n')


@pytest.mark.parametrize(
    ("name", "allowed"),
    [("requests", True), ("requests-x", False), ("numpy", False), ("req", True)],
)
def test_deny_wins_over_allow(name: str, allowed: bool) -> None:
    settings = UpstreamSettings(allow=("req*",), deny=("requests-*",))
    assert settings.allows(name) is allowed


def test_several_repositories_and_names_lower_cased() -> None:
    configs = parse_repositories(
        '[Team-A]\ntype = "file_system"\n[team-b]\ntype = "file_system"\n',
        SOURCE,
        backend_settings,
    )
    assert [c.name for c in configs] == ["team-a", "team-b"]
    assert [c.type for c in configs] == ["file_system", "file_system"]


def test_a_repository_named_in_capitals_is_served_case_insensitively(tmp_path: Path) -> None:
    config = '[LOCAL]\ntype = "file_system"\nread_secret = "read-secret"\nwrite_secret = "w"\n'
    app = build_app(tmp_path / "root", config)
    assert app_get(app, "/simple/").status == 200  # the helper authenticates as "local"
    assert (tmp_path / "root" / "cache" / "local" / "storage").is_dir()


ERRORS = {
    # case: (TOML, what the message must name besides the file)
    "unknown key": ('[main]\ntype = "file_system"\ncolour = 1\n', "main.colour"),
    "wrong type": ('[main]\ntype = "file_system"\nmax_file_bytes = "big"\n', "main.max_file_bytes"),
    "negative size": ('[main]\ntype = "file_system"\nmax_file_bytes = -1\n', "main.max_file_bytes"),
    "secret not a string": ('[main]\ntype = "file_system"\nread_secret = 5\n', "main.read_secret"),
    "interval not a number": (
        '[main]\ntype = "file_system"\nsync_index_interval = "often"\n',
        "main.sync_index_interval",
    ),
    "missing type": ('[main]\nread_secret = "x"\n', "main.type"),
    "unknown type": ('[main]\ntype = "floppy"\n', "floppy"),
    "plain key": ('name = "x"\n', "'name'"),
    "repeated name": ('[main]\ntype = "file_system"\n[MAIN]\ntype = "file_system"\n', "MAIN"),
    "bad TOML": ("[main\n", "TOML"),
    "empty": ("", "no repository"),
}


@pytest.mark.parametrize(("text", "named"), ERRORS.values(), ids=list(ERRORS))
def test_errors_name_the_file_and_the_key(text: str, named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    message = str(caught.value)
    assert SOURCE in message
    assert named in message
    assert "\n" not in message  # one line


def test_admin_secrets_raw_and_env() -> None:
    secrets = parse_admin_secrets(
        '[Main]\ntype = "file_system"\nraw = "s3cret"\n'
        '[other]\ntype = "file_system"\nenv = "OTHER_SECRET"\n',
        "admin.toml",
        {"OTHER_SECRET": "from-env"},
    )
    assert secrets.get("main") == "s3cret"
    assert secrets.get("MAIN") == "s3cret"  # names match case-insensitively
    assert secrets.get("other") == "from-env"
    assert secrets.get("missing") is None


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[main]\ntype = "file_system"\n', "main"),  # neither raw nor env
        ('[main]\ntype = "file_system"\nraw = "a"\nenv = "B"\n', "main"),  # both
        ('[main]\ntype = "file_system"\nenv = "NOT_SET_ANYWHERE"\n', "main.env"),
        ('[main]\ntype = "file_system"\nraw = 5\n', "main.raw"),
        ('[main]\nraw = "a"\n', "main.type"),
    ],
)
def test_admin_secret_errors_name_the_file_and_the_key(text: str, named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_admin_secrets(text, "admin.toml", {})
    assert "admin.toml" in str(caught.value)
    assert named in str(caught.value)


def test_secrets_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr("pywharf.auth.hmac.compare_digest", counting)
    assert auth.secret_matches("abc", "abc")
    assert not auth.secret_matches("abd", "abc")
    assert not auth.secret_matches("", "")  # an unset secret never matches
    assert len(calls) >= 2


def test_the_runtime_dependencies_are_exactly_the_four() -> None:
    project = load_toml((REPO / "pyproject.toml").read_text(), "pyproject.toml")["project"]
    names = sorted(d.split(";")[0].split(">")[0].split("<")[0].split("=")[0].strip().lower()
                   for d in project["dependencies"])  # fmt: skip
    assert names == ["packaging", "tomli", "tomli-w", "urllib3"]
    tomli = next(d for d in project["dependencies"] if d.startswith("tomli>") or d == "tomli")
    assert "python_version < '3.11'" in tomli.replace('"', "'")
