"""A fake GitHub for the tests: API, uploads and signed-download origins on 127.0.0.1."""

from __future__ import annotations

from .server import Exchange
from .server import FakeGitHub
from .state import blob_sha
from .state import mangle_asset_name

__all__ = ["Exchange", "FakeGitHub", "blob_sha", "mangle_asset_name"]
