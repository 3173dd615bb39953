"""The TOML fast paths give exactly what tomllib reads and tomli_w writes, or step aside."""

from __future__ import annotations

import json
import random
import sys
from typing import Any

import pytest
import tomli_w
from packaging.utils import NormalizedName

from pywharf.flat_toml import dump_flat_toml
from pywharf.flat_toml import parse_flat_toml
from pywharf.index import FileRecord
from pywharf.remote_index import index_parts

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SHA = "6368d2e5ced321582731dd10b96701a2d1fbe0b35ca00dd628a12029f72614db"
RECORD = {"filename": "demo-1.0-py3-none-any.whl", "project": "demo", "version": "1.0",
          "sha256": SHA, "size": 44, "upload_time": 1700000000.25,
          "requires_python": ">=3.9"}  # fmt: skip
SIDECAR = {"name": "demo", "version": "1.0", "filetype": "bdist_wheel", "distrib": "demo",
           "sha256": SHA, "pywharf": RECORD}  # fmt: skip
ODD_VALUES: list[Any] = [
    'a "quoted" reason',
    "back\\slash",
    "tab\there",
    "new\nline",
    "\x7f",
    "\x01",
    "héllo ✓",
    "",
    -3,
    0,
    2**70,
    -0.5,
    1e300,
    float("inf"),
    True,
    False,
    json.dumps({"attestations": [{"kind": "x"}]}),
]


def _sidecars() -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = [SIDECAR, RECORD, {}]
    for value in ODD_VALUES:
        documents.append({**SIDECAR, "pywharf": {**RECORD, "yanked": value}})
        documents.append({**SIDECAR, "summary": value})
    return documents


@pytest.mark.parametrize("document", _sidecars())
def test_a_sidecar_reads_as_tomllib_reads_it(document: dict[str, Any]) -> None:
    text = tomli_w.dumps(document)
    assert tomllib.loads(text) == document
    fast = parse_flat_toml(text)
    assert fast is None or fast == document


def test_a_plain_sidecar_takes_the_fast_path() -> None:
    assert parse_flat_toml(tomli_w.dumps(SIDECAR)) == SIDECAR


@pytest.mark.parametrize(
    "text",
    ["a = 1\na = 2\n", "[t]\n[t]\n", "t = 1\n[t]\n", "a = 01\n", "a = 1.\n", "a = +1\n",
     "a = 1e5\n", 'a = "x" # c\n', "a = [1]\n", "a.b = 1\n", 'a = "\\u0041"\n',
     "a = 1\r\n", " a = 1\n", "a=1\n", "[[t]]\nb = 1\n", "a = inf\n", "a = True\n"],
)  # fmt: skip
def test_anything_else_is_left_to_tomllib(text: str) -> None:
    assert parse_flat_toml(text) is None


def test_mutated_sidecars_read_as_tomllib_reads_them_or_not_at_all() -> None:
    generator = random.Random(16)
    base = tomli_w.dumps({**SIDECAR, "summary": "x", "count": 7, "flag": True})
    alphabet = '"\\= []._-+e01#\n\t\r\x7fé5aT'
    taken = 0
    for _ in range(5000):
        text = list(base)
        for _ in range(generator.randrange(1, 4)):
            at = generator.randrange(len(text))
            kind = generator.randrange(3)
            if kind == 0:
                del text[at]
            elif kind == 1:
                text.insert(at, generator.choice(alphabet))
            else:
                text[at] = generator.choice(alphabet)
        mutated = "".join(text)
        fast = parse_flat_toml(mutated)
        if fast is None:
            continue
        taken += 1
        assert tomllib.loads(mutated) == fast, repr(mutated)
    assert taken > 1000  # most mutations stay plain: the property was really exercised


def _index(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"mtime": 1796542418, "pkgs": entries}


def _entry(**meta: Any) -> dict[str, Any]:
    return {"type": "file_system", "distrib": "demo", "package": "demo-1.0-py3-none-any",
            "ext": "whl", "sha256": SHA, "package_path": "/srv/root/demo/demo-1.0.whl",
            "meta": {"name": "demo", "version": "1.0", "sha256": SHA, "size": 44,
                     "upload_time": 1700000000.0, **meta}}  # fmt: skip


DOCUMENTS = [
    _index([_entry(), _entry(requires_python=">=3.9", stored_time=1.5)]),
    _index([_entry(yanked=value) for value in ODD_VALUES]),
    _index([]),
    _index([{"a": 1}]),  # short: written inline
    _index([_entry(), {"a": 1}]),
    {"pkgs": [_entry()], "mtime": 3},  # tomli_w writes the plain values first
    {"mtime": 1, "table": {"a": 1}},
    {"mtime": 1, "pkgs": [_entry(tags=["a", "b"])]},
    {"mtime": 1, "pkgs": [{**_entry(), "meta": {}}]},
    {"mtime": 1, "pkgs": [{**_entry(), "a b": "c"}]},
    {"mtime": (1, 2)},
]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_an_index_is_written_as_tomli_w_writes_it(document: dict[str, Any]) -> None:
    assert dump_flat_toml(document) == tomli_w.dumps(document)


def test_a_plain_index_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = tomli_w.dumps(DOCUMENTS[0])
    monkeypatch.setattr(tomli_w, "dumps", None)
    assert dump_flat_toml(DOCUMENTS[0]) == expected


@pytest.mark.parametrize("count", [0, 1, 999, 1000, 2001])
def test_the_index_written_in_parts_is_the_one_document_tomli_w_writes(count: int) -> None:
    records = [
        FileRecord(f"demo-1.{n}-py3-none-any.whl", NormalizedName("demo"), f"1.{n}", SHA, 44,
                   1700000000.0 + n, ">=3.9" if n % 2 else None, yanked="old" if n % 3 else None)
        for n in range(count)
    ]  # fmt: skip
    locations = {r.filename: {"package_path": f"/srv/demo/{r.filename}"} for r in records}
    parts = list(index_parts(records, 1796542418, "file_system", locations))
    assert len(parts) == 1 + -(-count // 1000)  # never one part per file, nor one in all
    whole = {"mtime": 1796542418, "pkgs": [_index_entry(r, locations) for r in records]}
    assert b"".join(parts).decode() == tomli_w.dumps(whole)


def _index_entry(record: FileRecord, locations: dict[str, dict[str, str]]) -> dict[str, Any]:
    meta = {"name": "demo", "version": record.version, "distrib": "demo",
            "sha256": SHA, "size": 44, "upload_time": record.upload_time}  # fmt: skip
    if record.requires_python:
        meta["requires_python"] = record.requires_python
    if record.yanked is not None:
        meta["yanked"] = record.yanked
    return {"type": "file_system", "distrib": "demo", "package": record.filename[:-4],
            "ext": "whl", "sha256": SHA, **locations[record.filename], "meta": meta}  # fmt: skip
