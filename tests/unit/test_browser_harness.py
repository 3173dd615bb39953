"""The Chromium harness starts chromedriver again when the port it chose was taken."""

from __future__ import annotations

from pathlib import Path

import browser
import pytest


def _fake_driver(folder: Path, said: str) -> tuple[Path, Path]:
    """A chromedriver that counts its starts and exits as the real one does on a taken port."""
    starts = folder / "starts"
    driver = folder / "chromedriver"
    driver.write_text(f'#!/bin/sh\necho start >> {starts}\necho "{said}"\nexit 1\n')
    driver.chmod(0o755)
    return driver, starts


def test_a_taken_port_is_tried_again_then_reported(tmp_path: Path) -> None:
    driver, starts = _fake_driver(tmp_path, "IPv4 port not available. Exiting...")
    with pytest.raises(AssertionError, match="port not available"):
        browser._start_driver(driver, tmp_path / "driver.log")
    assert starts.read_text().count("start") == browser.DRIVER_ATTEMPTS


def test_any_other_exit_is_reported_at_once(tmp_path: Path) -> None:
    driver, starts = _fake_driver(tmp_path, "unknown option")
    with pytest.raises(AssertionError, match="unknown option"):
        browser._start_driver(driver, tmp_path / "driver.log")
    assert starts.read_text().count("start") == 1
