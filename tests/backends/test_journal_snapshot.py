"""The journal's snapshot: used when it matches, ignored when anything does not, and the index it
gives is the one a full replay gives. Replayed lines are counted, not timed: a test that passes
without the snapshot being used is no test of it."""

from __future__ import annotations

import hashlib
import marshal
import os
import threading
from collections.abc import Iterator
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from contract import stage
from factory import make_wheel
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from support import WRITE
from test_file_system import new_backend

from pywharf.backends import IndexUpdate
from pywharf.backends import journal as journal_module
from pywharf.backends.journal import Journal
from pywharf.backends.journal_snapshot import TAG
from pywharf.backends.journal_snapshot import JournalSnapshot
from pywharf.backends.journal_snapshot import decode
from pywharf.backends.journal_snapshot import encode
from pywharf.backends.journal_snapshot import replayed
from pywharf.index import ACTIVE
from pywharf.index import ARCHIVED
from pywharf.index import UPSTREAM
from pywharf.index import Add
from pywharf.index import Delete
from pywharf.index import Event
from pywharf.index import FileRecord
from pywharf.index import Index
from pywharf.index import IndexImage
from pywharf.index import Status
from pywharf.index import Yank


def record(project: str, version: str, sha: str = "a", **fields: Any) -> FileRecord:
    return FileRecord(f"{project}-{version}.tar.gz", project, version, sha * 64, 10,  # type: ignore[arg-type]
                      1_600_000_000.5, **fields)  # fmt: skip


EVENTS: list[Event] = [
    Add(record("alpha", "1.0", requires_python=">=3.9", summary="first")),
    Add(record("alpha", "2.0", "b", metadata_sha256="c" * 64, stored_time=1.25)),
    Add(record("beta", "1.0", "d", origin=UPSTREAM, provenance='{"x": 1}')),
    Yank("alpha", "alpha-2.0.tar.gz", "broken"),  # type: ignore[arg-type]
    Delete("alpha", "alpha-1.0.tar.gz"),  # type: ignore[arg-type]
    Status("beta", ARCHIVED, "moved"),  # type: ignore[arg-type]
    Add(record("gamma", "0.1", "e", yanked="")),
]
MORE: list[Event] = [
    Add(record("delta", "3.0", "f")),
    Delete("beta", "beta-1.0.tar.gz", None, UPSTREAM),  # type: ignore[arg-type]
    Add(record("alpha", "1.0")),  # the tombstone's bytes again
]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return journal_in(tmp_path)


def journal_in(folder: Path) -> Journal:
    (folder / "tmp").mkdir(parents=True, exist_ok=True)
    journal = Journal(folder / "journal.jsonl", folder / "lock", folder / "tmp")
    journal.snapshot_after_bytes = 0  # every whole read that replays a line writes one
    return journal


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many journal lines were parsed (the hook every read goes through)."""
    counts: list[int] = []
    real = journal_module._parse_lines

    def counting(data: bytes) -> tuple[Event, ...]:
        counts.append(len(data.splitlines()))
        return real(data)

    monkeypatch.setattr(journal_module, "_parse_lines", counting)
    yield counts


def append(journal: Journal, events: Sequence[Event]) -> None:
    with journal.locked():
        journal.append(*events)


def state(index: Index) -> tuple[Any, ...]:
    return (*image_state(index.image()), len(index), index.listing.names)


def image_state(image: IndexImage) -> tuple[Any, ...]:
    projects = [(p.name, p.files, p.status, p.hosted, p.mixed) for p in image.projects]
    return projects, image.deleted, image.tombstoned, sorted(image.statuses)


def loaded(update: IndexUpdate | None) -> tuple[Any, ...]:
    assert update is not None and update.replace
    index = Index()
    index.replace_all(update.events, update.base)
    return state(index)


def replay(events: list[Event]) -> tuple[Any, ...]:
    index = Index()
    index.replace_all(events)
    return state(index)


def test_a_whole_read_writes_a_snapshot_and_the_next_replays_only_the_tail(
    journal: Journal, parsed: list[int]
) -> None:
    append(journal, EVENTS)
    first = journal.read(None)
    assert journal.snapshot_path.is_file()
    assert first is not None and first.base is not None and first.events == ()
    assert loaded(first) == replay(EVENTS)
    append(journal, MORE)
    parsed.clear()
    again = journal.read(None)
    assert sum(parsed) == len(MORE)  # the snapshot's lines were not parsed again
    assert loaded(again) == replay(EVENTS + MORE)
    assert again is not None and journal.read(again.cursor) is None  # its cursor is current


def test_a_tail_below_the_threshold_is_replayed_and_no_snapshot_written(
    journal: Journal, parsed: list[int]
) -> None:
    append(journal, EVENTS)
    journal.read(None)
    written = journal.snapshot_path.read_bytes()
    append(journal, MORE)
    journal.snapshot_after_bytes = 1 << 20
    update = journal.read(None)
    assert update is not None and update.base is not None
    assert list(update.events) == MORE
    assert journal.snapshot_path.read_bytes() == written
    journal.snapshot_after_bytes = 0
    parsed.clear()
    assert loaded(journal.read(None)) == replay(EVENTS + MORE)  # replays MORE, writes anew
    assert sum(parsed) == len(MORE)
    parsed.clear()
    assert loaded(journal.read(None)) == replay(EVENTS + MORE)
    assert sum(parsed) == 0


def damaged(data: bytes) -> list[bytes]:
    body = len(TAG) + 32
    flipped = bytearray(data)
    flipped[body + 5] ^= 0x40
    digest = bytearray(data)
    digest[len(TAG)] ^= 1
    return [
        bytes(flipped),
        bytes(digest),
        data[: len(data) // 2],
        data[:-1],
        data[: len(TAG)],
        b"",
        b"pywharf journal snapshot 0" + data[len(TAG) - 1 :],  # an older format
        data.replace(b"13 record fields", b"14 record fields", 1),  # a wider record
        b"\x80\x04\x95 a pickle is never loaded",
    ]


@pytest.mark.parametrize("case", range(len(damaged(b"x" * 200))))
def test_a_damaged_or_foreign_snapshot_is_ignored(
    journal: Journal, parsed: list[int], case: int
) -> None:
    append(journal, EVENTS)
    journal.read(None)
    journal.snapshot_path.write_bytes(damaged(journal.snapshot_path.read_bytes())[case])
    append(journal, MORE)
    parsed.clear()
    assert loaded(journal.read(None)) == replay(EVENTS + MORE)
    assert sum(parsed) == len(EVENTS + MORE)  # every line replayed
    assert decode(journal.snapshot_path.read_bytes()) is not None  # and a good one written


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_no_single_flipped_bit_or_cut_is_loaded(cut: int, bit: int) -> None:
    image = replayed(None, EVENTS)
    data = b"".join(encode(JournalSnapshot(123, b"h" * 32, image)))
    at = cut % len(data)
    flipped = bytearray(data)
    flipped[at] ^= 1 << bit
    assert decode(bytes(flipped)) is None
    assert decode(data[:at]) is None
    whole = decode(data)
    assert whole is not None and whole[:2] == (123, b"h" * 32)
    assert image_state(whole.image) == image_state(image)


def raw_snapshot(*values: Any) -> bytes:
    """A snapshot file of these marshalled chunks, with a good tag and checksum."""
    parts = []
    for value in values:
        chunk = marshal.dumps(value, 4)
        parts += [len(chunk).to_bytes(4, "big"), chunk]
    body = b"".join(parts)
    return TAG + hashlib.sha256(body).digest() + body


RECORD = tuple(record("aa", "1.0"))
HEAD: tuple[Any, ...] = (0, b"h" * 32, 1, {}, (), ())
PROJECTS = (("aa", None, (RECORD,)),)


@pytest.mark.parametrize(
    "chunks",
    [
        [HEAD, ((123, None, (RECORD,)),)],
        [HEAD, (("aa", None, (RECORD[:5],)),)],
        [HEAD, (("aa", None, ()),)],
        [HEAD, (("aa", ("aa",), (RECORD,)),)],
        [(0, b"short", 1, {}, (), ()), PROJECTS],
        [(0, b"h" * 32, 2, {}, (), ()), PROJECTS],
        [(0, b"h" * 32, 1, [], (), ()), PROJECTS],
        [(0, b"h" * 32, 1, {}, ()), PROJECTS],
        [HEAD],
        [],
    ],
)
def test_a_snapshot_whose_checksum_matches_but_whose_values_do_not_is_ignored(
    chunks: list[Any],
) -> None:
    """What a buggy writer could leave: the loader checks shapes, never trusts them."""
    good = decode(raw_snapshot(HEAD, PROJECTS))
    assert good is not None and good.image.projects[0].files == (RECORD,)
    assert decode(raw_snapshot(*chunks)) is None


@pytest.mark.parametrize("how", ["rewritten", "same length", "longer", "truncated", "emptied"])
def test_a_journal_changed_behind_its_snapshot_is_replayed_whole(
    journal: Journal, parsed: list[int], how: str
) -> None:
    append(journal, EVENTS + MORE)
    journal.read(None)
    data = journal.path.read_bytes()
    lines = data.splitlines(keepends=True)
    if how == "rewritten":
        replacement = b"".join(lines[2:])
    elif how == "same length":
        replacement = data.replace(b"alpha", b"omega")
    elif how == "longer":
        replacement = data.replace(b"alpha", b"alpha-x")
    elif how == "truncated":
        replacement = b"".join(lines[:3])
    else:
        replacement = b""
    journal.path.write_bytes(replacement)  # in place: the same inode, as a hand edit leaves it
    parsed.clear()
    expected = Index()
    expected.replace_all(journal_module._parse_lines(replacement) if replacement else ())
    parsed.clear()
    assert loaded(journal.read(None)) == state(expected)
    assert sum(parsed) == len(replacement.splitlines())


def test_rebuild_index_leaves_a_snapshot_the_next_start_uses(
    root: Path, tmp_path: Path, parsed: list[int]
) -> None:
    backend = new_backend(root)
    backend.journal.snapshot_after_bytes = 0
    for version in ("1.0", "1.1", "2.0"):
        backend.put(stage(backend, make_wheel(tmp_path, "demo-pkg", version)), WRITE)
    backend.apply_change(Delete("demo-pkg", "demo_pkg-1.1-py3-none-any.whl"), WRITE)  # type: ignore[arg-type]
    full = loaded(backend.read_index(None))
    backend.rebuild_index()
    restarted = new_backend(root)
    parsed.clear()
    update = restarted.read_index(None)
    assert sum(parsed) == 0  # the rewrite's snapshot stands for all of it
    assert loaded(update) == full
    assert restarted.journal.read(update.cursor) is None  # type: ignore[union-attr]


@pytest.mark.parametrize("behind", [True, False])
def test_a_closing_backend_leaves_its_next_start_a_short_tail(
    root: Path, tmp_path: Path, parsed: list[int], behind: bool
) -> None:
    """Uploads since the start are snapshotted at close once they are over the threshold."""
    backend = new_backend(root)
    backend.read_index(None)  # the start: nothing to snapshot yet
    for version in ("1.0", "1.1", "2.0"):
        backend.put(stage(backend, make_wheel(tmp_path, "demo-pkg", version)), WRITE)
    full = loaded(backend.read_index(None))  # below the default threshold: no snapshot
    journal = backend.journal
    assert not journal.snapshot_path.exists()
    journal.snapshot_after_bytes = journal.path.stat().st_size + (0 if behind else 1)
    parsed.clear()
    backend.close()
    assert sum(parsed) == (3 if behind else 0)
    assert journal.snapshot_path.exists() == behind
    parsed.clear()
    assert loaded(new_backend(root).read_index(None)) == full
    assert sum(parsed) == (0 if behind else 3)


def test_a_snapshot_of_a_journal_rewritten_meanwhile_is_not_written(journal: Journal) -> None:
    """A reader that replayed the old journal must not replace the rewrite's snapshot."""
    append(journal, EVENTS)
    old_inode = os.stat(journal.path).st_ino
    journal.rewrite(MORE)
    rewrites = journal.snapshot_path.read_bytes()
    stale = JournalSnapshot(1, b"x" * 32, replayed(None, EVENTS))
    journal._write_snapshot(stale, old_inode)
    assert journal.snapshot_path.read_bytes() == rewrites
    assert loaded(journal.read(None)) == replay(MORE)


def test_servers_sharing_a_root_always_read_a_full_replays_index(tmp_path: Path) -> None:
    """Appends, rewrites and whole reads (each writing snapshots) from several threads, each
    with its own Journal on the same files, as servers sharing a ROOT have."""
    events = [Add(record(f"p{n % 7}", f"{n}.0", "abcdef"[n % 6])) for n in range(120)]
    wrong: list[str] = []

    def appender(part: list[Event]) -> None:
        mine = journal_in(tmp_path)
        for event in part:
            append(mine, [event])

    def rewriter() -> None:
        mine = journal_in(tmp_path)
        for _ in range(5):
            with mine.locked():  # as rebuild_index: the same events, in a new inode
                mine.rewrite(list(journal_module._parse_lines(mine.path.read_bytes())))

    def reader() -> None:
        mine = journal_in(tmp_path)
        for _ in range(15):
            update = mine.read(None)
            assert update is not None
            # Rewrites write the same bytes: what it read is a prefix of the journal now.
            prefix = mine.path.read_bytes()[: update.cursor[1]]
            if loaded(update) != replay(list(journal_module._parse_lines(prefix))):
                wrong.append(f"{update.cursor[1]} bytes")  # pragma: no cover

    append(journal_in(tmp_path), events[:10])
    threads = [threading.Thread(target=appender, args=(events[n::3],)) for n in range(10, 13)]
    threads += [threading.Thread(target=reader) for _ in range(3)]
    threads.append(threading.Thread(target=rewriter))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not wrong
    final = journal_in(tmp_path)
    all_events = list(journal_module._parse_lines(final.path.read_bytes()))
    assert sorted(map(str, all_events)) == sorted(map(str, events))
    assert loaded(final.read(None)) == replay(all_events)
    final.snapshot_path.unlink()
    assert loaded(final.read(None)) == replay(all_events)


NAMES = st.sampled_from(["aa", "bb", "cc"])
VERSIONS = st.sampled_from(["1.0", "2.0"])
SHAS = st.sampled_from("abc")
ADDS = st.builds(lambda p, v, s, o: Add(record(p, v, s, origin=o)), NAMES, VERSIONS, SHAS,
                 st.sampled_from([None, UPSTREAM]))  # fmt: skip
FILENAMES = st.builds(lambda p, v: (p, f"{p}-{v}.tar.gz"), NAMES, VERSIONS)
OTHERS = st.one_of(
    st.builds(lambda f, r: Yank(f[0], f[1], r), FILENAMES, st.sampled_from([None, "", "bad"])),
    st.builds(lambda f, s, o: Delete(f[0], f[1], s and s * 64, o), FILENAMES,
              st.sampled_from([None, "a", "z"]), st.sampled_from([None, UPSTREAM])),
    st.builds(lambda p, s, r: Status(p, s, r), NAMES, st.sampled_from([ACTIVE, ARCHIVED]),
              st.sampled_from([None, "why"])),
)  # fmt: skip
HISTORIES = st.lists(st.one_of(ADDS, ADDS, OTHERS), max_size=25)


@settings(max_examples=80, deadline=None)
@given(history=HISTORIES, cuts=st.lists(st.integers(0, 25), max_size=3))
def test_snapshots_and_tails_give_the_index_a_full_replay_gives(
    tmp_path_factory: pytest.TempPathFactory, history: list[Event], cuts: list[int]
) -> None:
    journal = journal_in(tmp_path_factory.mktemp("journal"))
    done = 0
    for cut in [*sorted(min(c, len(history)) for c in cuts), len(history)]:
        append(journal, history[done:cut])
        done = cut
        if journal.exists():
            assert loaded(journal.read(None)) == replay(history[:done])
    journal.snapshot_path.unlink(missing_ok=True)
    if journal.exists():
        assert loaded(journal.read(None)) == replay(history)
