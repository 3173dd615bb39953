"""Defaults for the contract suite's fixtures: a backend whose repository has its own two
secrets. A backend with other credentials (GitHub's tokens) overrides them in its module."""

from __future__ import annotations

import pytest
from support import READ
from support import WRITE


@pytest.fixture
def secrets() -> tuple[str, str]:
    return READ, WRITE


@pytest.fixture
def credential() -> str:
    return WRITE
