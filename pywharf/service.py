"""The running service: configuration loaded into repositories, their sync, re-initialization."""

from __future__ import annotations

import contextlib
import gc
import hmac
import logging
import os
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import tomli_w

from pywharf.app import App
from pywharf.audit import AuditLog
from pywharf.backends import backend_settings
from pywharf.backends import create_backend
from pywharf.config import AdminSecrets
from pywharf.config import RepositoryConfig
from pywharf.config import parse_admin_secrets
from pywharf.config import parse_repositories
from pywharf.config import read_text
from pywharf.errors import AuthenticationRequired
from pywharf.errors import BadRequest
from pywharf.errors import ConfigError
from pywharf.errors import Forbidden
from pywharf.errors import PywharfError
from pywharf.errors import StorageUnavailable
from pywharf.repository import Repository
from pywharf.session import SessionKeys
from pywharf.settings import ServerOptions
from pywharf.sync import Syncer
from pywharf.trusted import KeyCache
from pywharf.trusted import TrustedPublishing
from pywharf.upstream import UpstreamSettings

if TYPE_CHECKING:
    from pywharf.clients.oidc import IssuerClient

__all__ = ["EMBEDDED_SECRETS", "Service"]

log = logging.getLogger("pywharf")

EMBEDDED_NAME = "local"
EMBEDDED_SECRETS = "embedded-secrets.toml"


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (0600): it holds secrets.

    `fchmod`, because `O_CREAT`'s mode applies only to a new file: a `config.toml` left 0644
    by hand (or by an older version) must not stay readable to all.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)


def _config_text(value: str, root: Path, as_text: bool, filename: str) -> tuple[str, str]:
    """The TOML text of --config / --admin_secret and its source name for errors."""
    path = Path(value)
    if path.is_file() or not as_text:
        return read_text(path), str(path)
    write_private(root / filename, value)  # the original's place for text given as a flag
    return value, f"{filename} (from the command line)"


def _embedded_config(root: Path) -> tuple[str, bool]:
    """One file_system repository `local`; its secrets are made once and kept in ROOT (0600).

    Also whether they were made just now: only then are they printed.
    """
    path = root / EMBEDDED_SECRETS
    if path.exists():
        return read_text(path), False
    # Hex, not urlsafe base64: one secret in 64 of that began with "-", and the printed
    # `twine upload ... -p <secret>` then read it as an option (a fresh-clone CI run caught it).
    section = {"type": "file_system", "read_secret": secrets.token_hex(24),
               "write_secret": secrets.token_hex(24)}  # fmt: skip
    text = tomli_w.dumps({EMBEDDED_NAME: section})
    write_private(path, text)
    return text, True


@contextlib.contextmanager
def _bulk_load() -> Iterator[None]:
    """The first load of every index, before any request: without the cyclic collector.

    Its passes over the records being loaded (millions of objects, none in a cycle) cost
    13% of a start-up with 100,000 files (measured: 2.0 s, 1.74 s without). Frozen after,
    the index is never traversed by a collection again while requests are served.
    """
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.freeze()


def _initialize_secret(options: ServerOptions) -> str:
    """--initialize_secret, or its file or environment form (which keep it out of `ps`)."""
    if options.initialize_secret_file:
        lines = read_text(Path(options.initialize_secret_file)).splitlines()
        return lines[0].strip() if lines else ""
    if options.initialize_secret_env:
        value = os.environ.get(options.initialize_secret_env)
        if value is None:
            raise ConfigError(
                f"--initialize_secret_env: variable {options.initialize_secret_env} is not set"
            )
        return value
    return options.initialize_secret


class _Issuers:
    """The OIDC issuers' client, made at the first mint: its transport imports urllib3, 2.5 MiB
    of RSS and a fifth of the imports' time that a server without trusted publishing never
    needs (issue 16)."""

    def __init__(self) -> None:
        self._client: IssuerClient | None = None
        self._lock = threading.Lock()

    def get(self, url: str) -> bytes:
        with self._lock:
            if self._client is None:
                from pywharf.clients.oidc import IssuerClient

                self._client = IssuerClient()
            client = self._client
        return client.get(url)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()


class Service:
    """Builds the app from the options and swaps its repositories on `/initialize/`."""

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self.root = Path(options.root).resolve()
        self._lock = threading.Lock()
        self.configured = options.config is not None
        self._new_secrets = False
        self._initialize_secret = _initialize_secret(options)
        as_text = options.config_or_admin_secret_can_be_text
        if options.config is not None:
            text, source = _config_text(options.config, self.root, as_text, "config.toml")
        else:
            text, self._new_secrets = _embedded_config(self.root)
            source = str(self.root / EMBEDDED_SECRETS)
        admin_text = admin_source = None
        if options.admin_secret is not None:
            admin_text, admin_source = _config_text(
                options.admin_secret, self.root, as_text, "admin_secret.toml"
            )
        self._sessions = SessionKeys.load(self.root, options.auth_read_expires)
        with _bulk_load():
            self.configs, repositories = self._build(text, source, admin_text, admin_source)
        self.audit = AuditLog(
            Path(options.audit_log) if options.audit_log else self.root / "audit.log"
        )
        self._issuers = _Issuers()
        trusted = TrustedPublishing(
            options.oidc_audience, KeyCache(self._issuers.get), self._sessions.signer("minted")
        )
        proxies = frozenset(p.strip() for p in options.trusted_proxy.split(",") if p.strip())
        self.app = App(
            repositories,
            options.extra_index_url,
            initializer=self,
            sessions=self._sessions,
            metrics_secret=options.metrics_secret,
            audit=self.audit,
            trusted=trusted,
            trusted_proxies=proxies,
        )
        self._syncer = Syncer(repositories.values())

    def _build(
        self, text: str, source: str, admin_text: str | None, admin_source: str | None
    ) -> tuple[tuple[RepositoryConfig, ...], dict[str, Repository]]:
        configs = parse_repositories(text, source, backend_settings)
        admin = AdminSecrets({})
        if admin_text is not None:
            admin = parse_admin_secrets(admin_text, admin_source or "admin_secret", os.environ)
        repositories: dict[str, Repository] = {}
        try:
            for config in configs:
                backend = create_backend(config, self.root, admin.get(config.name))
                repository = Repository(
                    backend,
                    self.options.auth_read_expires,
                    self.options.auth_write_expires,
                    self._sessions.fingerprint(config.type + repr(sorted(config.values.items()))),
                    UpstreamSettings.from_config(config),
                    self.root / "cache" / config.name / "upstream",
                    publishers=config.publishers,
                    projects=config.projects,
                )
                repositories[config.name] = repository
                try:
                    repository.sync()  # the first load happens before requests reach it
                except StorageUnavailable as error:
                    # A store that is down (or refuses the server's credentials) must not keep
                    # the other repositories from being served: the syncer loads it later.
                    log.warning("%s; serving it empty until its storage answers", error)
        except PywharfError:
            for repository in repositories.values():
                repository.backend.close()
            raise
        return configs, repositories

    def announce(self, port: int) -> None:
        """On the embedded default, print the exact client command lines once."""
        log.info("listening on %s:%s", self.options.host, port)
        if self.configured:
            return
        config = self.configs[0]
        host = self.options.host
        shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
        scheme = "https" if self.options.certfile else "http"
        base = f"{scheme}://{shown}:{port}"
        kept = self.root / EMBEDDED_SECRETS
        if not self._new_secrets:  # a secret printed on every start ends up in every log
            print(
                f"pywharf: serving the embedded repository {config.name!r} at {base}/simple/\n"
                f"  its secrets are in {kept}",
                flush=True,
            )
            return
        index = f"{scheme}://{config.name}:{config['read_secret']}@{shown}:{port}/simple/"
        print(
            f"pywharf: serving the embedded repository {config.name!r} at {base}/simple/\n"
            f"  pip install --index-url {index} PROJECT\n"
            f"  uv pip install --index-url {index} PROJECT\n"
            f"  twine upload --repository-url {base}/simple/ -u {config.name} "
            f"-p {config['write_secret']} dist/*\n"
            f"  (printed on this first start only; the secrets are kept in {kept})",
            flush=True,
        )

    def start(self) -> None:
        self._syncer.start()

    def stop(self) -> None:
        with self._lock:
            self._syncer.stop()
            self.app.spools.discard_all()
            for repository in self.app.repositories.values():
                repository.backend.close()
            self._issuers.close()
            self.audit.close()
        log.info("stopped")

    # --- /initialize/ ------------------------------------------------------------------------

    def authorize_initialize(self, password: str | None) -> None:
        """Anyone may configure a fresh server; after that only the initialize secret may.

        Fresh: started without --config, never initialized (no `config.toml` in ROOT), and
        nothing ever stored, not even a file since deleted (the seed's GitHub Actions recipe).
        Otherwise the password must equal --initialize_secret; without one it is off.
        """
        fresh = (
            not self.configured
            and not (self.root / "config.toml").exists()
            and all(r.pristine for r in self.app.repositories.values())
        )
        if fresh:
            return
        expected = self._initialize_secret
        if not expected:
            raise Forbidden(
                "this server is configured; --initialize_secret allows re-initialization"
            )
        if password is None:
            raise AuthenticationRequired(
                "re-initialization needs the initialize secret as the password"
            )
        if not hmac.compare_digest(password.encode(), expected.encode()):
            raise Forbidden("wrong initialize secret")

    def initialize(self, config_text: str, admin_text: str | None) -> list[str]:
        """Swap in a new configuration atomically; a bad one leaves the old one serving."""
        with self._lock:
            try:
                configs, repositories = self._build(
                    config_text, "posted config", admin_text, "posted admin_secret"
                )
            except PywharfError as error:
                raise BadRequest(str(error)) from None
            old = self.app.repositories
            self.app.repositories = repositories  # one assignment: requests see old or new
            self._syncer.stop()
            self._syncer = Syncer(repositories.values())
            self._syncer.start()
            for repository in old.values():
                repository.backend.close()
            self.configs, self.configured = configs, True
            write_private(self.root / "config.toml", config_text)
            if admin_text is not None:
                write_private(self.root / "admin_secret.toml", admin_text)
            log.info("initialized with repositories %s", ", ".join(repositories))
            return list(repositories)
