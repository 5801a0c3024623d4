"""The shape of the code, read from the source with ``ast`` (nothing is imported but in the last checks):
no import circle between the project's modules (imports inside functions included), the layers of the
README's architecture section, and every third-party package imported is declared in pyproject.toml
(and nothing else is)."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from conftest import REPO_ROOT

PACKAGES = ("trainables", "search_spaces", "tuner", "analysis")


@cache
def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the project's packages."""
    out = {}
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imported_names(name: str, node: ast.AST) -> list[str]:
    """Dotted names an import statement (or ``importlib.import_module`` / ``find_spec`` of a literal
    string) of module ``name`` brings in; ``from a import b`` gives ``a`` and ``a.b``."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level:  # relative: resolved against the module's package
            is_package = modules()[name].name == "__init__.py"
            base = name.split(".")[:len(name.split(".")) - node.level + is_package]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        return [source] + [f"{source}.{alias.name}" for alias in node.names]
    if (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "find_spec")):
        return [node.args[0].value]
    return []


@cache
def imports(name: str) -> tuple[frozenset[str], frozenset[str]]:
    """(every dotted name module ``name`` imports, the ones it imports when it is imported: at module
    level, outside functions, classes and ``if TYPE_CHECKING:``)."""
    tree = ast.parse(modules()[name].read_text(), filename=str(modules()[name]))
    everything, on_import = set(), set()

    def visit(node: ast.AST, top: bool) -> None:
        found = _imported_names(name, node)
        everything.update(found)
        if top:
            on_import.update(found)
        for child in ast.iter_child_nodes(node):
            deeper = top and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef))
            deeper = deeper and not (isinstance(node, ast.If) and _is_type_checking(node))
            visit(child, deeper)

    visit(tree, True)
    return frozenset(everything), frozenset(on_import)


def _project_module(dotted: str) -> str | None:
    """The project module a dotted import name lands in (the longest known prefix)."""
    parts = dotted.split(".")
    while parts and ".".join(parts) not in modules():
        parts.pop()
    return ".".join(parts) if parts else None


def graph(on_import_only: bool = False) -> dict[str, set[str]]:
    """Module -> the project modules it imports."""
    out = {}
    for name in modules():
        names = imports(name)[1 if on_import_only else 0]
        out[name] = {m for m in map(_project_module, names) if m and m != name}
    return out


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
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


def test_the_graph_sees_imports_inside_functions_and_packages():
    edges = graph()
    assert "trainables.tasks" in edges and "search_spaces" in edges  # modules and packages
    assert "trainables.teacher" in edges["trainables.experiment"]
    assert "trainables.assembly" in edges["trainables.teacher"]  # imported inside a function
    assert "trainables.assembly" not in graph(on_import_only=True)["trainables.teacher"]
    assert "tuner.cluster" in edges["tuner.sweep"]  # ``from tuner import cluster``
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circles():
    assert _cycles(graph()) == []


def _importers(edges: dict[str, set[str]], layer: str, imported: str) -> dict[str, list[str]]:
    return {m: sorted(i for i in deps if i == imported or i.startswith(imported + "."))
            for m, deps in edges.items() if m.split(".")[0] == layer
            and any(i == imported or i.startswith(imported + ".") for i in deps)}


def test_layers_point_down():
    """trainables (one run, no Ray but in its trainable) < search_spaces < tuner (sweeps, Ray) and
    analysis (reads the store). analysis knows of tuner only the Ray-free MLflow schema, and
    ``python -m analysis.sensitivity``, the alias of ``python -m tuner.study``."""
    edges = graph()
    for layer, above in {"trainables": ("search_spaces", "tuner", "analysis"),
                         "search_spaces": ("tuner", "analysis")}.items():
        for package in above:
            assert _importers(edges, layer, package) == {}, f"{layer} imports {package}"
    analysis_to_tuner = _importers(edges, "analysis", "tuner")
    allowed = {"analysis.sensitivity": ["tuner", "tuner.study"]}
    assert {m: [i for i in deps if i != "tuner.mlflow_schema"] for m, deps in analysis_to_tuner.items()
            if deps != ["tuner.mlflow_schema"]} == allowed


def _imports_ray(name: str, on_import_only: bool) -> bool:
    return any(i == "ray" or i.startswith("ray.") for i in imports(name)[1 if on_import_only else 0])


def test_ray_stays_in_tuner_and_the_trainable():
    users = {name for name in modules() if _imports_ray(name, on_import_only=False)}
    assert {u for u in users if not u.startswith("tuner.")} == {"trainables.trainable"}


def test_importing_analysis_loads_no_ray():
    """Nothing an analysis module imports when it is imported imports Ray then (the AST's view),
    and importing them all in a fresh interpreter leaves ``ray`` out of ``sys.modules``."""
    edges = graph(on_import_only=True)
    analysis = sorted(m for m in modules() if m.split(".")[0] == "analysis")
    seen, todo = set(), list(analysis)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(edges[name])
    assert sorted(m for m in seen if _imports_ray(m, on_import_only=True)) == []
    code = f"import sys\nfor m in {analysis!r}: __import__(m)\nprint('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


# ---- declared dependencies ----------------------------------------------------------------------

def _normalise(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def declared() -> set[str]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    return {_normalise(re.match(r"[A-Za-z0-9._-]+", spec).group()) for spec in project["dependencies"]}


def third_party_imports() -> dict[str, list[str]]:
    """Top-level name of every imported package outside the standard library and the project ->
    the modules importing it."""
    out: dict[str, list[str]] = {}
    for name in modules():
        for dotted in imports(name)[0]:
            top = dotted.split(".")[0]
            if top and top not in sys.stdlib_module_names and top not in PACKAGES:
                out.setdefault(top, []).append(name)
    return out


def test_every_imported_package_is_declared_and_nothing_else():
    distributions = importlib.metadata.packages_distributions()
    wanted = declared()
    used = set()
    for top, importers in sorted(third_party_imports().items()):
        names = {_normalise(d) for d in distributions.get(top, ())}
        assert names, f"{top} (imported by {sorted(set(importers))}) is not installed"
        assert names & wanted, f"{top} (imported by {sorted(set(importers))}) is not declared: {sorted(names)}"
        used |= names & wanted
    assert wanted - used == set(), "declared in pyproject.toml but imported nowhere"


def test_pyproject_dependencies_parse():
    assert {"torch", "ray", "mlflow", "filelock", "cloudpickle"} <= declared()
    assert json.dumps(sorted(declared()))  # plain names, no extras or versions
