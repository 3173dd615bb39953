"""Project search: ranking by exact name, prefix, substring, then summary; exact counts."""

from __future__ import annotations

import pytest

from pywharf.search import SearchCorpus
from pywharf.search import normalize_query

PROJECTS = [
    ("requests", "HTTP for Humans."),
    ("requests-toolbelt", "A utility belt for requests"),
    ("types-requests", "Typing stubs for requests"),
    ("httpx", "The next generation HTTP client."),
    ("flask", "A simple framework for building complex web applications."),
    ("my.weird_name", "nothing to see"),
]


@pytest.mark.parametrize(
    ("query", "exact", "prefix", "substring", "summary"),
    [
        ("requests", ["requests"], ["requests-toolbelt"], ["types-requests"], []),
        ("REQUESTS", ["requests"], ["requests-toolbelt"], ["types-requests"], []),
        ("http", [], ["httpx"], [], ["requests"]),
        ("Humans", [], [], [], ["requests"]),
        ("my_weird.name", [], [], [], []),  # the corpus holds normalized names only
        ("web applications", [], [], [], ["flask"]),
        ("nomatch", [], [], [], []),
        (".*", [], [], [], []),  # a query is text, never a pattern
    ],
)
def test_ranking(
    query: str, exact: list[str], prefix: list[str], substring: list[str], summary: list[str]
) -> None:
    found = SearchCorpus(PROJECTS).search(query)
    assert (found.exact, found.prefix, found.substring, found.summary) == (
        exact, prefix, substring, summary,
    )  # fmt: skip
    assert found.total == len(exact + prefix + substring + summary)
    assert found.ranked() == [*exact, *prefix, *substring, *summary]


def test_a_name_matches_once_at_its_best_rank() -> None:
    found = SearchCorpus([("demo", "a demo"), ("demo-x", "demo things")]).search("demo")
    assert found.ranked() == ["demo", "demo-x"]


def test_an_empty_query_lists_every_project_in_order() -> None:
    corpus = SearchCorpus([("b", ""), ("a", "")])
    assert corpus.search("  ").substring == ["a", "b"]
    assert len(corpus) == 2


def test_a_summary_with_newlines_or_tabs_is_searched_as_one_line() -> None:
    found = SearchCorpus([("x", "first\nsecond\tthird")]).search("second third")
    assert found.summary == ["x"]


@pytest.mark.parametrize(
    ("text", "normalized"),
    [("Foo_Bar", "foo-bar"), ("a..b", "a-b"), ("  x  ", "x"), ("A B", "a-b")],
)
def test_normalize_query(text: str, normalized: str) -> None:
    assert normalize_query(text) == normalized
