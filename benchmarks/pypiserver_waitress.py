"""Run pypiserver 2.4 on waitress, with a request-body limit that admits the large file.

Usage, with pypiserver's venv: python pypiserver_waitress.py [pypi-server run flags] ROOT

`pypi-server run --server auto` picks waitress but bottle's adapter passes it no options, so
waitress keeps its 1 GiB `max_request_body_size` and drops a 1 GiB upload (the multipart body
is a little larger). This does what pypiserver's own main does, then raises that limit. It runs
in pypiserver's venv and imports nothing from this repository.
"""

from __future__ import annotations

import sys

# These live in pypiserver's venv, not in ours.
import pypiserver  # type: ignore[import-not-found]
import waitress  # type: ignore[import-untyped]
from pypiserver.__main__ import init_logging  # type: ignore[import-not-found]
from pypiserver.config import Config  # type: ignore[import-not-found]

MAX_BODY_BYTES = 1 << 40
THREADS = 4  # waitress's default, as `pypi-server run` gets it


def main() -> None:
    config = Config.from_args(["run", *sys.argv[1:]])
    init_logging(
        level=config.log_level,
        filename=config.log_file,
        frmt=config.log_frmt,
        stream=config.log_stream,
    )
    app = pypiserver.setup_routes_from_config(pypiserver.app_from_config(config), config)
    waitress.serve(
        app,
        host=config.host,
        port=config.port,
        threads=THREADS,
        max_request_body_size=MAX_BODY_BYTES,
    )


if __name__ == "__main__":
    main()
