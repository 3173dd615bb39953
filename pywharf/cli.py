"""The command line: argv or the environment in, a command run, an exit code out."""

from __future__ import annotations

import getpass
import importlib
import logging
import os
import sys
import time
from collections.abc import Callable
from collections.abc import Sequence
from datetime import datetime
from datetime import timezone
from pathlib import Path
from typing import Any

import tomli_w

from pywharf import __version__
from pywharf.access_log import default_access_log
from pywharf.audit import AuditLog
from pywharf.backends import Backend
from pywharf.backends import backend_settings
from pywharf.backends import create_backend
from pywharf.config import parse_repositories
from pywharf.dists import NormalizedName
from pywharf.dists import canonicalize_name
from pywharf.errors import BadRequest
from pywharf.errors import ConfigError
from pywharf.errors import PywharfError
from pywharf.repository import Repository
from pywharf.server import Server
from pywharf.server import serve
from pywharf.service import Service
from pywharf.settings import COMMANDS
from pywharf.settings import BackendOptions
from pywharf.settings import ChangeOptions
from pywharf.settings import ExportOptions
from pywharf.settings import ImportOptions
from pywharf.settings import ServerOptions
from pywharf.settings import StatusOptions
from pywharf.settings import TokenCreateOptions
from pywharf.settings import TokenRevokeOptions
from pywharf.settings import UsageError
from pywharf.settings import argv_from_environment
from pywharf.settings import flag_spelling
from pywharf.settings import help_text
from pywharf.settings import parse_flags
from pywharf.settings import variable_spelling
from pywharf.tls import TLSContext
from pywharf.tokens import TokenTable
from pywharf.tokens import new_token
from pywharf.tokens import parse_globs
from pywharf.tokens import parse_rights
from pywharf.tokens import with_token
from pywharf.tokens import without_token

__all__ = ["main"]

log = logging.getLogger("pywharf")

EMBEDDED_NAME = "local"
EMBEDDED_SECRETS = "embedded-secrets.toml"


def _synopsis() -> str:
    lines = [f"pywharf {__version__}: a private Python package index", "", "commands:"]
    width = max(len(name) for name in COMMANDS) + 2
    lines += [f"  {c.name:<{width}} {c.summary}" for c in COMMANDS.values()]
    lines += [
        "",
        "pywharf COMMAND --help documents each flag.",
        "With no arguments, PYWHARF_COMMAND and PYWHARF_COMMAND_<FLAG> are read.",
    ]
    return "\n".join(lines)


def run_server(options: ServerOptions) -> int:
    logging.basicConfig(
        level=logging.DEBUG if options.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if options.log_format not in ("text", "json"):
        raise UsageError(f"--log_format: {options.log_format!r} is not 'text' or 'json'")
    if options.keyfile and not options.certfile:
        raise UsageError("--keyfile needs --certfile")
    tls = TLSContext(options.certfile, options.keyfile) if options.certfile else None
    service = Service(options)
    server = Server(
        (options.host, options.port),
        service.app,
        default_access_log(),
        max_connections=options.max_connections,
        tls=tls,
        log_format=options.log_format,
    )
    service.announce(server.server_address[1])
    service.start()
    serve(server, service.stop)
    return 0


def _backend_from_flags(
    options: BackendOptions, *, reads_files: bool = False
) -> tuple[Backend, str]:
    """A backend configured by command-line flags, as update_index and yank take them. One that
    `reads_files` gets them through its own client (`download = "proxy"`), not as URLs."""
    section: dict[str, Any] = {"type": options.type, **options.extra}
    if reads_files and any(s.key == "download" for s in backend_settings(options.type, "flags")):
        section.setdefault("download", "proxy")
    text = tomli_w.dumps({options.name.lower(): section})
    (config,) = parse_repositories(text, "flags", backend_settings)
    secret = options.secret
    if options.secret_env:
        secret = os.environ.get(options.secret_env)
        if secret is None:
            raise UsageError(f"environment variable {options.secret_env} is not set")
    return create_backend(config, Path(options.root).resolve(), secret), secret or ""


def run_update_index(options: BackendOptions) -> int:
    backend, _ = _backend_from_flags(options)
    try:
        report = backend.rebuild_index()
    finally:
        backend.close()
    for line in report.lines():
        print(line)
    return 0


def _change(
    options: ChangeOptions,
    command: str,
    act: Callable[[Repository, NormalizedName, str], list[str]],
) -> int:
    backend, secret = _backend_from_flags(options)
    try:
        repository = Repository(backend, 0, 0)
        repository.sync()
        for filename in act(repository, canonicalize_name(options.project), secret):
            print(f"{command}: {filename}")
    finally:
        backend.close()
    return 0


def run_yank(options: ChangeOptions) -> int:
    return _change(options, "yank", lambda r, p, s: r.yank(p, options.target, options.reason, s))


def run_unyank(options: ChangeOptions) -> int:
    return _change(options, "unyank", lambda r, p, s: r.yank(p, options.target, None, s))


def run_delete(options: ChangeOptions) -> int:
    return _change(options, "delete", lambda r, p, s: r.delete(p, options.target, s))


def _audit_log(options: TokenCreateOptions | TokenRevokeOptions) -> AuditLog:
    return AuditLog(Path(options.audit_log or Path(options.root).resolve() / "audit.log"))


def _operator() -> str:
    """The audit log's actor for a command run on the host: the OS user who ran it."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # a uid without a passwd entry (containers)
        return f"cli:uid-{os.getuid()}"


def _change_tokens(
    options: TokenCreateOptions | TokenRevokeOptions, action: str, change: Callable[[bytes], bytes]
) -> None:
    """Store a change of the token document, and say so in the audit log either way."""
    backend, _ = _backend_from_flags(options)
    audit = _audit_log(options)
    outcome = "refused"
    try:
        backend.update_tokens(change)
        outcome = "ok"
    finally:
        backend.close()
        audit.record(action, backend.name, _operator(), options.label, outcome, "local")
        audit.close()


def _when(moment: float | None) -> str:
    if moment is None:
        return "never"
    return datetime.fromtimestamp(moment, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_token_create(options: TokenCreateOptions) -> int:
    """Print the token once, as the last line: nothing secret is taken on the command line."""
    try:
        rights, globs = parse_rights(options.can), parse_globs(options.projects)
    except BadRequest as error:
        raise UsageError(f"token create: {error}") from None
    now = time.time()
    expires = now + options.expires if options.expires else None
    try:
        token, record = new_token(options.label, rights, globs, expires, now)
    except BadRequest as error:
        raise UsageError(f"token create: {error}") from None
    _change_tokens(options, "token-create", lambda document: with_token(document, record))
    scope = ",".join(globs) if globs else "all projects"
    print(f"token {record.label!r} of {options.name}: can {','.join(sorted(rights))}, "
          f"{scope}, expires {_when(expires)}; shown this once:")  # fmt: skip
    print(token)
    return 0


def run_token_list(options: BackendOptions) -> int:
    backend, _ = _backend_from_flags(options)
    try:
        records = TokenTable.records(backend.read_tokens())
    finally:
        backend.close()
    print("label\tcan\tprojects\texpires\tlast used\tcreated")
    for r in records:
        print(f"{r.label}\t{','.join(sorted(r.rights))}\t{','.join(r.projects or ('*',))}\t"
              f"{_when(r.expires)}\t{_when(r.last_used)}\t{_when(r.created)}")  # fmt: skip
    return 0


def run_token_revoke(options: TokenRevokeOptions) -> int:
    _change_tokens(options, "token-revoke", lambda document: without_token(document, options.label))
    print(
        f"revoked token {options.label!r} of {options.name}; servers refuse it from their next sync"
    )
    return 0


def run_status(options: StatusOptions) -> int:
    def act(repository: Repository, project: NormalizedName, secret: str) -> list[str]:
        status = repository.set_status(project, options.status, options.reason, secret)
        return [f"{status.project} {status.status}"]

    return _change(options, "status", act)


def _since(text: str) -> float | None:
    """`--since YYYY-MM-DD`: midnight UTC of that day."""
    if not text:
        return None
    try:
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    except ValueError:
        raise UsageError(f"export: --since {text!r} is not a date YYYY-MM-DD") from None
    return day.timestamp()


def run_export(options: ExportOptions) -> int:
    from pywharf.bundle import Progress  # tarfile: only the bundle commands need it
    from pywharf.bundle import export_bundle

    since = _since(options.since)
    globs = tuple(g.strip() for g in options.projects.split(",") if g.strip())
    backend, _ = _backend_from_flags(options, reads_files=True)
    try:
        records = export_bundle(backend, Path(options.output), globs, since, Progress(0))
    finally:
        backend.close()
    print(f"exported {len(records)} files to {options.output}")
    return 0


def run_import(options: ImportOptions) -> int:
    from pywharf.bundle import import_source

    backend, _ = _backend_from_flags(options)
    try:
        report = import_source(backend, Path(options.source))
    finally:
        backend.close()
    for line in report.lines():
        print(line)
    return 1 if report.refused else 0


# command -> "module:function", imported when run: the GitHub commands bring urllib3 and ssl,
# which would cost every server several MiB of memory it never uses (so, for the same reason,
# do the upstream and OIDC clients, made only when configured or used, and the bundles' tarfile).
RUNNERS = {
    "server": "pywharf.cli:run_server",
    "update_index": "pywharf.cli:run_update_index",
    "yank": "pywharf.cli:run_yank",
    "unyank": "pywharf.cli:run_unyank",
    "delete": "pywharf.cli:run_delete",
    "status": "pywharf.cli:run_status",
    "export": "pywharf.cli:run_export",
    "import": "pywharf.cli:run_import",
    "token create": "pywharf.cli:run_token_create",
    "token list": "pywharf.cli:run_token_list",
    "token revoke": "pywharf.cli:run_token_revoke",
    "github.init_pkg_repo": "pywharf.github_commands:run_init_pkg_repo",
    "github.gen_gh_pages": "pywharf.github_commands:run_gen_gh_pages",
}


def _runner(name: str) -> Callable[[Any], int]:
    """The command's `run_*` function; it takes the command's own options dataclass."""
    module_name, _, function = RUNNERS[name].partition(":")
    runner: Callable[[Any], int] = getattr(importlib.import_module(module_name), function)
    return runner


def run(argv: Sequence[str]) -> int:
    spelled = flag_spelling
    if not argv:
        argv, spelled = argv_from_environment(os.environ), variable_spelling
    if argv[0] in ("-h", "--help", "help"):
        print(_synopsis())
        return 0
    if argv[0] in ("--version", "version"):
        print(__version__)
        return 0
    if argv[0] == "token" and len(argv) > 1:  # `pywharf token create|list|revoke`
        argv = [f"token {argv[1]}", *argv[2:]]
    command = COMMANDS.get(argv[0])
    if command is None:
        raise UsageError(f"unknown command {argv[0]!r}; commands: {', '.join(COMMANDS)}")
    if "--help" in argv[1:] or "-h" in argv[1:]:
        print(help_text(command))
        return 0
    return _runner(command.name)(parse_flags(command, argv[1:], spelled))


def main(argv: Sequence[str] | None = None) -> None:
    try:
        code = run(sys.argv[1:] if argv is None else argv)
    except (UsageError, ConfigError) as error:
        print(f"pywharf: {error}", file=sys.stderr)
        code = 2
    except PywharfError as error:
        print(f"pywharf: {error}", file=sys.stderr)
        code = 1
    except BrokenPipeError:  # `pywharf --help | head`: the reader left, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    except OSError as error:  # e.g. the port is taken
        print(f"pywharf: {error}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
