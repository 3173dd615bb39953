"""The dependency rules of STYLE.md, read from the source with `ast` (nothing is imported).

* Only `server.py` imports `http.server`; only `pywharf/clients/*` import urllib3.
* Clients know nothing of pywharf: they raise their own errors, which a backend maps at its edge.
* Pure modules import only the stdlib (minus sockets, servers, processes and the file-system
  shell), `packaging`, and each other.
* The app does not know the server; backends know nothing of HTTP or HTML.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from support import REPO

PACKAGE = REPO / "pywharf"
PURE = (
    "errors", "dists", "multipart", "http", "simple", "index", "auth", "pages", "metadata",
    "routes", "upstream_page", "search", "metrics", "web_pages", "tokens", "oidc",
    "provenance",
)  # fmt: skip
# What a pure module may not touch: the network, servers, processes, signals, file locks.
SHELL_STDLIB = {
    "socket", "socketserver", "http.server", "http.client", "ssl", "select", "selectors",
    "asyncio", "urllib.request", "subprocess", "multiprocessing", "signal", "fcntl", "shutil",
    "tempfile", "mmap", "wsgiref", "xmlrpc", "ftplib", "smtplib",
}  # fmt: skip
THIRD_PARTY_ALLOWED_IN_PURE = {"packaging"}


def module_name(path: Path, root: Path = REPO) -> str:
    relative = path.relative_to(root).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(dotted: str, root: Path) -> bool:
    """Whether `a.b.c` names a module or package of ours under `root` (not a class or function)."""
    path = root.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(path: Path, root: Path = REPO) -> set[str]:
    """Every module a file imports, anywhere in it (functions too), as absolute dotted names."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module_name(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module or ""
            found.add(stem)
            for alias in node.names:  # `from pywharf import multipart` imports a module
                dotted = f"{stem}.{alias.name}"
                if not stem.startswith("pywharf") or _is_module(dotted, root):
                    found.add(dotted)
    found.discard("__future__")
    return found


def _is_shell(module: str) -> bool:
    return any(module == s or module.startswith(s + ".") for s in SHELL_STDLIB)


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def importers_of(target: str) -> set[str]:
    return {
        module_name(path)
        for path in sources()
        if any(name == target or name.startswith(target + ".") for name in imports_of(path))
    }


def test_the_parser_sees_every_kind_of_import(tmp_path: Path) -> None:
    package = tmp_path / "pywharf"
    package.mkdir()
    for name in ("__init__", "errors", "index"):
        (package / f"{name}.py").write_text("")
    sample = package / "sample.py"
    sample.write_text(
        "import socket\nimport os.path as p\nfrom . import errors\nfrom .index import Index\n"
        "from http import server\ndef f():\n    import urllib3.util\n"
    )
    found = imports_of(sample, root=tmp_path)
    assert {"socket", "os.path", "pywharf.errors", "pywharf.index", "http.server"} <= found
    assert "urllib3.util" in found
    assert "pywharf.index.Index" not in found


def test_there_is_source_to_check() -> None:
    names = {module_name(p) for p in sources()}
    assert {f"pywharf.{m}" for m in PURE} <= names
    assert "pywharf.server" in names
    assert {"pywharf.clients.errors", "pywharf.clients.github"} <= names


def test_only_server_imports_http_server() -> None:
    assert importers_of("http.server") <= {"pywharf.server"}


def test_only_clients_import_urllib3() -> None:
    outside = {m for m in importers_of("urllib3") if not m.startswith("pywharf.clients")}
    assert outside == set()


@pytest.mark.parametrize("path", sorted((PACKAGE / "clients").glob("*.py")), ids=lambda p: p.name)
def test_clients_import_nothing_of_pywharf_but_each_other(path: Path) -> None:
    """No `pywharf.errors` either: a client raises its own family (urllib3's way)."""
    ours = {m for m in imports_of(path) if m.split(".")[0] == "pywharf" and m != "pywharf"}
    wrong = {m for m in ours if not m.startswith("pywharf.clients")}
    assert wrong == set(), f"{module_name(path)} imports {sorted(wrong)}"


@pytest.mark.parametrize("name", PURE)
def test_pure_modules_import_only_the_stdlib_packaging_and_each_other(name: str) -> None:
    imported = imports_of(PACKAGE / f"{name}.py")
    pure = {f"pywharf.{m}" for m in PURE}
    wrong = set()
    for module in imported:
        top = module.split(".")[0]
        if top == "pywharf":
            if module != "pywharf" and module not in pure:
                wrong.add(module)
        elif top in THIRD_PARTY_ALLOWED_IN_PURE:
            continue
        elif top not in sys.stdlib_module_names or _is_shell(module):
            wrong.add(module)
    assert wrong == set(), f"pywharf.{name} is pure but imports {sorted(wrong)}"


def test_the_app_does_not_know_the_server() -> None:
    shell = {"pywharf.server", "pywharf.connection", "pywharf.idle", "pywharf.tls"}
    assert not shell & imports_of(PACKAGE / "app.py")
    assert "pywharf.cli" not in imports_of(PACKAGE / "app.py")


def test_the_app_talks_to_the_repository_facade_only() -> None:
    """No `repository.backend`, `.index` or `.renderer` in the app: `Repository` answers."""
    for handlers in ("app.py", "package_api.py", "web.py", "ops.py"):
        tree = ast.parse((PACKAGE / handlers).read_text(encoding="utf-8"))
        reached = {
            node.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr in ("backend", "index", "renderer")
        }
        assert reached == set(), handlers


@pytest.mark.parametrize("path", sorted((PACKAGE / "backends").glob("*.py")), ids=lambda p: p.name)
def test_backends_know_nothing_of_http_or_html(path: Path) -> None:
    imported = imports_of(path)
    forbidden = {
        "pywharf.http", "pywharf.app", "pywharf.server", "pywharf.simple", "pywharf.pages",
        "http.server", "http.client", "html",
    }  # fmt: skip
    assert imported & forbidden == set()


def test_nothing_below_the_cli_imports_it() -> None:
    assert importers_of("pywharf.cli") <= {"pywharf.__main__"}


def test_each_public_name_is_defined_once() -> None:
    """Issue 10: two `Response`, three `Body` and two `Repository` types confused readers; a
    public class, function or type alias now means one thing across the package."""
    places: dict[str, list[str]] = {}
    for path in sources():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            names = []
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
                names = [node.name]
            elif isinstance(node, ast.Assign):  # type aliases: `Event = Union[...]`
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
                names = [n for n in names if n[:1].isupper() and not n.isupper()]
            for name in names:
                if not name.startswith("_"):
                    places.setdefault(name, []).append(module_name(path))
    assert {n: p for n, p in places.items() if len(p) > 1} == {}
