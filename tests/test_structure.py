"""The package's shape, kept by the suite rather than by review: no import cycles (every import counts,
lazy and TYPE_CHECKING ones too), no module reading another module's `_private` names, no file over 500
lines and no function over 80 in dispatcher/, and no cycle in bench/ either. Read from the source with
`ast`, so a newcomer's change that breaks the shape fails here with the file and line to look at."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 80


def modules(package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every module of `package` (a package by its own name)."""
    found = {}
    for f in (ROOT / package).rglob("*.py"):
        parts = list(f.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = f
    return found


def absolute(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute module a `from ... import` names, as Python resolves the dots."""
    if level == 0:
        return name or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def imports(module: str, path: Path, known: dict[str, Path]) -> tuple[set[str], list[str]]:
    """The known modules `module` imports, and its uses of another module's private names."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    private: list[str] = []
    bound: set[str] = set()  # local names bound to one of the known modules
    root = module.split(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == root:
                    targets.add(a.name)
                    if a.asname:
                        bound.add(a.asname)
        elif isinstance(node, ast.ImportFrom):
            target = absolute(module, is_package, node.level, node.module)
            if target.split(".")[0] != root:
                continue
            for a in node.names:
                full = f"{target}.{a.name}"
                if full in known:
                    targets.add(full)
                    bound.add(a.asname or a.name)
                    continue
                targets.add(target)
                if a.name.startswith("_") and not a.name.startswith("__") and target != module:
                    private.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {a.name} from {target}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound \
                and node.attr.startswith("_") and not node.attr.startswith("__"):
            private.append(f"{path.relative_to(ROOT)}:{node.lineno} reads {node.value.id}.{node.attr}")
    return {t for t in targets if t in known and t != module}, private


def cycles(known: dict[str, Path]) -> list[list[str]]:
    """Strongly connected groups of modules (Tarjan). A package's __init__ handing on its own
    submodules, or a submodule importing its package, is not counted as a cycle."""
    graph = {}
    for m, path in known.items():
        targets, _ = imports(m, path, known)
        graph[m] = {t for t in targets
                    if not (known[m].name == "__init__.py" and t.startswith(m + "."))
                    and not (known[t].name == "__init__.py" and m.startswith(t + "."))}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while (w := stack.pop()) != v:
                group.append(w)
            group.append(v)
            if len(group) > 1:
                groups.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return groups


@pytest.mark.parametrize("package", ["dispatcher", "bench"])
def test_no_import_cycles(package: str) -> None:
    found = cycles(modules(package))
    assert not found, "\n".join(" <-> ".join(c) for c in found)


def test_no_private_names_across_modules() -> None:
    known = modules("dispatcher")
    found = [p for m, path in known.items() for p in imports(m, path, known)[1]]
    assert not found, "\n".join(found)


def test_files_and_functions_stay_small() -> None:
    too_long = []
    for path in modules("dispatcher").values():
        src = path.read_text(encoding="utf-8")
        rel = path.relative_to(ROOT)
        if src.count("\n") > MAX_FILE_LINES:
            too_long.append(f"{rel}: {src.count(chr(10))} lines")
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    too_long.append(f"{rel}:{node.lineno} {node.name}: {n} lines")
    assert not too_long, "\n".join(too_long)


DDL = re.compile(r"CREATE\s+TABLE\s+(IF\s+NOT\s+EXISTS\s+)?[\w.{}\"]+\s*\(")


def copied_ddl(src: str) -> list[str]:
    """Docstrings holding a CREATE TABLE statement: a second copy of a schema, which drifts from the one that
    runs (the statement belongs in its migration, its column notes as SQL comments there)."""
    found = []
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)
            if doc and DDL.search(doc):
                found.append(f"{getattr(node, 'name', '(module)')}")
    return found


def test_no_schema_copied_into_a_docstring() -> None:
    found = [f"{path.relative_to(ROOT)}: {where}" for path in modules("dispatcher").values()
             for where in copied_ddl(path.read_text(encoding="utf-8"))]
    assert not found, "\n".join(found)
    assert copied_ddl('"""The table::\n\n    CREATE TABLE t (\n        id bigint\n    );\n"""') == ["(module)"]


def test_the_checks_see_a_cycle_and_a_private_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scan itself can fail: a two-module cycle and a private read are both found."""
    pkg = tmp_path / "demo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\nx = b._hidden\n")
    (pkg / "b.py").write_text("def f():\n    from .a import x\n    return x\n_hidden = 1\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    known = modules("demo")
    assert cycles(known) == [["demo.a", "demo.b"]]
    assert imports("demo.a", known["demo.a"], known)[1] == ["demo/a.py:2 reads b._hidden"]
