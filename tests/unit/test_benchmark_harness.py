"""The pure parts of benchmarks/: corpus naming, /proc parsing, wrk glue, the report table."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.corpus import CorpusSpec
from benchmarks.corpus import ensure_corpus
from benchmarks.corpus import planned_files
from benchmarks.load import legacy_upload
from benchmarks.load import parse_wrk_output
from benchmarks.load import percentile
from benchmarks.load import wrk_script
from benchmarks.pages import render_project
from benchmarks.pages import render_root
from benchmarks.proc import parse_stat
from benchmarks.proc import parse_status_kib
from benchmarks.report import add_growth_ratio
from benchmarks.report import build_rows
from benchmarks.report import format_ratio
from benchmarks.report import format_value
from benchmarks.report import render_markdown
from benchmarks.report import render_text


def test_planned_files_are_a_wheel_and_an_sdist_per_version() -> None:
    planned = list(planned_files(CorpusSpec(projects=2, versions=2)))
    assert [name for _, _, name, _ in planned] == [
        "bench_project_00000-1.0.0-py3-none-any.whl",
        "bench_project_00000-1.0.0.tar.gz",
        "bench_project_00000-1.0.1-py3-none-any.whl",
        "bench_project_00000-1.0.1.tar.gz",
        "bench_project_00001-1.0.0-py3-none-any.whl",
        "bench_project_00001-1.0.0.tar.gz",
        "bench_project_00001-1.0.1-py3-none-any.whl",
        "bench_project_00001-1.0.1.tar.gz",
    ]
    assert {filetype for *_, filetype in planned} == {"bdist_wheel", "sdist"}


def test_corpus_is_written_as_planned_and_reused(tmp_path: Path) -> None:
    spec = CorpusSpec(projects=3, versions=2)
    corpus = ensure_corpus(tmp_path, spec)
    assert [f.filename for f in corpus.files] == [n for _, _, n, _ in planned_files(spec)]
    assert all(f.path.stat().st_size == f.size and len(f.sha256) == 64 for f in corpus.files)
    stamps = [f.path.stat().st_mtime_ns for f in corpus.files]
    again = ensure_corpus(tmp_path, spec)
    assert again.files == corpus.files
    assert [f.path.stat().st_mtime_ns for f in again.files] == stamps
    assert [f.project for f in corpus.subset(1)] == ["bench-project-00000"] * 4


def test_pages_link_every_file_with_its_hash(tmp_path: Path) -> None:
    corpus = ensure_corpus(tmp_path, CorpusSpec(projects=1, versions=1))
    page = render_project("bench-project-00000", corpus.files)
    for f in corpus.files:
        assert f'href="{f.filename}#sha256={f.sha256}"' in page
    assert 'href="a-b/"' in render_root(["a-b"])


@pytest.mark.parametrize(
    ("text", "ppid", "ticks"),
    [
        ("7 (python3) S 1 7 7 0 -1 4194560 1 0 0 0 250 50 0 0 20 0 3 0", 1, 300),
        ("9 (a) (b c) R 7 9 9 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0", 7, 3),
    ],
)
def test_parse_stat_finds_ppid_and_cpu_past_a_tricky_comm(text: str, ppid: int, ticks: int) -> None:
    fields = parse_stat(text)
    assert (fields.ppid, fields.cpu_ticks) == (ppid, ticks)


def test_parse_status_reads_kib_lines() -> None:
    status = "Name:\tnginx\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n"
    assert parse_status_kib(status, "VmRSS") == 10240
    assert parse_status_kib(status, "VmHWM") == 20480
    assert parse_status_kib("Name:\tzombie\n", "VmRSS") == 0


def test_wrk_script_is_static_for_one_path_and_random_for_many() -> None:
    auth = {"Authorization": "Basic YmVuY2g6cg=="}
    one = wrk_script(["/simple/"], auth)
    assert 'wrk.path = "/simple/"' in one and "request =" not in one
    many = wrk_script(["/simple/a/", "/simple/b/"], auth)
    assert 'local paths = {"/simple/a/","/simple/b/"}' in many and "math.random" in many
    assert 'wrk.headers["Authorization"] = "Basic YmVuY2g6cg=="' in many
    assert "delay" not in many


def test_wrk_script_paces_each_connection_when_asked() -> None:
    paced = wrk_script(["/simple/a/", "/simple/b/"], {}, pause_ms=32)
    assert "delay = function() return 32 end" in paced and "math.random" in paced


def test_parse_wrk_output_reads_the_done_hook_line() -> None:
    out = (
        'Running 5s test\nWRK-JSON {"requests": 1000, "duration_us": 2000000, '
        '"p50_us": 1500, "p99_us": 9000, "errors": {"connect": 0, "read": 1, "write": 0, '
        '"status": 2, "timeout": 0}}\n'
    )
    result = parse_wrk_output(out)
    assert (result.per_second, result.p50_ms, result.p99_ms) == (500, 1.5, 9)
    assert result.error_count == 3
    with pytest.raises(ValueError, match="no WRK-JSON line"):
        parse_wrk_output("unable to connect")


def test_legacy_upload_sends_the_twine_fields(tmp_path: Path) -> None:
    file = ensure_corpus(tmp_path, CorpusSpec(projects=1, versions=1)).files[1]
    request = legacy_upload("/simple/", file, "Basic x")
    boundary = request.headers["Content-Type"].split("boundary=")[1]
    for name, value in [
        (":action", "file_upload"),
        ("name", "bench-project-00000"),
        ("filetype", "sdist"),
        ("pyversion", "source"),
        ("sha256_digest", file.sha256),
    ]:
        assert f'name="{name}"\r\n\r\n{value}\r\n'.encode() in request.head
    assert request.head.endswith(b"Content-Type: application/octet-stream\r\n\r\n")
    assert request.tail == f"\r\n--{boundary}--\r\n".encode()


def test_percentile_is_nearest_rank() -> None:
    assert percentile(list(range(1, 101)), 99) == 99
    assert percentile([5.0], 99) == 5.0
    assert percentile([], 99) == 0.0


def test_values_and_ratios_are_formatted_briefly() -> None:
    assert [format_value(v) for v in (None, 0.0, 0.01234, 12.34, 1234.5)] == [
        "-",
        "0",
        "0.0123",
        "12.3",
        "1,234",
    ]
    assert format_ratio(50, 1000) == "0.05x"
    assert format_ratio(None, 10) == format_ratio(10, 0) == "-"


def test_table_has_ratios_and_judges_targets() -> None:
    figures = {
        "pywharf": {
            "project_page_cpu_us": 60.0,
            "project_page_rps": 5000.0,
            "growth_200_cpu_us": 50.0,
            "growth_20000_cpu_us": 75.0,
        },
        "nginx": {"project_page_cpu_us": 10.0, "project_page_rps": 80000.0},
        "pypiserver": {"project_page_cpu_us": 12000.0},
    }
    add_growth_ratio(figures["pywharf"], [200, 20000])
    assert figures["pywharf"]["growth_cpu_ratio"] == 1.5
    servers = ["pywharf", "nginx", "pypiserver"]
    rows = {r.figure.key: r for r in build_rows(figures, servers, [200, 20000])}
    assert rows["project_page_cpu_us"].ratios == {"nginx": "6x", "pypiserver": "0.005x"}
    assert rows["project_page_cpu_us"].verdict == "met"
    assert rows["project_page_rps"].verdict == "MISSED"  # 5,000 < 10% of 80,000
    assert rows["growth_cpu_ratio"].verdict == "MISSED"
    assert "upload_full_per_s" not in rows  # nobody measured it
    markdown = render_markdown(list(rows.values()), servers)
    assert "| project page: server CPU (µs/req) | 60 | 10 | 12,000 | 6x | 0.005x |" in markdown
    assert render_text(list(rows.values()), servers).splitlines()[0].startswith("figure")
