"""``compress/`` is a library: it never imports the service layers, and its modules import each
other without a cycle.

Every import statement counts, also one inside a function or under ``if TYPE_CHECKING`` (an import
made at call time is still a dependency, and a cycle through one is still a cycle), and so does
``importlib.import_module("...")`` with a literal name. The source is read with ``ast``; nothing
is imported to check it. The last tests run the same checks on small packages written to a
temporary directory, to show that each check fails on what it is meant to catch.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = "compress"
# Top-level names compress/ must not import: the web, database and queue layers and our own.
FORBIDDEN = ("fastapi", "starlette", "sqlalchemy", "sqlmodel", "celery", "kombu", "store", "api", "worker")


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of ``package`` under ``root``."""
    files = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path
    return files


def imports_in(path: Path, module: str) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of everything ``path`` imports, anywhere in the file.

    ``from a.b import c`` yields ``a.b.c``: a submodule, or a name defined in ``a.b`` (the module it
    belongs to is the longest prefix that is a module). Relative imports are resolved against ``module``.
    """
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"
        elif (
            isinstance(node, ast.Call)
            and (getattr(node.func, "attr", None) or getattr(node.func, "id", None)) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def forbidden_imports(root: Path, package: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for module, path in module_files(root, package).items():
        for line, name in imports_in(path, module):
            if name.split(".")[0] in forbidden:
                found.append(f"{path.relative_to(root)}:{line} imports {name}")
    return sorted(set(found))


def import_graph(root: Path, package: str) -> dict[str, dict[str, int]]:
    """module -> {module of the same package it imports: line of the first such import}."""
    files = module_files(root, package)
    graph: dict[str, dict[str, int]] = {module: {} for module in files}
    for module, path in files.items():
        for line, name in imports_in(path, module):
            parts = name.split(".")
            while parts and ".".join(parts) not in files:
                parts.pop()
            target = ".".join(parts)
            if target and target != module:
                graph[module].setdefault(target, line)
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """A shortest cycle through each module that is on a cycle and not on one already listed, as
    [a, b, ..., a]."""

    def path(start: str, goal: str) -> list[str] | None:
        """A shortest import chain start -> ... -> goal (breadth first)."""
        previous: dict[str, str] = {}
        frontier = [start]
        while frontier:
            next_frontier = []
            for node in frontier:
                for target in sorted(graph[node]):
                    if target == goal:
                        chain = [goal, node]
                        while chain[-1] != start:
                            chain.append(previous[chain[-1]])
                        return chain[::-1]
                    if target not in previous and target != start:
                        previous[target] = node
                        next_frontier.append(target)
            frontier = next_frontier
        return None

    found, seen = [], set()
    for module in sorted(graph):
        if module in seen:
            continue
        chain = path(module, module)
        if chain:
            found.append(chain)
            seen.update(chain)
    return found


def describe(chain: list[str], graph: dict[str, dict[str, int]]) -> str:
    return " -> ".join(f"{a} (line {graph[a][b]})" for a, b in zip(chain, chain[1:], strict=False)) + f" -> {chain[-1]}"


def test_compress_imports_no_web_database_or_queue_layer() -> None:
    found = forbidden_imports(ROOT, LIBRARY, FORBIDDEN)
    assert not found, "compress/ must run without the service layers:\n" + "\n".join(found)


def test_compress_has_no_import_cycle() -> None:
    graph = import_graph(ROOT, LIBRARY)
    assert len(graph) > 20 and graph["compress.persistence"]  # the walk found the package and its imports
    found = cycles(graph)
    assert not found, "import cycles inside compress/:\n" + "\n".join(describe(c, graph) for c in found)


# -- the checks catch what they are for -----------------------------------------------------------


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "lib" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_forbidden_import_inside_a_function_is_found(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "clean.py": "import torch\nfrom lib import other\n",
            "other.py": "def f():\n    from store.tables import Job\n    return Job\n",
            "lazy.py": "import importlib\n\ndef g():\n    return importlib.import_module('celery.app')\n",
        },
    )
    assert forbidden_imports(root, "lib", FORBIDDEN) == [
        "lib/lazy.py:4 imports celery.app",
        "lib/other.py:2 imports store.tables.Job",
    ]


def test_cycle_through_a_function_level_and_a_relative_import_is_found(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from lib.b import x\n",
            "b.py": "def x():\n    from . import c\n",
            "c.py": "def y():\n    import lib.a\n",
            "d.py": "from lib import a\n",
            "sub/__init__.py": "from .e import z\n",
            "sub/e.py": "from lib.sub.f import w\nfrom lib.sub import LIMIT\nz = 1\n",
            "sub/f.py": "w = 2\n",
        },
    )
    graph = import_graph(root, "lib")
    assert graph["lib.d"] == {"lib.a": 1} and graph["lib.sub"] == {"lib.sub.e": 1}
    assert graph["lib.sub.e"] == {"lib.sub.f": 1, "lib.sub": 2}  # a name from the package itself
    assert cycles(graph) == [["lib.a", "lib.b", "lib.c", "lib.a"], ["lib.sub", "lib.sub.e", "lib.sub"]]
    assert describe(cycles(graph)[0], graph) == "lib.a (line 1) -> lib.b (line 2) -> lib.c (line 2) -> lib.a"
