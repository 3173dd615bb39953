"""The measurements, in order, against one server: populate, cold start, pages, files, growth."""

from __future__ import annotations

import http.client
import shutil
import statistics
import subprocess
import time
from collections.abc import Iterator
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

from benchmarks.corpus import Corpus
from benchmarks.corpus import CorpusFile
from benchmarks.load import UploadStats
from benchmarks.load import WrkResult
from benchmarks.load import download
from benchmarks.load import run_wrk
from benchmarks.load import upload_many
from benchmarks.load import upload_one_large
from benchmarks.peers import BenchmarkError
from benchmarks.peers import RunningServer
from benchmarks.peers import Server
from benchmarks.peers import running
from benchmarks.proc import PeakRss
from benchmarks.proc import cpu_seconds
from benchmarks.proc import rss_bytes

__all__ = ["Measurement", "Settings", "large_transfers", "measure"]

MIB = 1 << 20
# What a server that is missing, crashes or misbehaves makes the harness raise; anything else
# is a bug in the harness and should surface with its traceback.
HARNESS_ERRORS = (
    BenchmarkError,
    OSError,
    ValueError,
    subprocess.SubprocessError,
    http.client.HTTPException,
)
IDLE_SETTLE_SECONDS = 1.0
# Below this many completed requests per connection, in-flight work skews CPU per request.
FEW_REQUESTS_PER_CONNECTION = 10
DOWNLOADS = 3  # the median of three: one download is at the mercy of a noisy neighbour


@dataclass(frozen=True)
class Settings:
    wrk_seconds: float = 15.0
    wrk_threads: int = 2
    wrk_connections: int = 64
    clients: int = 8
    upload_sample: int = 400  # uploads per measured phase (empty, full)
    upload_seconds: float = 60.0  # time limit per measured phase
    fill_seconds: float = 900.0  # time limit to fill a repository through the API


@dataclass
class Measurement:
    """Figures by key (see report.FIGURES) and notes on anything unusual."""

    server: str
    figures: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        print(f"  [{self.server}] {text}")
        self.notes.append(text)


@dataclass
class _Cpu:
    seconds: float = 0.0


@contextmanager
def server_cpu(live: RunningServer) -> Iterator[_Cpu]:
    """The CPU seconds the server's process tree spent inside the block."""
    pids = live.pids()
    used = _Cpu()
    before = cpu_seconds(pids)
    try:
        yield used
    finally:
        used.seconds = cpu_seconds(pids) - before


class _Run:
    """One server's measurements; each method adds figures to `self.result`."""

    def __init__(self, server: Server, work: Path, settings: Settings) -> None:
        self.server, self.work, self.settings = server, work, settings
        self.result = Measurement(server.name)

    def root(self, label: str) -> Path:
        root = self.work / "roots" / f"{self.server.name}-{label}"
        shutil.rmtree(root, ignore_errors=True)
        self.server.prepare(root)
        return root

    def upload_phase(
        self, live: RunningServer, files: Sequence[CorpusFile], label: str, max_seconds: float
    ) -> UploadStats:
        with server_cpu(live) as cpu:
            stats = upload_many(
                live.endpoint, files, self.server.upload_request, self.settings.clients, max_seconds
            )
        failed = stats.attempted - stats.ok
        if failed:
            self.result.note(
                f"{label}: {failed} of {stats.attempted} uploads failed {dict(stats.statuses)}"
            )
        if stats.ok:
            fig = self.result.figures
            fig[f"{label}_per_s"] = stats.per_second
            fig[f"{label}_p99_ms"] = stats.p99_ms
            fig[f"{label}_cpu_ms"] = cpu.seconds / stats.ok * 1000
        return stats

    def upload_fill(
        self, live: RunningServer, files: Sequence[CorpusFile], label: str
    ) -> list[CorpusFile]:
        """Fill through the API (for servers that cannot be seeded); return what got in."""
        stats = self.upload_phase(live, files, label, self.settings.fill_seconds)
        if stats.ok < len(files):
            self.result.note(
                f"{label}: only {stats.ok} of {len(files)} files uploaded "
                f"within {self.settings.fill_seconds:.0f} s"
            )
        return stats.uploaded

    def populate(self, corpus: Corpus, root: Path) -> list[CorpusFile]:
        """Upload a sample while empty, fill, then upload a sample while nearly full."""
        files = list(corpus.files)
        sample = min(self.settings.upload_sample, len(files) // 4)
        middle, last = files[: len(files) - sample], files[len(files) - sample :]
        seconds = self.settings.upload_seconds
        with running(self.server, root, self.work) as live:
            empty = self.upload_phase(live, middle[:sample], "upload_empty", seconds)
            done = set(empty.uploaded)
            rest = [f for f in middle if f not in done]
            seeded = self.server.seed(root, rest)
            filled = rest if seeded else self.upload_fill(live, rest, "upload_fill")
            full = self.upload_phase(live, last, "upload_full", seconds)
        present = empty.uploaded + filled + full.uploaded
        self.server.publish(root, present)
        return present

    def wrk(self, live: RunningServer, paths: Sequence[str], label: str) -> WrkResult:
        auth = self.server.read_auth
        s = self.settings
        with server_cpu(live) as cpu:
            result = run_wrk(
                live.endpoint,
                paths,
                {"Authorization": auth} if auth else {},
                s.wrk_seconds,
                s.wrk_threads,
                s.wrk_connections,
                self.work,
            )
        fig = self.result.figures
        fig[f"{label}_rps"] = result.per_second
        fig[f"{label}_p99_ms"] = result.p99_ms
        if result.requests:
            fig[f"{label}_cpu_us"] = cpu.seconds / result.requests * 1e6
        if result.error_count:
            kinds = {k: v for k, v in result.errors.items() if v}
            self.result.note(
                f"{label}: {result.error_count} of {result.requests} requests failed {kinds}"
            )
        if result.requests < FEW_REQUESTS_PER_CONNECTION * s.wrk_connections:
            self.result.note(
                f"{label}: only {result.requests} requests completed; the CPU "
                "spent on those still in flight inflates the CPU per request"
            )
        return result

    def page_paths(self, files: Sequence[CorpusFile]) -> list[str]:
        prefix = self.server.simple
        return [f"{prefix}{p}/" for p in dict.fromkeys(f.project for f in files)]

    def reads(self, live: RunningServer, present: Sequence[CorpusFile]) -> None:
        self.wrk(live, [self.server.simple], "root_page")
        self.wrk(live, self.page_paths(present), "project_page")
        self.wrk(live, [self.server.file_path(present[0])], "small_file")

    def main(self, corpus: Corpus, large: CorpusFile) -> None:
        root = self.root(f"main-{corpus.spec.key}")
        present = self.populate(corpus, root)
        if not present:
            raise BenchmarkError("no file got into the repository (see the upload notes)")
        with running(self.server, root, self.work) as live:
            self.result.figures["cold_start_s"] = live.ready_seconds
            time.sleep(IDLE_SETTLE_SECONDS)
            self.result.figures["idle_rss_mib"] = rss_bytes(live.pids()) / MIB
            self.reads(live, present)
            large_transfers(self.server, live, large, self.result)
        shutil.rmtree(root, ignore_errors=True)

    def growth(self, corpus: Corpus, projects: int) -> None:
        """Cold start and the project-page test on a repository of `projects` projects."""
        root = self.root(f"growth-{projects}")
        files = corpus.subset(projects)
        if not self.server.seed(root, files):
            with running(self.server, root, self.work) as live:
                files = self.upload_fill(live, files, f"growth_{projects}_fill")
        self.server.publish(root, files)
        if not files:
            return
        with running(self.server, root, self.work) as live:
            self.result.figures[f"growth_{projects}_cold_start_s"] = live.ready_seconds
            result = self.wrk(live, self.page_paths(files), f"growth_{projects}")
        print(f"  [{self.server.name}] {projects} projects: {result.per_second:.0f} req/s")
        shutil.rmtree(root, ignore_errors=True)


def large_transfers(
    server: Server, live: RunningServer, large: CorpusFile, result: Measurement
) -> None:
    """One upload of `large`, then `DOWNLOADS` downloads of it: the large-file figures."""
    fig = result.figures
    with PeakRss(live.pids()) as peak, server_cpu(live) as cpu:
        up = upload_one_large(live.endpoint, server.upload_request(large), large)
    if not 200 <= up.status < 300:
        result.note(f"large upload answered {up.status or 'nothing'}")
        return
    fig["large_upload_s"], fig["large_upload_mb_s"] = up.seconds, up.mb_per_second
    fig["large_upload_peak_rss_mib"] = peak.peak / MIB
    fig["large_upload_cpu_s"] = cpu.seconds
    downloads = [
        download(live.endpoint, server.file_path(large), server.read_auth) for _ in range(DOWNLOADS)
    ]
    bad = [d for d in downloads if d.status != 200 or d.size != large.size]
    if bad:
        result.note(f"large download: {bad[0].status}, {bad[0].size} of {large.size} B")
        return
    fig["large_download_mb_s"] = statistics.median(d.mb_per_second for d in downloads)


def measure(
    server: Server,
    work: Path,
    settings: Settings,
    corpus: Corpus,
    large: CorpusFile,
    growth_corpus: Corpus,
    growth: Sequence[int],
) -> Measurement:
    """Every figure for one server; on a failure, the figures so far and a note saying why."""
    run = _Run(server, work, settings)
    try:
        server.install(work)
        run.main(corpus, large)
        for projects in growth:
            run.growth(growth_corpus, projects)
    except HARNESS_ERRORS as error:
        verb = "stopped" if run.result.figures else "skipped"
        run.result.note(f"{verb}: {type(error).__name__}: {error}")
    return run.result
