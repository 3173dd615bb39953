"""The `>>>` examples in pywharf's docstrings run: an example that no longer holds fails here."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import pywharf

# `python -m pywharf` runs the command line on import: it has no examples to run.
MODULES = sorted(
    module.name
    for module in pkgutil.walk_packages(pywharf.__path__, "pywharf.")
    if not module.name.endswith(".__main__")
)


@pytest.mark.parametrize("name", ["pywharf", *MODULES])
def test_the_examples_hold(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed (above)"


def test_the_examples_are_found() -> None:
    """Guards the walk above: the modules known to carry examples are among those run."""
    finder = doctest.DocTestFinder()
    with_examples = {
        name
        for name in MODULES
        if any(test.examples for test in finder.find(importlib.import_module(name)))
    }
    assert {"pywharf.dists", "pywharf.multipart", "pywharf.clients.github_models"} <= with_examples
