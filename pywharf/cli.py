"""The command line: argv or the environment in, a command run, an exit code out."""

from __future__ import annotations

import logging
import os
import secrets
import sys
from collections.abc import Callable
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import tomli_w

from pywharf import __version__
from pywharf.app import App
from pywharf.backends import Backend
from pywharf.backends import backend_settings
from pywharf.backends import create_backend
from pywharf.config import AdminSecrets
from pywharf.config import RepositoryConfig
from pywharf.config import parse_admin_secrets
from pywharf.config import parse_repositories
from pywharf.config import read_text
from pywharf.dists import NormalizedName
from pywharf.dists import canonicalize_name
from pywharf.errors import ConfigError
from pywharf.errors import PywharfError
from pywharf.repository import Repository
from pywharf.server import Server
from pywharf.server import default_access_log
from pywharf.server import serve
from pywharf.settings import COMMANDS
from pywharf.settings import UsageError
from pywharf.settings import argv_from_environment
from pywharf.settings import help_text
from pywharf.settings import parse_flags
from pywharf.sync import Syncer

__all__ = ["main"]

log = logging.getLogger("pywharf")

EMBEDDED_NAME = "local"
EMBEDDED_SECRETS = "embedded-secrets.toml"


def _synopsis() -> str:
    lines = [f"pywharf {__version__}: a private Python package index", "", "commands:"]
    lines += [f"  {c.name:<14} {c.summary}" for c in COMMANDS.values()]
    lines += [
        "",
        "pywharf COMMAND --help documents each flag.",
        "With no arguments, PYWHARF_COMMAND and PYWHARF_COMMAND_<FLAG> are read.",
    ]
    return "\n".join(lines)


def _config_text(value: str, root: Path, as_text: bool, filename: str) -> tuple[str, str]:
    """The TOML text of --config / --admin_secret and its source name for errors."""
    path = Path(value)
    if path.is_file() or not as_text:
        return read_text(path), str(path)
    stored = root / filename  # the original's place for text given on the command line
    _write_private(stored, value)
    return value, f"{filename} (from the command line)"


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)


def _embedded_config(root: Path) -> str:
    """One file_system repository `local`; its secrets are made once and kept in ROOT (0600)."""
    path = root / EMBEDDED_SECRETS
    if path.exists():
        return read_text(path)
    section = {"type": "file_system", "read_secret": secrets.token_urlsafe(24),
               "write_secret": secrets.token_urlsafe(24)}  # fmt: skip
    text = tomli_w.dumps({EMBEDDED_NAME: section})
    _write_private(path, text)
    return text


def _print_usage_lines(config: RepositoryConfig, host: str, port: int) -> None:
    shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    base = f"http://{shown}:{port}"
    index = f"http://{config.name}:{config['read_secret']}@{shown}:{port}/simple/"
    print(
        f"pywharf: serving the embedded repository {config.name!r} at {base}/simple/\n"
        f"  pip install --index-url {index} PROJECT\n"
        f"  uv pip install --index-url {index} PROJECT\n"
        f"  twine upload --repository-url {base}/simple/ -u {config.name} "
        f"-p {config['write_secret']} dist/*\n"
        f"  (secrets are kept in {EMBEDDED_SECRETS} in ROOT)",
        flush=True,
    )


def _load(options: dict[str, Any]) -> tuple[Path, tuple[RepositoryConfig, ...], AdminSecrets]:
    root = Path(options["root"]).resolve()
    as_text = options["config_or_admin_secret_can_be_text"]
    if options["config"] is None:
        text, source = _embedded_config(root), str(root / EMBEDDED_SECRETS)
    else:
        text, source = _config_text(options["config"], root, as_text, "config.toml")
    repositories = parse_repositories(text, source, backend_settings)
    admin = AdminSecrets({})
    if options["admin_secret"] is not None:
        admin_text, admin_source = _config_text(
            options["admin_secret"], root, as_text, "admin_secret.toml"
        )
        admin = parse_admin_secrets(admin_text, admin_source, os.environ)
    return root, repositories, admin


def _build_repositories(
    root: Path, configs: tuple[RepositoryConfig, ...], admin: AdminSecrets, options: dict[str, Any]
) -> dict[str, Repository]:
    repositories = {}
    for config in configs:
        backend = create_backend(config, root, admin.get(config.name))
        repository = Repository(
            backend, options["auth_read_expires"], options["auth_write_expires"]
        )
        repository.sync()  # the first load happens before the port opens
        repositories[config.name] = repository
    return repositories


def run_server(options: dict[str, Any]) -> int:
    logging.basicConfig(
        level=logging.DEBUG if options["debug"] else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    root, configs, admin = _load(options)
    repositories = _build_repositories(root, configs, admin, options)
    app = App(repositories, options["extra_index_url"])
    server = Server((options["host"], options["port"]), app, default_access_log())
    if options["config"] is None:
        _print_usage_lines(configs[0], options["host"], server.server_address[1])
    log.info("listening on %s:%s", *server.server_address[:2])
    syncer = Syncer(repositories.values())
    syncer.start()

    def on_stop() -> None:
        syncer.stop()
        app.spools.discard_all()
        for repository in repositories.values():
            repository.backend.close()
        log.info("stopped")

    serve(server, on_stop)
    return 0


def _backend_from_flags(options: dict[str, Any]) -> Backend:
    """A backend configured by command-line flags, as update_index and yank take them."""
    section: dict[str, Any] = {"type": options["type"], **options["extra"]}
    text = tomli_w.dumps({options["name"].lower(): section})
    (config,) = parse_repositories(text, "flags", backend_settings)
    secret = options["secret"]
    if options["secret_env"]:
        secret = os.environ.get(options["secret_env"])
        if secret is None:
            raise UsageError(f"environment variable {options['secret_env']} is not set")
    return create_backend(config, Path(options["root"]).resolve(), secret)


def run_update_index(options: dict[str, Any]) -> int:
    backend = _backend_from_flags(options)
    try:
        report = backend.rebuild_index()
    finally:
        backend.close()
    for line in report.lines():
        print(line)
    return 0


def _change(options: dict[str, Any], act: Callable[[Repository, NormalizedName], list[str]]) -> int:
    backend = _backend_from_flags(options)
    try:
        repository = Repository(backend, 0, 0)
        repository.sync()
        for filename in act(repository, canonicalize_name(options["project"])):
            print(f"{options['command']}: {filename}")
    finally:
        backend.close()
    return 0


def run_yank(options: dict[str, Any]) -> int:
    return _change(options, lambda r, p: r.yank(p, options["target"], options["reason"]))


def run_unyank(options: dict[str, Any]) -> int:
    return _change(options, lambda r, p: r.yank(p, options["target"], None))


def run_delete(options: dict[str, Any]) -> int:
    return _change(options, lambda r, p: r.delete(p, options["target"]))


RUNNERS = {
    "server": run_server,
    "update_index": run_update_index,
    "yank": run_yank,
    "unyank": run_unyank,
    "delete": run_delete,
}


def run(argv: Sequence[str]) -> int:
    if not argv:
        argv = argv_from_environment(os.environ)
    if argv[0] in ("-h", "--help", "help"):
        print(_synopsis())
        return 0
    if argv[0] in ("--version", "version"):
        print(__version__)
        return 0
    command = COMMANDS.get(argv[0])
    if command is None:
        raise UsageError(f"unknown command {argv[0]!r}; commands: {', '.join(COMMANDS)}")
    if "--help" in argv[1:] or "-h" in argv[1:]:
        print(help_text(command))
        return 0
    options = parse_flags(command, argv[1:])
    options["command"] = command.name
    return RUNNERS[command.name](options)


def main(argv: Sequence[str] | None = None) -> None:
    try:
        code = run(sys.argv[1:] if argv is None else argv)
    except (UsageError, ConfigError) as error:
        print(f"pywharf: {error}", file=sys.stderr)
        code = 2
    except PywharfError as error:
        print(f"pywharf: {error}", file=sys.stderr)
        code = 1
    except OSError as error:  # e.g. the port is taken
        print(f"pywharf: {error}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
