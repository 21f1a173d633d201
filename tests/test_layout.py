"""The layout, read from the code: folders by job in layers that import only downwards, no circles, rooms of a
readable size, no module name used twice, kronos/ free of Streamlit, pages/ holding only pages."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KRONOS = ROOT / "kronos"
# Lowest first: a module may import its own layer and those below it, never one above.
LAYERS = [
    {"errors", "timeframes", "settings", "cancellation", "process"},  # the root's base modules
    {"schemas"},
    {"data"},
    {"model"},
    {"engine"},
    {"evaluation"},
    {"serving"},
    {"views"},
    {"scan"},
    {"training"},
    {"flows"},
    {"api", "cli", "bench", "__main__"},  # the front ends
]
FRONT_ENDS = {"api", "cli", "bench", "schemas"}  # their modules are named for the feature they serve or shape
MAX_ROOT_MODULES = 8
MAX_LINES = {"module": 350, "class": 150, "function": 60}


def _modules() -> dict[str, Path]:
    found = {}
    for path in KRONOS.rglob("*.py"):
        if "__pycache__" not in path.parts:
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """The kronos modules a file imports, wherever in the file (a lazy import is a dependency too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] == "kronos"}


GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


def _layer(module: str) -> int:
    part = module.split(".")[1]
    for rank, members in enumerate(LAYERS):
        if part in members:
            return rank
    raise AssertionError(f"{module} is in no layer: add its folder to LAYERS")


def test_every_module_has_a_layer_and_imports_only_downwards():
    upward = [f"{name} -> {dep}" for name, deps in GRAPH.items() if name != "kronos" for dep in deps
              if dep == "kronos" or _layer(dep) > _layer(name)]
    assert upward == []


def _circle(graph: dict[str, set[str]]) -> list[str]:
    """The first circle of imports found in `graph`, else []."""
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> list[str]:
        if name in trail:
            return trail[trail.index(name):] + [name]
        if name not in done:
            for dep in sorted(graph.get(name, ())):
                if found := visit(dep, trail + [name]):
                    return found
            done.add(name)
        return []

    return next((found for name in sorted(graph) if (found := visit(name, []))), [])


def test_no_circles():
    assert _circle(GRAPH) == []


def test_the_root_holds_few_modules():
    root = sorted(path.name for path in KRONOS.glob("*.py"))
    assert len(root) <= MAX_ROOT_MODULES, root


def test_no_module_name_twice_outside_the_front_ends():
    stems: dict[str, list[str]] = {}
    for name, path in MODULES.items():
        if path.stem not in ("__init__", "__main__") and name.split(".")[1] not in FRONT_ENDS:
            stems.setdefault(path.stem.rstrip("s"), []).append(name)  # `calibration` and `calibrations` clash too
    assert {stem: names for stem, names in stems.items() if len(names) > 1} == {}


def _oversized(path: Path) -> list[str]:
    text = path.read_text()
    found = [f"{path.name}: {len(text.splitlines())} lines"] if len(text.splitlines()) > MAX_LINES["module"] else []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            kind = "class" if isinstance(node, ast.ClassDef) else "function"
            size = node.end_lineno - min([node.lineno] + [d.lineno for d in node.decorator_list]) + 1
            if size > MAX_LINES[kind]:
                found.append(f"{path.name}: {kind} {node.name} {size} lines")
    return found


@pytest.mark.parametrize("folder", ["kronos", "ui", "pages"])
def test_rooms_of_a_readable_size(folder):
    assert [o for path in sorted((ROOT / folder).rglob("*.py")) for o in _oversized(path)] == []


def test_kronos_knows_nothing_of_streamlit():
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.module}
        assert not imported & {"streamlit", "ui", "pages"}, name


def test_pages_holds_only_the_pages_the_router_lists():
    listed = set(re.findall(r'st\.Page\("(pages/\w+\.py)"', (ROOT / "dashboard.py").read_text()))
    files = {f"pages/{path.name}" for path in (ROOT / "pages").glob("*.py")}
    assert files == listed


def test_the_layer_test_can_fail(tmp_path):
    """The checks above see what they look for: an upward import, a circle and an oversized function."""
    upward = tmp_path / "low.py"
    upward.write_text("from kronos.api import app\n\n\ndef f():\n" + "    x = 1\n" * 70)
    assert _imports(upward) == {"kronos.api.app"}
    assert _layer("kronos.api.app") > _layer("kronos.data.store")
    assert _circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert [o for o in _oversized(upward) if "function f" in o]
