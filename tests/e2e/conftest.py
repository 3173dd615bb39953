"""End-to-end folder: mark every test `e2e`; report which interpreters the smoke test ran on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from balancer import nginx  # noqa: F401 (a fixture for the scale-out tests)
from browser import browser  # noqa: F401 (a fixture for the browser tests)
from browser import chromium  # noqa: F401 (a fixture for the browser tests)
from pythons import MINORS
from pythons import interpreters

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`-m "not e2e"` runs the in-process suite only. The hook sees every item: keep ours."""
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.e2e)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    ran = interpreters()
    if not any("test_pythons" in str(r.nodeid) for r in _reports(terminalreporter)):
        return
    found = ", ".join(f"{i.version} ({i.path})" for i in ran) or "none"
    missing = [m for m in MINORS if m not in {i.minor for i in ran}]
    terminalreporter.write_sep("-", "pyz smoke test interpreters")
    terminalreporter.write_line(f"ran on: {found}")
    if missing:
        terminalreporter.write_line(f"not found on this machine: {', '.join(missing)}")


def _reports(terminalreporter: Any) -> list[Any]:
    reports = []
    for key in ("passed", "failed", "error", "skipped"):
        reports += terminalreporter.stats.get(key, [])
    return [r for r in reports if hasattr(r, "nodeid")]
