"""Issue 15 through the built pyz with real clients: `twine upload --attestations` and `uv
publish` send PEP 740 attestation files and the provenance round-trips; pip, uv and pip 23.0
install from pages that carry provenance, a PEP 792 status and PEP 708 tracks; `pywharf status`
sets a status that survives a restart, `update_index`, and export and import."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from factory import make_attestation
from factory import make_attestation_file
from factory import make_wheel
from pypi_attestations import Attestation
from support import BIN
from support import CONFIG
from support import ServerProcess
from support import fetch_html
from support import fetch_json
from support import pip_install
from support import poll
from support import run_pyz
from support import start_pyz
from support import stop
from support import twine_upload
from support import uv_install
from support import uv_publish

PAGE = "/simple/demo/"
TRACKS = "https://pypi.org/simple/demo/"
PROJECTS = f'[local.projects.demo]\ntracks = ["{TRACKS}"]\n'


def serve(pyz: Path, root: Path, config: str = CONFIG + PROJECTS) -> ServerProcess:
    path = root.parent / f"{root.name}.toml"
    path.write_text(config)
    return start_pyz(pyz, root, "--config", str(path), "--extra_index_url", "")


def provenance_of(server: ServerProcess, wheel: Path) -> dict[str, Any]:
    (entry,) = [f for f in fetch_json(server.live, PAGE)["files"] if f["filename"] == wheel.name]
    assert entry["provenance"] == f"{server.live.url}{PAGE}{wheel.name}.provenance"
    status, _, body = server.live.request("GET", f"{PAGE}{wheel.name}.provenance")
    assert status == 200, body
    document: dict[str, Any] = json.loads(body)
    return document


def status_of(server: ServerProcess) -> dict[str, Any]:
    status: dict[str, Any] = fetch_json(server.live, PAGE)["project-status"]
    return status


def check(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_twine_and_uv_send_attestations_and_installers_read_the_pages(
    pyz: Path, old_pip: Path, tmp_path: Path
) -> None:
    home, folder = tmp_path / "home", tmp_path / "dists"
    folder.mkdir()
    by_twine = make_wheel(folder, "demo", "1.0")
    (tmp_path / "uv").mkdir()
    by_uv = make_wheel(tmp_path / "uv", "demo", "2.0")
    server = serve(pyz, tmp_path / "root")
    try:
        check(twine_upload(server, [by_twine, make_attestation_file(by_twine)], home,
                           options=("--attestations",)))  # fmt: skip
        make_attestation_file(by_uv)
        # uv pairs `<file>.<kind>.attestation` with its file only when it expands a glob itself.
        check(uv_publish(server, [tmp_path / "uv" / "*"], home, attestations=True))
        for wheel in (by_twine, by_uv):
            (bundle,) = provenance_of(server, wheel)["attestation_bundles"]
            assert bundle["attestations"] == [make_attestation(wheel)]  # round trip, byte-exact
            assert bundle["publisher"]["actor"] == "secret:write"
            Attestation.model_validate(bundle["attestations"][0])
        assert (tmp_path / "root").exists()
        form = b"status=deprecated&reason=use+demo2"
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        answer = server.live.request(
            "POST", "/api/status/demo", form, headers, ("local", "write-secret")
        )
        assert answer[0] == 200, answer
        document = fetch_json(server.live, PAGE)
        assert document["meta"] == {"api-version": "1.4", "tracks": [TRACKS]}
        assert document["project-status"] == {"status": "deprecated", "reason": "use demo2"}
        fetch_html(server.live, PAGE)  # checked against the spec's rules
        index = server.live.index_url()
        for name, target in (("pip", tmp_path / "pip"), ("pip23", tmp_path / "pip23")):
            python = old_pip if name == "pip23" else BIN / "python"
            check(pip_install(index, "demo", target, home, python=python))
            assert (target / "demo-2.0.dist-info").is_dir(), name
        check(uv_install(index, "demo", tmp_path / "uv-target", home))
        assert (tmp_path / "uv-target" / "demo-2.0.dist-info").is_dir()
    finally:
        stop(server)


def test_a_status_survives_restart_update_index_export_and_import(
    pyz: Path, tmp_path: Path
) -> None:
    home, folder = tmp_path / "home", tmp_path / "dists"
    folder.mkdir()
    wheel = make_wheel(folder, "demo", "1.0")
    root = tmp_path / "root"
    server = serve(pyz, root)
    try:
        check(twine_upload(server, [wheel, make_attestation_file(wheel)], home,
                           options=("--attestations",)))  # fmt: skip
        provenance = provenance_of(server, wheel)
        result = run_pyz(pyz, "status", "file_system", "local", "Demo", "archived",
                         "--reason", "frozen", "--root", str(root))  # fmt: skip
        check(result)
        assert "status: demo archived" in result.stdout
        archived = {"status": "archived", "reason": "frozen"}
        poll(lambda: status_of(server) == archived or None, "the server to sync the status")
        refused = twine_upload(server, [make_wheel(folder, "demo", "2.0")], home)
        assert refused.returncode != 0 and "archived" in refused.stdout + refused.stderr
        bad = run_pyz(pyz, "status", "file_system", "local", "demo", "frozen", "--root", str(root))
        assert bad.returncode != 0 and "unknown project status" in bad.stderr
        assert "Traceback" not in bad.stderr
    finally:
        stop(server)
    check(run_pyz(pyz, "update_index", "file_system", "local", "--root", str(root)))
    server = serve(pyz, root)  # a restart, after a rebuild
    try:
        assert status_of(server) == archived
        assert provenance_of(server, wheel) == provenance
    finally:
        stop(server)
    bundle = tmp_path / "bundle.tar"
    check(run_pyz(pyz, "export", "file_system", "local", str(bundle), "--root", str(root)))
    other = tmp_path / "other"
    imported = run_pyz(pyz, "import", "file_system", "local", str(bundle), "--root", str(other))
    check(imported)
    assert "status demo archived" in imported.stdout
    server = serve(pyz, other, CONFIG)
    try:
        assert status_of(server) == archived
        (bundle_of,) = provenance_of(server, wheel)["attestation_bundles"]
        assert bundle_of == provenance["attestation_bundles"][0]
    finally:
        stop(server)
