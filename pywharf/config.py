"""Configuration: settings tables, and the TOML files parsed once into frozen values.

Every error names the file and the dotted key. Secrets come only from a file or the environment.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from dataclasses import fields
from pathlib import Path
from types import MappingProxyType
from typing import Any
from typing import TypeVar
from urllib.parse import urlsplit

from pywharf.dists import normalize_project_name
from pywharf.errors import ConfigError
from pywharf.errors import PywharfError
from pywharf.oidc import TrustedPublisher

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.9 and 3.10 by the pyz smoke test
    import tomli as tomllib  # type: ignore[no-redef,unused-ignore]

__all__ = [
    "PROJECT_SETTINGS",
    "UPSTREAM_SETTINGS",
    "AdminSecrets",
    "PUBLISHER_SETTINGS",
    "RESERVED_NAMES",
    "ProjectConfig",
    "RepositoryConfig",
    "Setting",
    "coerce",
    "coerce_setting",
    "is_secret_key",
    "typed_settings",
    "load_toml",
    "parse_admin_secrets",
    "parse_repositories",
]


@dataclass(frozen=True)
class Setting:
    """One configuration key or command-line flag: drives validation, `--help` and the docs."""

    key: str
    type: type
    default: Any
    help: str
    required: bool = False
    bounds: tuple[int, int] | None = None  # inclusive, for numbers
    choices: tuple[str, ...] = ()  # the only values allowed, when given


@dataclass(frozen=True)
class ProjectConfig:
    """`[NAME.projects.<project>]`: what an operator says of one project (PEP 708)."""

    tracks: tuple[str, ...] = ()
    alternate_locations: tuple[str, ...] = ()


@dataclass(frozen=True)
class RepositoryConfig:
    """One `[name]` section of the repository configuration, validated for its backend."""

    name: str  # lower-cased: repository names match case-insensitively
    type: str
    values: Mapping[str, Any]
    source: str  # "FILE [name]", for error messages
    publishers: tuple[TrustedPublisher, ...] = ()  # `[[name.trusted_publishers]]`
    # By normalized project name; any backend.
    projects: Mapping[str, ProjectConfig] = field(default_factory=lambda: MappingProxyType({}))

    def __getitem__(self, key: str) -> Any:
        return self.values[key]


@dataclass(frozen=True)
class AdminSecrets:
    """Secrets the server itself uses to sync each repository's index, by repository name."""

    by_name: Mapping[str, str]

    def get(self, name: str) -> str | None:
        return self.by_name.get(name.lower())


# Keys every repository section takes, whatever its backend: `backend_settings` adds them to
# each backend's own table (pywharf.upstream reads them).
UPSTREAM_SETTINGS = (
    Setting("upstream_url", str, "", "Simple index to cache public projects from ('': none); "
            "credentials may be in the URL."),
    Setting("upstream_min_age", int, 0, "Seconds an upstream file must have been public before "
            "it is offered (a cooldown).", bounds=(0, 10**10)),
    Setting("upstream_allow", list, ["*"], "Globs of normalized project names that may come "
            "from the upstream."),
    Setting("upstream_deny", list, [], "Globs of project names that never come from the "
            "upstream (deny wins over allow)."),
    Setting("upstream_page_ttl", int, 600, "Seconds an upstream project page is reused before "
            "it is revalidated.", bounds=(0, 10**9)),
)  # fmt: skip

SettingsT = TypeVar("SettingsT")

# The keys of a `[NAME.projects.<project>]` table, in any repository section.
PROJECT_SETTINGS = (
    Setting("tracks", list, [], "PEP 708: URLs of the project pages elsewhere that this project "
            "tracks (the same project, from the same owners)."),
    Setting("alternate_locations", list, [], "PEP 708: URLs of the project pages elsewhere "
            "that installers may merge with this one."),
)  # fmt: skip
_PROJECTS = "projects"

# A name becomes a folder under ROOT and a Basic-auth username: no separators, no `..`.
REPOSITORY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
# The first segments of the server's own routes: in `/<repo>/simple/` a literal segment wins,
# so a repository of one of these names could never be reached by path (a test checks this
# against the route table).
RESERVED_NAMES = frozenset({
    "simple", "legacy", "api", "project", "login", "logout", "initialize", "index_mtime",
    "healthz", "readyz", "metrics", "_",
})  # fmt: skip
PUBLISHER_SETTINGS = (
    Setting("issuer", str, None, "The OIDC issuer, e.g. https://token.actions.githubusercontent.com.",
            True),
    Setting("repository", str, None, "The CI repository (the `repository` claim).", True),
    Setting("workflow", str, None, "The workflow file (matched against `job_workflow_ref`).", True),
    Setting("environment", str, "", "The deployment environment ('': any)."),
    Setting("projects", list, None, "Globs of the projects it may upload.", True),
    Setting("jwks_file", str, "", "A local JWKS ('': discovered from the issuer)."),
)  # fmt: skip
_TRUE = {"true", "1", "yes", "on"}
# ASCII only: int() and float() also take other scripts' digits ("²", "٣"), which no TOML,
# flag or environment value means; "inf" and "nan" are not numbers of seconds or bytes.
_NUMBER = {
    int: re.compile(r"[+-]?[0-9]+\Z"),
    float: re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\Z"),
}
_FALSE = {"false", "0", "no", "off"}


def coerce(value: Any, kind: type, where: str, hidden: bool = False) -> Any:
    """A TOML, flag or environment value as `kind`; strings are parsed, others type-checked.

    A list is of strings; given as one string (a flag), its items are separated by commas.
    `hidden`: the value is a secret, so an error names only its key, never the value.
    """
    if kind is list:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ConfigError(f"{where}: {value!r} is not a list of strings")
        return [item.strip() for item in items if item.strip()]
    if isinstance(value, str) and kind is not str:
        text = value.strip().lower()
        if kind is bool and text in _TRUE | _FALSE:
            return text in _TRUE
        number = _NUMBER.get(kind)
        if number is not None and number.match(text):
            return kind(text)
        _wrong(value, kind, where, hidden)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        _wrong(value, kind, where, hidden)
    return value


def is_secret_key(key: str) -> bool:
    """Keys whose values are credentials: their values never appear in an error or a log."""
    return key.endswith(("secret", "token")) or key in ("raw", "upstream_url")


def coerce_setting(value: Any, setting: Setting, where: str) -> Any:
    """`coerce`, then the setting's bounds or choices."""
    result = coerce(value, setting.type, where, is_secret_key(setting.key))
    if setting.bounds and not setting.bounds[0] <= result <= setting.bounds[1]:
        low, high = setting.bounds
        raise ConfigError(f"{where}: {value!r} is not between {low} and {high}")
    if setting.choices and result not in setting.choices:
        allowed = " or ".join(repr(choice) for choice in setting.choices)
        raise ConfigError(f"{where}: {value!r} is not {allowed}")
    return result


def typed_settings(config: RepositoryConfig, kind: type[SettingsT]) -> SettingsT:
    """A section's checked values as its backend's frozen settings dataclass.

    The section also holds the keys every repository takes (the upstream's), which the
    backend's dataclass does not: each backend's test checks its dataclass against its table.
    """
    names = {f.name for f in fields(kind)}  # type: ignore[arg-type]
    return kind(**{key: value for key, value in config.values.items() if key in names})


def _wrong(value: Any, kind: type, where: str, hidden: bool) -> Any:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    shown = f"a {type(value).__name__} value" if hidden else repr(value)
    raise ConfigError(f"{where}: {shown} is not {names.get(kind, kind.__name__)}")


def load_toml(text: str, source: str) -> dict[str, Any]:
    try:
        document: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source}: invalid TOML: {error}") from None
    return document


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read: {error}") from None


def _sections(document: dict[str, Any], source: str) -> dict[str, dict[str, Any]]:
    sections: dict[str, dict[str, Any]] = {}
    for name, section in document.items():
        if not isinstance(section, dict):
            raise ConfigError(f"{source}: {name!r} must be a [section], not a plain key")
        if not REPOSITORY_NAME.match(name):
            raise ConfigError(
                f"{source}: [{name}]: a repository name is 1 to 64 letters, digits, '.', '_' "
                "or '-', starting with a letter or digit (it names a folder and a username)"
            )
        if name.lower() in RESERVED_NAMES:
            raise ConfigError(
                f"{source}: [{name}]: {name.lower()!r} is one of the server's own paths; pick "
                "another repository name"
            )
        if name.lower() in sections:
            raise ConfigError(f"{source}: [{name}] repeats a repository name (names ignore case)")
        if not isinstance(section.get("type"), str):
            raise ConfigError(f'{source}: {name}.type is missing (e.g. type = "file_system")')
        sections[name.lower()] = section
    return sections


def _validated(
    section: dict[str, Any],
    settings: tuple[Setting, ...],
    where: str,
    allowed: tuple[str, ...] = ("type", _PROJECTS),
) -> dict[str, Any]:
    known = {s.key: s for s in settings}
    unknown = sorted(set(section) - set(known) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key; known keys: {', '.join(known)}")
    values = {}
    for setting in settings:
        if setting.key in section:
            values[setting.key] = coerce_setting(
                section[setting.key], setting, f"{where}.{setting.key}"
            )
        elif setting.required:
            raise ConfigError(f"{where}.{setting.key}: required key is missing")
        else:
            values[setting.key] = setting.default
    return values


def _url(value: str, where: str) -> str:
    """An absolute http(s) URL, as PEP 708 wants; pages escape it when they show it."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or not value.isprintable():
        raise ConfigError(f"{where}: {value!r} is not an http or https URL")
    return value


def _projects(tables: Any, where: str) -> Mapping[str, ProjectConfig]:
    """The `[NAME.projects.<project>]` tables, by normalized project name."""
    if not isinstance(tables, dict):
        raise ConfigError(f"{where}: must be tables, one per project: [NAME.projects.PROJECT]")
    projects: dict[str, ProjectConfig] = {}
    for name, table in tables.items():
        here = f"{where}.{name}"
        try:
            normalized = normalize_project_name(name)
        except PywharfError as error:
            raise ConfigError(f"{here}: {error}") from None
        if not isinstance(table, dict):
            raise ConfigError(f"{here}: must be a table")
        if normalized in projects:
            raise ConfigError(f"{here}: repeats project {normalized!r} (names are normalized)")
        values = _validated(table, PROJECT_SETTINGS, here, allowed=())
        urls = {k: tuple(_url(u, f"{here}.{k}") for u in v) for k, v in values.items()}
        projects[normalized] = ProjectConfig(**urls)
    return MappingProxyType(projects)


def parse_repositories(
    text: str, source: str, settings_for: Callable[[str, str], tuple[Setting, ...]]
) -> tuple[RepositoryConfig, ...]:
    """The repository configuration: `[name]` sections, each with a `type` and its keys."""
    repositories = []
    for name, section in _sections(load_toml(text, source), source).items():
        where = f"{source} [{name}]"
        publishers = _publishers(section.pop("trusted_publishers", []), f"{source}: {name}")
        values = _validated(section, settings_for(section["type"], where), f"{source}: {name}")
        projects = _projects(section.get(_PROJECTS, {}), f"{source}: {name}.{_PROJECTS}")
        repositories.append(
            RepositoryConfig(
                name,
                section["type"],
                MappingProxyType(values),
                where,
                publishers=publishers,
                projects=projects,
            )
        )
    if not repositories:
        raise ConfigError(f"{source}: no repository is configured (add a [name] section)")
    return tuple(repositories)


def _publishers(tables: Any, where: str) -> tuple[TrustedPublisher, ...]:
    """`[[name.trusted_publishers]]`: an array of tables."""
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(f"{where}.trusted_publishers: write each as [[{where.rpartition(' ')[2]}"
                          ".trusted_publishers]], a table")  # fmt: skip
    publishers = []
    for number, table in enumerate(tables, 1):
        at = f"{where}.trusted_publishers[{number}]"
        values = _validated({**table, "type": ""}, PUBLISHER_SETTINGS, at)
        issuer = values["issuer"]
        host = urlsplit(issuer).hostname or ""
        if not issuer.startswith("https://") and not (
            issuer.startswith("http://") and host in ("127.0.0.1", "localhost", "::1")
        ):
            raise ConfigError(f"{at}.issuer: {issuer!r} is not an https:// URL")
        if not values["projects"]:
            raise ConfigError(f"{at}.projects: name at least one project glob")
        projects = tuple(sorted({p.lower() for p in values["projects"]}))
        publishers.append(TrustedPublisher(
            issuer, values["repository"], values["workflow"], projects,
            values["environment"], values["jwks_file"],
        ))  # fmt: skip
    return tuple(publishers)


def parse_admin_secrets(text: str, source: str, environ: Mapping[str, str]) -> AdminSecrets:
    """`[name]` with `type` and either `raw = "..."` or `env = "VARIABLE"`."""
    secrets = {}
    for name, section in _sections(load_toml(text, source), source).items():
        has_raw, has_env = "raw" in section, "env" in section
        if has_raw == has_env:
            raise ConfigError(f"{source}: {name}: give exactly one of raw or env")
        if has_raw:
            secrets[name] = coerce(section["raw"], str, f"{source}: {name}.raw", hidden=True)
            continue
        variable = coerce(section["env"], str, f"{source}: {name}.env")
        if variable not in environ:
            raise ConfigError(f"{source}: {name}.env: environment variable {variable} is not set")
        secrets[name] = environ[variable]
    return AdminSecrets(MappingProxyType(secrets))
