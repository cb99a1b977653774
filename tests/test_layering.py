"""The imports follow the data flow (ARCHITECTURE.md): checked here, so that they stay so.

Read from the source with ``ast`` (nothing is imported): the storage knows no HTTP,
the low modules know nothing of the subsystems above them, and no subsystem reaches
into the blueprint's module but the endpoints that add views to it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "flask_consentkit"


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, as absolute dotted names."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):  # imports for type checkers only are no dependency
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)
    return found


def _ours(names: set[str]) -> set[str]:
    return {n for n in names if n.startswith("flask_consentkit")}


def _modules(*relative: str) -> list[Path]:
    paths: list[Path] = []
    for rel in relative:
        target = PACKAGE / rel
        paths.extend(sorted(target.rglob("*.py")) if target.is_dir() else [target])
    return paths


#: what the storage may use of the package: itself and the plain data types
STORAGE_MAY_USE = ("flask_consentkit.ledger", "flask_consentkit.categories",
                   "flask_consentkit.errors", "flask_consentkit.notice",
                   "flask_consentkit._compat", "flask_consentkit.configkeys")


@pytest.mark.parametrize("path", _modules("ledger"), ids=lambda p: p.name)
def test_the_storage_knows_no_http(path: Path) -> None:
    names = _imports(path)
    web = {n for n in names if n.split(".")[0] in ("flask", "werkzeug", "jinja2")}
    assert not web, f"{path.name} imports {sorted(web)}: the ledger is storage only"
    outside = {n for n in _ours(names) if not n.startswith(STORAGE_MAY_USE)}
    assert not outside, f"{path.name} imports {sorted(outside)}"


@pytest.mark.parametrize("name", ["categories.py", "urls.py", "notice.py", "jsonbody.py",
                                  "vendors.py", "csp.py", "_compat.py", "errors.py",
                                  "appstate.py", "responses.py"])
def test_the_low_modules_know_nothing_above_them(name: str) -> None:
    above = ("flask_consentkit.extension", "flask_consentkit.views", "flask_consentkit.banner",
             "flask_consentkit.gating", "flask_consentkit.ledger", "flask_consentkit.policy",
             "flask_consentkit.state", "flask_consentkit.cli", "flask_consentkit.regions")
    found = {n for n in _ours(_imports(PACKAGE / name)) if n.startswith(above)}
    assert not found, f"{name} imports {sorted(found)}"


def test_only_the_endpoints_reach_into_the_blueprints_module() -> None:
    allowed = {"extension.py", "rights.py", "receipts.py", "views.py",
               # a decision's page path and the banner's links are made safe the same way
               "banner.py", "regions.py", "recording.py"}
    for path in _modules("."):
        if path.name in allowed or "cli" in path.parts:
            continue
        found = {n for n in _imports(path) if n.startswith("flask_consentkit.views")}
        assert not found, f"{path.relative_to(PACKAGE)} imports {sorted(found)}"


def test_no_subsystem_imports_the_extension_object() -> None:
    """The subsystems read the per-app state from ``appstate`` and the response helpers
    from ``responses``; ``extension`` imports them (to wire them), never the reverse."""
    for path in _modules("."):
        if path.name == "extension.py" or path == PACKAGE / "__init__.py":
            continue
        found = {n for n in _imports(path) if n.startswith("flask_consentkit.extension")}
        assert not found, f"{path.relative_to(PACKAGE)} imports {sorted(found)}"


def _module_graph() -> dict[str, set[str]]:
    """Module → the package's modules it imports (lazily too; not for type checkers)."""
    modules: dict[str, Path] = {}
    for path in _modules("."):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        for imported in _ours(_imports(path)):
            while imported and imported not in modules:  # a name in a module
                imported = imported.rpartition(".")[0]
            if imported and imported != name and not name.startswith(imported + "."):
                deps.add(imported)
        graph[name] = deps
    return graph


def test_the_modules_import_each_other_one_way() -> None:
    """No cycle in the imports, lazy ones included (a package imports its own modules:
    that edge does not count back)."""
    graph = _module_graph()
    done: set[str] = set()

    def walk(name: str, path: list[str]) -> None:
        if name in path:
            cycle = path[path.index(name):] + [name]
            raise AssertionError("import cycle: " + " → ".join(cycle))
        if name in done:
            return
        for dep in sorted(graph[name]):
            walk(dep, [*path, name])
        done.add(name)

    for name in sorted(graph):
        walk(name, [])
