"""Command-line flags: one table per command drives parsing, environment mode and `--help`."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from dataclasses import fields
from types import MappingProxyType
from typing import Any
from typing import Generic
from typing import TypeVar

from pywharf.config import Setting
from pywharf.config import coerce_setting
from pywharf.errors import ConfigError

__all__ = [
    "COMMANDS",
    "BackendOptions",
    "ChangeOptions",
    "ExportOptions",
    "ImportOptions",
    "Command",
    "GenGhPagesOptions",
    "InitPkgRepoOptions",
    "ServerOptions",
    "TokenCreateOptions",
    "TokenRevokeOptions",
    "UsageError",
    "argv_from_environment",
    "parse_flags",
]

PYPI_SIMPLE = "https://pypi.org/simple/"


class UsageError(ConfigError):
    """Wrong command-line arguments (exit code 2)."""


# Each command's flags, parsed once into a frozen value; the flag tables below say how to parse
# them (type, default, bounds, help) and a test checks that both name the same keys.


@dataclass(frozen=True)
class ServerOptions:
    root: str
    config: str | None
    admin_secret: str | None
    config_or_admin_secret_can_be_text: bool
    auth_read_expires: int
    auth_write_expires: int
    extra_index_url: str
    initialize_secret: str
    initialize_secret_file: str
    initialize_secret_env: str
    debug: bool
    host: str
    port: int
    max_connections: int
    metrics_secret: str
    certfile: str
    keyfile: str
    log_format: str
    audit_log: str
    trusted_proxy: str
    oidc_audience: str


@dataclass(frozen=True)
class BackendOptions:
    """A backend named on the command line (update_index and the commands that change it)."""

    type: str
    name: str
    root: str
    secret: str | None
    secret_env: str | None
    # Any configuration key of the backend, as given (`--owner x`): the backend's own settings
    # table parses them, as it parses a configuration file.
    extra: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class ChangeOptions(BackendOptions):
    """yank, unyank and delete: a file, or a version for all of its files."""

    project: str = ""
    target: str = ""
    reason: str = ""


@dataclass(frozen=True)
class StatusOptions(ChangeOptions):
    """status: a project's PEP 792 status (its `target` is unused)."""

    status: str = ""


@dataclass(frozen=True)
class ExportOptions(BackendOptions):
    """export: the repository's files (or some of them) into a bundle tar."""

    output: str = ""
    projects: str = ""  # comma-separated globs over normalized names
    since: str = ""  # YYYY-MM-DD: files stored on or after that day (UTC)


@dataclass(frozen=True)
class ImportOptions(BackendOptions):
    """import: a bundle tar, or a directory of wheels and sdists."""

    source: str = ""


@dataclass(frozen=True)
class TokenCreateOptions(BackendOptions):
    """token create: what the token may do, where, and for how long."""

    label: str = ""
    can: str = ""
    projects: str = ""  # comma-separated globs over normalized names
    expires: int = 0  # seconds from now; 0: never
    audit_log: str = ""


@dataclass(frozen=True)
class TokenRevokeOptions(BackendOptions):
    label: str = ""
    audit_log: str = ""


@dataclass(frozen=True)
class InitPkgRepoOptions:
    name: str
    token: str
    repo: str
    owner: str
    branch: str
    index_filename: str
    sync_index_interval: int
    enable_gh_pages: bool
    dry_run: bool
    pyz: str
    api_url: str


@dataclass(frozen=True)
class GenGhPagesOptions:
    name: str
    token: str
    owner: str
    repo: str
    output_folder: str
    branch: str
    index_filename: str
    api_url: str


OptionsT = TypeVar("OptionsT")


@dataclass(frozen=True)
class Command(Generic[OptionsT]):
    name: str
    summary: str
    positionals: tuple[str, ...]
    flags: tuple[Setting, ...]
    options: type[OptionsT]  # the frozen dataclass `parse_flags` returns
    open_flags: bool = False  # update_index also takes any backend key as a flag


SERVER = Command(
    "server",
    "Serve the configured package repositories over HTTP.",
    ("root",),
    (
        Setting("root", str, None, "State directory: storage, indexes, generated secrets.", True),
        Setting("config", str, None, "Repository configuration TOML (default: one file_system "
                "repository named 'local' with generated secrets)."),
        Setting("admin_secret", str, None, "Admin-secret TOML: the secrets the server syncs with."),
        Setting("config_or_admin_secret_can_be_text", bool, False,
                "Let --config and --admin_secret be TOML text instead of paths."),
        Setting("auth_read_expires", int, 3600, "Seconds a successful read check stays cached.",
                bounds=(0, 10**9)),
        Setting("auth_write_expires", int, 300, "Seconds a successful write check stays cached.",
                bounds=(0, 10**9)),
        Setting("extra_index_url", str, PYPI_SIMPLE,
                "Index to redirect to for projects this one lacks; '' disables it."),
        Setting("initialize_secret", str, "",
                "Password that allows POST /initialize/ once the server is configured "
                "(visible in ps: prefer the _file or _env form)."),
        Setting("initialize_secret_file", str, "",
                "File holding the initialize secret (its first line)."),
        Setting("initialize_secret_env", str, "",
                "Name of the environment variable holding the initialize secret."),
        Setting("debug", bool, False, "Log at debug level."),
        Setting("host", str, "0.0.0.0", "Address to listen on."),
        Setting("port", int, 8888, "Port to listen on.", bounds=(0, 65535)),
        Setting("max_connections", int, 1000, "Open connections at most (idle keep-alive ones "
                "included); one more is answered 503 with Retry-After.", bounds=(1, 10**6)),
        Setting("metrics_secret", str, "",
                "Secret /metrics asks for (Basic password or Bearer token); '': no auth."),
        Setting("certfile", str, "", "PEM certificate chain: serve HTTPS (TLS 1.2+) instead of "
                "HTTP. Reloaded with the key on SIGHUP."),
        Setting("keyfile", str, "", "PEM private key of --certfile ('': in the certfile)."),
        Setting("log_format", str, "text", "Access log: 'text' (a line like nginx's) or 'json' "
                "(one object per line)."),
        Setting("audit_log", str, "", "Audit log: one JSON line per change, login and refusal "
                "('': ROOT/audit.log)."),
        Setting("trusted_proxy", str, "", "Comma-separated addresses of reverse proxies whose "
                "X-Forwarded-For the audit log believes ('': none)."),
        Setting("oidc_audience", str, "pywharf", "The audience trusted publishing's identity "
                "tokens must name (GET /_/oidc/audience)."),
    ),
    ServerOptions,
)  # fmt: skip
_BACKEND_FLAGS = (
    Setting("type", str, None, "Backend type, e.g. file_system.", True),
    Setting("name", str, None, "Repository name.", True),
    Setting("root", str, ".", "State directory of the server (file_system)."),
    Setting("secret", str, None, "The backend secret (prefer --secret_env)."),
    Setting("secret_env", str, None, "Name of the environment variable holding the secret."),
)
_TARGET = (
    Setting("project", str, None, "Project name.", True),
    Setting("target", str, None, "A filename, or a version for all of its files.", True),
)
UPDATE_INDEX = Command(
    "update_index",
    "Rebuild a backend's index from what its storage really holds; report what changed.",
    ("type", "name"),
    _BACKEND_FLAGS,
    BackendOptions,
    open_flags=True,
)
YANK = Command(
    "yank",
    "Yank a file or a whole release (PEP 592): installs skip it unless pinned exactly.",
    ("type", "name", "project", "target"),
    (*_BACKEND_FLAGS, *_TARGET, Setting("reason", str, "", "Why, shown to installers.")),
    ChangeOptions,
    open_flags=True,
)
UNYANK = Command(
    "unyank",
    "Undo a yank of a file or a whole release.",
    ("type", "name", "project", "target"),
    (*_BACKEND_FLAGS, *_TARGET),
    ChangeOptions,
    open_flags=True,
)
DELETE = Command(
    "delete",
    "Delete one file; its filename can never hold other bytes again.",
    ("type", "name", "project", "target"),
    (*_BACKEND_FLAGS, *_TARGET),
    ChangeOptions,
    open_flags=True,
)
STATUS = Command(
    "status",
    "Set a project's status (PEP 792): archived and quarantined refuse uploads, quarantined "
    "also hides its files; deprecated only informs.",
    ("type", "name", "project", "status"),
    (
        *_BACKEND_FLAGS,
        _TARGET[0],
        Setting("status", str, None, "active, archived, quarantined or deprecated.", True),
        Setting("reason", str, "", "Why, shown to installers."),
    ),
    StatusOptions,
    open_flags=True,
)
EXPORT = Command(
    "export",
    "Write a repository's files, their metadata and a manifest into one tar (air-gap bundle).",
    ("type", "name", "output"),
    (
        *_BACKEND_FLAGS,
        Setting("output", str, None, "The bundle tar to write.", True),
        Setting("projects", str, "", "Comma-separated globs of project names ('': all)."),
        Setting("since", str, "", "Only files stored on or after this day, YYYY-MM-DD (UTC)."),
    ),
    ExportOptions,
    open_flags=True,
)
IMPORT = Command(
    "import",
    "Import a bundle tar, or a directory of wheels and sdists (pip download -d DIR).",
    ("type", "name", "source"),
    (*_BACKEND_FLAGS, Setting("source", str, None, "The bundle tar, or the directory.", True)),
    ImportOptions,
    open_flags=True,
)
_AUDIT_LOG = Setting("audit_log", str, "", "The audit log ('': ROOT/audit.log).")
TOKEN_CREATE = Command(
    "token create",
    "Create a repository token; it is printed once, as the last line (prefix pywharf_).",
    ("type", "name"),
    (
        *_BACKEND_FLAGS,
        Setting("label", str, None, "Its name in lists, revocation and the audit log.", True),
        Setting("can", str, None, "What it may do: read,upload,yank,delete (any of them).", True),
        Setting("projects", str, "", "Comma-separated globs of the projects it covers ('': all)."),
        Setting("expires", int, 0, "Seconds until it expires (0: never).", bounds=(0, 10**10)),
        _AUDIT_LOG,
    ),
    TokenCreateOptions,
    open_flags=True,
)
TOKEN_LIST = Command(
    "token list",
    "List a repository's tokens: labels, rights, projects, expiry, last use (never a token).",
    ("type", "name"),
    _BACKEND_FLAGS,
    BackendOptions,
    open_flags=True,
)
TOKEN_REVOKE = Command(
    "token revoke",
    "Revoke a repository token by its label; servers refuse it from their next sync.",
    ("type", "name", "label"),
    (*_BACKEND_FLAGS, Setting("label", str, None, "The token's label.", True), _AUDIT_LOG),
    TokenRevokeOptions,
    open_flags=True,
)
_API_URL = Setting(
    "api_url",
    str,
    "https://api.github.com",
    "GitHub's REST API (GitHub Enterprise Server: https://HOST/api/v3).",
)
_INDEX_FILENAME = Setting("index_filename", str, "index.toml", "Path of the index file.")
GITHUB_INIT_PKG_REPO = Command(
    "github.init_pkg_repo",
    "Create a private GitHub package repository with an update-index workflow; print its config.",
    ("name", "token", "repo"),
    (
        Setting("name", str, None, "Repository name in the server's configuration.", True),
        Setting(
            "token", str, None, "GitHub token that may create repositories and workflows.", True
        ),
        Setting("repo", str, None, "Name of the GitHub repository to create.", True),
        Setting("owner", str, "", "Organization to create it in ('': the token's user)."),
        Setting("branch", str, "", "Branch of the index file ('': the repository's default)."),
        _INDEX_FILENAME,
        Setting(
            "sync_index_interval",
            int,
            60,
            "Seconds between index syncs, for the config.",
            bounds=(0, 10**9),
        ),
        Setting(
            "enable_gh_pages", bool, False, "Also publish static PEP 503 pages (GitHub Pages)."
        ),
        Setting("dry_run", bool, False, "Only print the workflow and the config; create nothing."),
        Setting("pyz", str, "", "The pywharf.pyz the workflow runs ('': the one running this)."),
        _API_URL,
    ),
    InitPkgRepoOptions,
)
GITHUB_GEN_GH_PAGES = Command(
    "github.gen_gh_pages",
    "Write static PEP 503 pages of a GitHub package repository into a folder.",
    ("name", "token", "owner", "repo", "output_folder"),
    (
        Setting("name", str, None, "Repository name in the server's configuration.", True),
        Setting("token", str, None, "GitHub token that can read the repository.", True),
        Setting("owner", str, None, "Owner of the GitHub repository.", True),
        Setting("repo", str, None, "The GitHub repository.", True),
        Setting("output_folder", str, None, "Folder to write the pages into (created).", True),
        Setting("branch", str, "", "Branch of the index file ('': the repository's default)."),
        _INDEX_FILENAME,
        _API_URL,
    ),
    GenGhPagesOptions,
)
COMMANDS: dict[str, Command[Any]] = {
    c.name: c
    for c in (
        SERVER, UPDATE_INDEX, YANK, UNYANK, DELETE, STATUS, EXPORT, IMPORT, TOKEN_CREATE,
        TOKEN_LIST, TOKEN_REVOKE, GITHUB_INIT_PKG_REPO, GITHUB_GEN_GH_PAGES,
    )
}  # fmt: skip


def _flag_name(text: str) -> str:
    return text.lstrip("-").replace("-", "_").lower()


def flag_spelling(key: str) -> str:
    return f"--{key}"


def variable_spelling(key: str) -> str:
    return f"{ENV_PREFIX}_{key.upper()}"


def parse_flags(
    command: Command[OptionsT], argv: Sequence[str], spelled: Callable[[str], str] = flag_spelling
) -> OptionsT:
    """`--flag value`, `--flag=value`, dashed spellings; bare boolean flags mean true.

    `spelled` names a flag in errors: in environment mode, by its variable.
    """
    known = {s.key: s for s in command.flags}
    raw: dict[str, Any] = {}
    positionals: list[str] = []
    items = list(argv)
    while items:
        item = items.pop(0)
        if item.startswith("-") and not item.startswith("--"):
            raise UsageError(f"{command.name}: unknown option {item}; flags are spelled --flag")
        if not item.startswith("--"):
            positionals.append(item)
            continue
        name, equals, value = item.partition("=")
        key = _flag_name(name)
        setting = known.get(key)
        if setting is None and not command.open_flags:
            raise UsageError(
                f"{command.name}: unknown flag {spelled(key)}; see pywharf {command.name} --help"
            )
        if not equals:
            if (
                setting is not None
                and setting.type is bool
                and (not items or items[0].startswith("--"))
            ):
                value = "true"
            elif not items:
                raise UsageError(f"{command.name}: {name} needs a value")
            else:
                value = items.pop(0)
        raw[key] = value
    return _resolve(command, known, raw, positionals, spelled)


def _resolve(
    command: Command[OptionsT],
    known: Mapping[str, Setting],
    raw: dict[str, Any],
    positionals: list[str],
    spelled: Callable[[str], str],
) -> OptionsT:
    if len(positionals) > len(command.positionals):
        raise UsageError(
            f"{command.name}: unexpected argument {positionals[len(command.positionals)]!r}"
        )
    for key, value in zip(command.positionals, positionals):
        if key in raw:
            raise UsageError(f"{command.name}: {key} is given twice")
        raw[key] = value
    options: dict[str, Any] = {}
    for setting in command.flags:
        if setting.key in raw:
            options[setting.key] = coerce_setting(
                raw.pop(setting.key), setting, spelled(setting.key)
            )
        elif setting.required:
            raise UsageError(
                f"{command.name}: {setting.key.upper()} is required ({spelled(setting.key)})"
            )
        else:
            options[setting.key] = setting.default
    if command.open_flags:
        options["extra"] = MappingProxyType(raw)  # backend keys, checked by the backend
    return command.options(**options)


def option_keys(command: Command[Any]) -> set[str]:
    """The keys of the command's options value (a test checks them against its flags)."""
    return {f.name for f in fields(command.options)} - {"extra"}


ENV_PREFIX = "PYWHARF_COMMAND"


def argv_from_environment(environ: Mapping[str, str]) -> list[str]:
    """Environment mode: PYWHARF_COMMAND and PYWHARF_COMMAND_<FLAG>, names case-insensitive.

    Unlike the original, an empty value is an empty string (not a bare flag).
    """
    variables = {k.upper(): (k, v) for k, v in environ.items()}
    if ENV_PREFIX not in variables:
        raise UsageError("no arguments and PYWHARF_COMMAND is not set; see pywharf --help")
    argv = [variables[ENV_PREFIX][1]]
    for upper, (_original, value) in sorted(variables.items()):
        if upper.startswith(ENV_PREFIX + "_"):
            argv.append(f"--{upper[len(ENV_PREFIX) + 1 :].lower()}={value}")
    return argv


def help_text(command: Command[Any]) -> str:
    usage = " ".join(p.upper() for p in command.positionals)
    lines = [f"usage: pywharf {command.name} {usage} [flags]", "", command.summary, "", "flags:"]
    for setting in command.flags:
        default = "" if setting.default is None else f" (default: {setting.default!r})"
        lines.append(f"  --{setting.key:<38} {setting.help}{default}")
    if command.open_flags:
        lines.append(
            "  --<backend key> VALUE                   any key of the backend's configuration"
        )
    return "\n".join(lines)
