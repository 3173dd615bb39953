"""A fake GitHub for the tests: API, uploads and signed-download origins on 127.0.0.1."""

from __future__ import annotations

from tests.fake_github.server import Exchange
from tests.fake_github.server import FakeGitHub
from tests.fake_github.state import blob_sha
from tests.fake_github.state import mangle_asset_name

__all__ = ["Exchange", "FakeGitHub", "blob_sha", "mangle_asset_name"]
