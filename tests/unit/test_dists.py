"""Filenames and project names: the one function that turns a filename into a `Distribution`."""

from __future__ import annotations

import pytest

from pywharf.dists import Distribution
from pywharf.dists import normalize_project_name
from pywharf.dists import parse_filename
from pywharf.dists import same_version
from pywharf.errors import BadRequest
from pywharf.errors import InvalidFilename

# filename -> (project, version, kind)
WHEELS = {
    "foo-1.0-py3-none-any.whl": ("foo", "1.0", "wheel"),
    "demo_pkg-2.0-py3-none-any.whl": ("demo-pkg", "2.0", "wheel"),
    # PEP 427 build tag: must start with a digit; it is not part of the version.
    "foo-1.0-1-py3-none-any.whl": ("foo", "1.0", "wheel"),
    "foo-1.0-2abc-py3-none-any.whl": ("foo", "1.0", "wheel"),
    # Compressed tag sets, joined by '.'.
    "foo-1.0-py2.py3-none-any.whl": ("foo", "1.0", "wheel"),
    "numpy-2.1.0-cp312-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl": (
        "numpy",
        "2.1.0",
        "wheel",
    ),
    # Readers must accept uppercase and '.' from older files.
    "Foo_Bar-1.0-py3-none-any.whl": ("foo-bar", "1.0", "wheel"),
    "foo.bar-1.0-py3-none-any.whl": ("foo-bar", "1.0", "wheel"),
    "Foo_Bar-1.0-1-py2.py3-none-any.whl": ("foo-bar", "1.0", "wheel"),
    # The version comes out in PEP 440 normal form.
    "foo-1.0rc1-py3-none-any.whl": ("foo", "1.0rc1", "wheel"),
    "foo-1!2.0.post3.dev4-py3-none-any.whl": ("foo", "1!2.0.post3.dev4", "wheel"),
    "foo-1.0+local.1-py3-none-any.whl": ("foo", "1.0+local.1", "wheel"),
}

# (filename, project hint) -> (project, version)
SDISTS = {
    ("foo-1.0.tar.gz", None): ("foo", "1.0"),
    ("foo_bar-2.0.tar.gz", None): ("foo-bar", "2.0"),
    ("foo-1.0.zip", None): ("foo", "1.0"),  # the legacy .zip sdist
    ("foo-1.0.zip", "foo"): ("foo", "1.0"),
    ("foo-1.0.tar.bz2", None): ("foo", "1.0"),
    ("foo-1.0.tgz", None): ("foo", "1.0"),
    ("foo-1.0.tar.xz", None): ("foo", "1.0"),
    ("foo-1.0.tar", None): ("foo", "1.0"),
    # Legacy spellings old tools still upload.
    ("Foo.Bar-1.0.tar.gz", None): ("foo-bar", "1.0"),
    ("Foo.Bar-1.0.tar.gz", "Foo.Bar"): ("foo-bar", "1.0"),
    ("Foo.Bar-1.0.tar.gz", "foo-bar"): ("foo-bar", "1.0"),
    ("Foo-Bar-1.0.tar.gz", None): ("foo-bar", "1.0"),
    ("Foo-Bar-1.0.tar.gz", "foo_bar"): ("foo-bar", "1.0"),
    # A hyphenated post release: with the project known, split at the first fitting '-'
    # (pip's method); without it, PEP 625's rule splits at the last '-'.
    ("foo-1.0-1.tar.gz", "foo"): ("foo", "1.0.post1"),
    ("foo-1.0-1.tar.gz", "FOO"): ("foo", "1.0.post1"),
    ("foo-1.0-1.tar.gz", None): ("foo-1-0", "1"),
    # Versions are normalized; a legacy version is kept as written, never a crash.
    ("foo-1.0.0.tar.gz", None): ("foo", "1.0.0"),
    ("foo-1.01.tar.gz", None): ("foo", "1.1"),
    ("foo-1.0-A.tar.gz", "foo"): ("foo", "1.0a0"),
    ("foo-weird_version.tar.gz", "foo"): ("foo", "weird_version"),
}

# filename -> a fragment the error message must contain (the broken rule or the value)
REJECTED = {
    "": "''",
    ".": "'.'",
    "..": "'..'",
    "../foo-1.0.tar.gz": "foo-1.0.tar.gz",
    "..%2ffoo-1.0.tar.gz": "foo-1.0.tar.gz",
    "a/foo-1.0.tar.gz": "path component",
    "/foo-1.0.tar.gz": "path component",
    "a\\foo-1.0.tar.gz": "path component",
    "foo-1.0.tar.gz/": "path component",
    ".foo-1.0.tar.gz": "foo-1.0.tar.gz",
    "foo-1.0.tar.gz\n": "control",
    "foo\r-1.0.tar.gz": "control",
    "foo\x00-1.0.tar.gz": "control",
    "foo\t-1.0-py3-none-any.whl": "control",
    "foo\x7f-1.0.tar.gz": "control",
    "foo-1.0.exe": "extension",
    "foo-1.0.egg": "extension",
    "foo-1.0.msi": "extension",
    "foo-1.0.rpm": "extension",
    "foo-1.0": "extension",
    "foo-1.0.TAR.GZ": "extension",
    "foo-1.0.tar.gz.": "extension",
    # Wheels: PEP 427 wants 5 or 6 dash-separated parts and a digit-led build tag.
    "foo-1.0.whl": "wheel",
    "foo-py3-none-any.whl": "wheel",
    "foo-1.0-py3-none.whl": "wheel",
    "foo-1.0-x1-py3-none-any.whl": "wheel",
    "foo-1.0-1-2-py3-none-any.whl": "wheel",
    "foo__bar-1.0-py3-none-any.whl": "wheel",
    "foo-not_a_version-py3-none-any.whl": "wheel",
    ".whl": "'.whl'",
    # Sdists: name-version with a valid name and a non-empty version.
    "foo.tar.gz": "sdist",
    "foo-.tar.gz": "sdist",
    "-1.0.tar.gz": "sdist",
    "foo_-1.0.tar.gz": "sdist",
    "fo o-1.0.tar.gz": "sdist",
    "f\u00f6o-1.0.tar.gz": "sdist",
    "x" * 250 + "-1.0.tar.gz": "usable",  # over one path component on every file system
}


@pytest.mark.parametrize(("filename", "expected"), WHEELS.items(), ids=list(WHEELS))
def test_wheel_filenames(filename: str, expected: tuple[str, str, str]) -> None:
    assert parse_filename(filename) == Distribution(filename, *expected)  # type: ignore[arg-type]
    # The project hint never changes a wheel: its name is unambiguous.
    assert parse_filename(filename, project="something-else") == parse_filename(filename)


@pytest.mark.parametrize(
    ("filename", "project", "expected"),
    [(f, p, e) for (f, p), e in SDISTS.items()],
    ids=[f"{f}|{p}" for f, p in SDISTS],
)
def test_sdist_filenames(filename: str, project: str | None, expected: tuple[str, str]) -> None:
    assert parse_filename(filename, project=project) == Distribution(
        filename,
        expected[0],  # type: ignore[arg-type]
        expected[1],
        "sdist",
    )


@pytest.mark.parametrize(
    ("filename", "fragment"), REJECTED.items(), ids=[repr(f) for f in REJECTED]
)
def test_rejected_filenames(filename: str, fragment: str) -> None:
    with pytest.raises(InvalidFilename) as caught:
        parse_filename(filename)
    assert fragment in str(caught.value)
    assert isinstance(caught.value, ValueError)  # invalid input subclasses ValueError
    assert caught.value.status == 400


@pytest.mark.parametrize(
    "filename", [f for f in REJECTED if f], ids=[repr(f) for f in REJECTED if f]
)
def test_rejected_filenames_stay_rejected_with_a_project_hint(filename: str) -> None:
    with pytest.raises(InvalidFilename):
        parse_filename(filename, project="foo")


def test_the_message_quotes_the_value_with_repr() -> None:
    """The message names the value with `{filename!r}`, so control characters stay visible."""
    with pytest.raises(InvalidFilename, match=r"'foo\\n-1\.0\.tar\.gz'"):
        parse_filename("foo\n-1.0.tar.gz")


NAMES = {
    "foo": "foo",
    "Foo": "foo",
    "FOO-bar": "foo-bar",
    "Foo.Bar": "foo-bar",
    "foo__bar": "foo-bar",
    "foo_-_bar": "foo-bar",
    "foo...bar": "foo-bar",
    "a": "a",
    "0": "0",
    "A1.b2_C3-d4": "a1-b2-c3-d4",
    "zope.interface": "zope-interface",
}
BAD_NAMES = [
    "",
    "-foo",
    "foo-",
    ".foo",
    "foo_",
    "foo bar",
    "foo/bar",
    "foo\n",  # the living spec's \Z: `$` would let this through
    "f\u00f6o",
    "foo!",
]


@pytest.mark.parametrize(("name", "normalized"), NAMES.items(), ids=list(NAMES))
def test_normalize_project_name(name: str, normalized: str) -> None:
    assert normalize_project_name(name) == normalized


@pytest.mark.parametrize("name", BAD_NAMES, ids=[repr(n) for n in BAD_NAMES])
def test_normalize_project_name_rejects(name: str) -> None:
    with pytest.raises(BadRequest) as caught:
        normalize_project_name(name)
    assert ascii(name) in str(caught.value)  # reason phrases are Latin-1: quoted as ASCII


@pytest.mark.parametrize(
    ("left", "right", "equal"),
    [
        ("1.0", "1.0.0", True),
        ("1.0", "1.0", True),
        ("1.0.post1", "1.0-1", True),
        ("1.0a0", "1.0-A", True),
        ("1.0", "1.1", False),
        ("weird", "weird", True),
        ("weird", "Weird", False),
        ("1.0", "weird", False),
    ],
)
def test_same_version(left: str, right: str, equal: bool) -> None:
    assert same_version(left, right) is equal
    assert same_version(right, left) is equal
