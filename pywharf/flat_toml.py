"""Fast paths for the TOML that pywharf itself writes: `.meta` sidecars and `index.toml`.

`update_index` reads one sidecar per stored file and writes one `[[pkgs]]` table per file: at a
million files the general parser and writer were 60 % of its time (issue 16). Both fast paths
cover only the plain shapes we write (`key = value` lines of unescaped strings, integers,
floats and booleans, under `[table]` and `[[array]]` headers) and hand anything else to tomllib
and tomli_w, so every result equals theirs (tests/unit/test_flat_toml.py checks it, mutated
inputs included).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

import tomli_w

__all__ = ["dump_flat_toml", "parse_flat_toml"]

# TOML 1.0: a bare key; a basic string without escapes (no quote, backslash or control
# character but tab); a decimal integer without leading zeros or sign; a float with a fraction.
_KEY_VALUE = re.compile(
    r'([A-Za-z0-9_-]+) = (?:"([^"\\\x00-\x08\x0a-\x1f\x7f]*)"'
    r"|(-?(?:0|[1-9][0-9]*)(\.[0-9]+(?:[eE][+-]?[0-9]+)?)?)|(true|false))\Z"
)
_TABLE = re.compile(r"\[([A-Za-z0-9_-]+)\]\Z")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")
_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x08\x0a-\x1f\x7f]')  # what tomli_w escapes


def parse_flat_toml(text: str) -> dict[str, Any] | None:
    """`text` as tomllib reads it, if it is only `key = value` lines (strings without escapes,
    integers, floats, booleans) and top-level `[table]` headers; None for anything else,
    which the caller parses in full."""
    document: dict[str, Any] = {}
    table = document
    for line in text.split("\n"):
        if not line:
            continue
        pair = _KEY_VALUE.match(line)
        if pair is not None:
            key, string, number, fraction, boolean = pair.groups()
            if key in table:
                return None  # a duplicate key: let the full parser refuse it
            if string is not None:
                table[key] = string
            elif number is not None:
                table[key] = float(number) if fraction else int(number)
            else:
                table[key] = boolean == "true"
            continue
        header = _TABLE.match(line)
        if header is None or header[1] in document:
            return None
        table = document[header[1]] = {}
    return document


def dump_flat_toml(document: Mapping[str, Any]) -> str:
    """What `tomli_w.dumps(document)` returns, written directly when the document is plain
    values and arrays of long tables whose values are plain or tables of the same kind."""
    literals = [(k, v) for k, v in document.items() if not isinstance(v, list)]
    arrays = [(k, v) for k, v in document.items() if isinstance(v, list)]
    try:
        chunks = [_lines(literals)]
        for name, tables in arrays:
            # tomli_w writes an empty array, or one of short tables, inline.
            if not any(_inline_length_at_least(t) > _INLINE_AT_MOST for t in tables):
                raise _NotFlat
            chunks.extend(_table(name, table, aot=True) for table in tables)
    except _NotFlat:
        return tomli_w.dumps(document)
    return "\n".join(c for c in chunks if c)


_INLINE_AT_MOST = 100  # tomli_w's MAX_LINE_LENGTH for an inline table


def _inline_length_at_least(table: Any) -> int:
    if not isinstance(table, dict):
        raise _NotFlat
    return sum(len(k) + 3 + len(v) for k, v in table.items() if isinstance(v, str))


class _NotFlat(Exception):
    """The document holds something only tomli_w writes."""


def _table(name: str, table: Any, aot: bool) -> str:
    """One `[[name]]` (or `[name]`) table and its sub-tables, as tomli_w writes them."""
    if not isinstance(table, dict) or not _bare(name.rpartition(".")[2]):
        raise _NotFlat
    # One pass over the table (a million of them in a rebuild's index.toml): its values, then
    # its sub-tables, which tomli_w writes after them. `_value` refuses arrays: tomli_w's
    # choices about arrays and headerless tables are its own.
    chunks = [f"[[{name}]]\n" if aot else f"[{name}]\n"]
    tables = []
    for key, value in table.items():
        if isinstance(value, dict):
            tables.append((key, value))
        elif _bare(key):
            chunks.append(f"{key} = {_value(value)}\n")
        else:
            raise _NotFlat
    if len(chunks) == 1:
        raise _NotFlat
    text = "".join(chunks)
    if not tables:
        return text
    return "\n".join([text, *(_table(f"{name}.{k}", v, aot=False) for k, v in tables)])


def _lines(pairs: list[tuple[str, Any]]) -> str:
    if not all(_bare(key) for key, _ in pairs):
        raise _NotFlat
    return "".join(f"{key} = {_value(value)}\n" for key, value in pairs)


@functools.lru_cache(maxsize=1024)
def _bare(key: str) -> bool:
    """Keys repeat in every table: checked once each."""
    return _BARE_KEY.match(key) is not None


def _value(value: Any) -> str:
    if isinstance(value, str):
        if _NEEDS_ESCAPE.search(value) is None:
            return f'"{value}"'
        return tomli_w.dumps({"v": value})[4:-1]  # its escapes, exactly
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    raise _NotFlat
