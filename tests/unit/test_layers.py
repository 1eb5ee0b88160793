"""The import graph, checked: no cycles, and each layer imports only what is below it.

Pure domain (models, policy, risk, the gate, presentation) imports nothing with I/O; workflows
import the domain only; activities and stores import the domain; the worker wires; CLI and API
are entry points on top. Read from the source with `ast`, so it needs nothing installed.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).parents[2]
# workflows/, activities/ and worker/ are reached through their links inside interlock/.
PACKAGES = ("interlock",)

DOMAIN = {
    "interlock.models",
    "interlock.policy",
    "interlock.sources",
    "interlock.durations",
    "interlock.risk",
    "interlock.rollout",
    "interlock.facts",
    "interlock.gate",
    "interlock.governance",
    "interlock.presentation",
    "interlock.untrusted",
    "interlock.signing",
    "interlock.contracts",
    "interlock.audit.events",
    "interlock.autonomy",
    "interlock.search",
}
# Libraries that reach a database, a network, a process or a terminal.
IO_LIBRARIES = (
    "httpx", "sqlalchemy", "sqlmodel", "psycopg", "alembic", "ansible_runner", "fastapi", "uvicorn",
    "typer", "rich", "subprocess", "socket", "requests", "temporalio.client", "temporalio.worker",
    "opentelemetry.sdk", "mcp",
)  # fmt: skip


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def python_files(root: Path) -> Iterator[Path]:
    # os.walk, not Path.rglob: it follows the links to the top-level folders.
    for folder, _, files in os.walk(root, followlinks=True):
        yield from (Path(folder) / f for f in files if f.endswith(".py"))


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in python_files(ROOT / package):
            if "migrations" not in path.parts:
                found[module_name(path)] = path
    return found


def imports_of(path: Path, name: str, known: set[str] | frozenset[str] = frozenset()) -> Iterator[str]:
    """Every module `path` imports, at any depth, except under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for child in node.body for n in ast.walk(child))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names]
            # `from pkg import module` imports the module; `from pkg import name`, the package.
            yield from (names if all(n in known for n in names) else [base, *names])


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {
        name: {i for i in imports_of(path, name, set(mods)) if i in mods and i != name}
        for name, path in mods.items()
    }


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_there_is_no_import_cycle() -> None:
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_domain_touches_no_io() -> None:
    mods = modules()
    assert DOMAIN <= set(mods), DOMAIN - set(mods)
    problems = []
    for name in sorted(DOMAIN):
        for imported in imports_of(mods[name], name, set(mods)):
            if imported.startswith(IO_LIBRARIES) or (imported in mods and imported not in DOMAIN):
                problems.append(f"{name} imports {imported}")
    assert problems == []


def test_workflows_import_only_the_domain_and_themselves() -> None:
    edges = graph()
    problems = [
        f"{name} imports {imported}"
        for name in edges
        if name.startswith("interlock.workflows")
        for imported in edges[name]
        if not (imported in DOMAIN or imported.startswith("interlock.workflows"))
    ]
    assert problems == []


def test_activities_and_stores_never_import_the_entry_points() -> None:
    edges = graph()
    top = ("interlock.cli", "interlock.api", "interlock.worker", "interlock.mcp")
    lower = [
        n
        for n in edges
        if n.startswith(("interlock.activities", "interlock.audit.store", "interlock.evidence"))
    ]
    problems = [f"{n} imports {i}" for n in lower for i in edges[n] if i.startswith(top)]
    assert problems == []
