"""The layer rule of src/idrun/ (README, "Layout"), read from every module's AST.

Every module is imported (pkgutil.walk_packages), then its source is read for every
import statement, including the lazy ones inside functions: (a) an import only goes
to a layer the table below allows; (b) no two modules import each other, directly or
round a circle; (c) no module takes another's ``_private`` name. Imports under
``if TYPE_CHECKING:`` are left out: they never run.
"""
import ast
import importlib
import importlib.util
import pkgutil
from pathlib import Path

import pytest

import idrun

# Which layer each module belongs to: the first prefix that matches.
LAYER_OF = [
    ("idrun.errors", "foundation"), ("idrun.keywords", "foundation"),
    ("idrun.jsonout", "foundation"), ("idrun.hints", "foundation"),
    ("idrun.options", "options"),
    ("idrun.mapping", "mapping"),
    ("idrun.system", "system"),
    ("idrun.engine", "engine"),
    ("idrun.cli", "front"), ("idrun.api", "front"), ("idrun.console", "front"),
    ("idrun.__main__", "front"), ("idrun", "front"),
]

# Which layers a layer may import (its own included), and why.
MAY_IMPORT = {
    # the exception family, keyword checks, JSON output: needed by all, need nothing
    "foundation": {"foundation"},
    # pure parsing and range algebra: no side effects, so nothing that makes any
    "mapping": {"foundation", "mapping"},
    # system calls and host facts, read into the mapping layer's types
    "system": {"foundation", "mapping", "system"},
    # the option set: validates its values with ranges (id maps) and caps (names)
    "options": {"foundation", "mapping", "system", "options"},
    # the launch: carries out a plan with the options, through the system layer
    "engine": {"foundation", "options", "mapping", "system", "engine"},
    # the CLI and the API: drive everything below
    "front": {"foundation", "options", "mapping", "system", "engine", "front"},
}


def layer_of(module: str) -> str | None:
    for prefix, layer in LAYER_OF:
        if module == prefix or module.startswith(prefix + "."):
            return layer
    return None


def all_modules() -> dict[str, str]:
    """name -> source of every module of the package, each imported once."""
    out = {"idrun": Path(idrun.__file__).read_text()}
    for info in pkgutil.walk_packages(idrun.__path__, "idrun."):
        if info.name != "idrun.__main__":          # importing it runs the command line
            importlib.import_module(info.name)
        out[info.name] = Path(importlib.util.find_spec(info.name).origin).read_text()
    return out


def _runtime_nodes(tree: ast.AST):
    """Every node, minus the bodies of ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and isinstance(child.test, ast.Name) \
                    and child.test.id == "TYPE_CHECKING":
                stack.extend(child.orelse)
                continue
            stack.append(child)


def imports_of(name: str, source: str, modules: set[str]) -> list[tuple[str, str | None, int]]:
    """(imported module, name taken from it or None, line) for each import in ``name``."""
    is_pkg = any(m.startswith(name + ".") for m in modules) or name == "idrun"
    package = name if is_pkg else name.rpartition(".")[0]
    out = []
    for node in _runtime_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "idrun" or a.name.startswith("idrun."):
                    out.append((a.name, None, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not (target == "idrun" or target.startswith("idrun.")):
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                if sub in modules:
                    out.append((sub, None, node.lineno))
                else:
                    out.append((target, a.name, node.lineno))
    return out


def module_aliases(source: str, name: str, modules: set[str]) -> dict[str, str]:
    """Local names bound to one of the package's modules (``from . import syscalls``)."""
    out = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            for target, taken, _ in imports_of(name, ast.unparse(node), modules):
                if taken is None:
                    leaf = target.rpartition(".")[2]
                    for a in node.names:
                        if a.name == leaf:
                            out[a.asname or a.name] = target
    return out


def upward(sources: dict[str, str]) -> list[str]:
    modules = set(sources)
    bad = []
    for name, src in sources.items():
        mine = layer_of(name)
        for target, _, line in imports_of(name, src, modules):
            theirs = layer_of(target)
            if theirs not in MAY_IMPORT[mine]:
                bad.append(f"{name}:{line} ({mine}) imports {target} ({theirs})")
    return bad


def cycles(sources: dict[str, str]) -> list[list[str]]:
    modules = set(sources)
    graph = {n: sorted({t for t, _, _ in imports_of(n, s, modules) if t != n and t in modules})
             for n, s in sources.items()}
    found, state, path = [], {}, []

    def visit(n: str) -> None:
        state[n] = 1
        path.append(n)
        for t in graph[n]:
            if state.get(t) == 1:
                found.append(path[path.index(t):] + [t])
            elif t not in state:
                visit(t)
        path.pop()
        state[n] = 2
    for n in sorted(graph):
        if n not in state:
            visit(n)
    return found


def private_imports(sources: dict[str, str]) -> list[str]:
    modules = set(sources)
    bad = []
    for name, src in sources.items():
        for target, taken, line in imports_of(name, src, modules):
            if taken and taken.startswith("_") and not taken.startswith("__") and target != name:
                bad.append(f"{name}:{line} takes {target}.{taken}")
        aliases = module_aliases(src, name, modules)
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id in aliases and node.attr.startswith("_") \
                    and not node.attr.startswith("__") and aliases[node.value.id] != name:
                bad.append(f"{name}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    return bad


@pytest.fixture(scope="module")
def sources() -> dict[str, str]:
    return all_modules()


def test_every_module_has_a_layer(sources):
    assert [n for n in sources if layer_of(n) is None] == []
    assert {"idrun.mapping.resolve", "idrun.system.syscalls", "idrun.engine.run",
            "idrun.cli.launcher"} <= set(sources)


def test_imports_only_go_down(sources):
    assert upward(sources) == []


def test_no_import_circle(sources):
    assert cycles(sources) == []


def test_no_private_name_taken_across_modules(sources):
    assert private_imports(sources) == []


def test_the_checks_find_planted_violations(sources):
    """Each check on the real tree plus one planted line: it must say so."""
    planted = dict(sources)
    planted["idrun.mapping.ranges"] += "\ndef _f():\n    from ..engine import run\n"
    (bad,) = upward(planted)
    assert bad.endswith("(mapping) imports idrun.engine.run (engine)"), bad
    planted = dict(sources)
    planted["idrun.engine.owned"] += "\ndef _f():\n    from . import run\n"
    assert any(c[0] == c[-1] and "idrun.engine.owned" in c for c in cycles(planted))
    planted = dict(sources)
    planted["idrun.cli.show"] += "\nfrom ..system.syscalls import _nothing\n"
    planted["idrun.cli.check"] += "\nfrom ..system import syscalls\nsyscalls._x()\n"
    bad = private_imports(planted)
    assert len(bad) == 2 and "idrun.system.syscalls._nothing" in bad[0] + bad[1], bad
    # and TYPE_CHECKING imports never run: not counted
    planted = dict(sources)
    planted["idrun.mapping.ranges"] += "\nif TYPE_CHECKING:\n    from ..engine import run\n"
    assert upward(planted) == []
