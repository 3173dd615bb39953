"""The upstream cache and the air gap through the built pyz, with real pip and uv (issue 12).

The upstream is a second pywharf process (it serves PEP 691 JSON and HTML with upload times,
and wants Basic auth, so the credentials in `upstream_url` are exercised); no test reaches the
internet.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from factory import make_wheel
from support import CONFIG
from support import READ
from support import WRITE
from support import ServerProcess
from support import pip_install
from support import run_pyz
from support import start_pyz
from support import stop
from support import twine_upload
from support import uv_install


@pytest.fixture
def upstream(pyz: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    """An upstream index holding `app-a`, which depends on `dep-b`, and `dep-b`."""
    config = tmp_path / "upstream.toml"
    config.write_text(CONFIG)
    server = start_pyz(pyz, tmp_path / "upstream", "--config", str(config),
                       "--extra_index_url", "")  # fmt: skip
    try:
        dists = tmp_path / "dists"
        dists.mkdir()
        files = [make_wheel(dists, "app-a", "1.0", requires_dist=("dep-b>=1",)),
                 make_wheel(dists, "dep-b", "1.0")]  # fmt: skip
        result = twine_upload(server, files, tmp_path / "home")
        assert result.returncode == 0, result.stderr
        yield server
    finally:
        if server.process.poll() is None:
            stop(server)


def _cache_config(tmp_path: Path, upstream_url: str) -> Path:
    config = tmp_path / "cache.toml"
    config.write_text(
        f'[local]\ntype = "file_system"\nread_secret = "{READ}"\nwrite_secret = "{WRITE}"\n'
        f'sync_index_interval = 0.2\nupstream_url = "{upstream_url}"\n'
    )
    return config


def test_pip_and_uv_resolve_through_the_cache_and_the_air_gap_takes_its_bundle(
    pyz: Path, tmp_path: Path, upstream: ServerProcess
) -> None:
    config = _cache_config(tmp_path, upstream.live.index_url())
    cache = start_pyz(pyz, tmp_path / "cache", "--config", str(config), "--extra_index_url", "")
    try:
        index = cache.live.index_url()
        result = pip_install(index, "app-a", tmp_path / "pip", tmp_path / "home")
        assert result.returncode == 0, result.stdout + result.stderr
        assert (tmp_path / "pip" / "app_a").is_dir() and (tmp_path / "pip" / "dep_b").is_dir()
        result = uv_install(index, "app-a", tmp_path / "uv", tmp_path / "home")
        assert result.returncode == 0, result.stdout + result.stderr
        assert (tmp_path / "uv" / "dep_b").is_dir()
        assert READ not in cache.output()  # the upstream's password: never logged
    finally:
        stop(cache)
    stop(upstream)  # the air gap: nothing upstream from here on
    bundle = tmp_path / "bundle.tar"
    result = run_pyz(pyz, "export", "file_system", "local", str(bundle),
                     "--root", str(tmp_path / "cache"))  # fmt: skip
    assert result.returncode == 0 and "exported 2 files" in result.stdout, result.stderr
    result = run_pyz(pyz, "import", "file_system", "local", str(bundle),
                     "--root", str(tmp_path / "island"))  # fmt: skip
    assert result.returncode == 0 and "imported 2" in result.stdout, result.stderr
    island_config = tmp_path / "island.toml"
    island_config.write_text(CONFIG)
    island = start_pyz(pyz, tmp_path / "island", "--config", str(island_config),
                       "--extra_index_url", "")  # fmt: skip
    try:
        result = pip_install(island.live.index_url(), "app-a", tmp_path / "air", tmp_path / "home")
        assert result.returncode == 0, result.stdout + result.stderr
        assert (tmp_path / "air" / "dep_b").is_dir()
    finally:
        stop(island)
