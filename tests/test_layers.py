"""The package reads in layers (docs/architecture.md, README "The package"): every module imports
only from its own layer or below, counting imports inside functions (a stage's code version
follows them), so there is no import cycle; every module has a layer, and the README names the
same layers."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = ROOT / "src" / "odeflows"

# each top-level module or subpackage of odeflows, by layer
LAYERS: dict[int, set[str]] = {
    0: {"registry", "plugins", "rundir", "provenance"},
    1: {"config", "data", "models", "nn", "ode", "tasks", "evidence", "figure_names"},
    2: {"train", "evaluate", "profiling", "tables", "parameter_counts", "figures", "claims",
        "versions"},
    3: {"cli", "api", "audit", "__main__"},
}
LAYER_OF = {name: layer for layer, names in LAYERS.items() for name in names}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts).removesuffix(".__init__")] = path
    return out


def _imports(name: str, path: Path) -> set[str]:
    """Every odeflows module ``name`` imports, at module level or inside a function."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found |= {module} | {f"{module}.{a.name}" for a in node.names}
    return {m for m in found if m == "odeflows" or m.startswith("odeflows.")}


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


MODULES = _modules()


def test_every_module_has_a_layer():
    unplaced = sorted({_top(m) for m in MODULES if _top(m)} - set(LAYER_OF))
    assert not unplaced, f"modules with no layer (add them to LAYERS and the docs): {unplaced}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _top(m)))
def test_imports_go_down_or_sideways(module):
    layer = LAYER_OF[_top(module)]
    known = set(MODULES)
    upward = sorted(f"{target} (L{LAYER_OF[_top(target)]})"
                    for target in _imports(module, MODULES[module])
                    if target in known and _top(target) and LAYER_OF[_top(target)] > layer)
    assert not upward, f"{module} (L{layer}) imports a higher layer: {upward}"


def test_no_import_cycle():
    known = set(MODULES)
    graph = {m: {t for t in _imports(m, p) if t in known and t != m} for m, p in MODULES.items()}
    # Tarjan's strongly connected components; any with more than one module is a cycle
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

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
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                cycles.append(sorted([v, *component]))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_the_detector_sees_a_lazy_upward_import(tmp_path):
    lazy = tmp_path / "m.py"
    lazy.write_text("def f():\n    from odeflows.train import train\n    return train\n")
    assert "odeflows.train" in _imports("odeflows.ode", lazy)


@pytest.mark.parametrize("doc", ["README.md", "docs/architecture.md"])
def test_docs_name_the_same_layers(doc):
    text = (ROOT / doc).read_text()
    for layer, names in LAYERS.items():
        match = re.search(rf"\*\*L{layer}\b(.*?)(?=\*\*L{layer + 1}\b|\n\n|\Z)", text, re.S)
        assert match, f"{doc} has no paragraph for L{layer}"
        named = set(re.findall(r"`(\w+)/?`", match.group(1)))
        assert names - {"__main__"} <= named, f"{doc} L{layer} lacks {names - named - {'__main__'}}"
        misplaced = {n for n in named & set(LAYER_OF) if LAYER_OF[n] != layer}
        assert not misplaced, f"{doc} places {misplaced} in L{layer}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_says_what_it_is_for_and_declares_its_surface(module):
    tree = ast.parse(MODULES[module].read_text())
    assert ast.get_docstring(tree), f"{module} has no module docstring"
    functions = {n.name for n in tree.body
                 if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    assigned = {t.id for n in tree.body if isinstance(n, (ast.Assign, ast.AnnAssign))
                for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
                if isinstance(t, ast.Name)}
    imported = {a.asname or a.name.split(".")[0] for n in tree.body
                if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
    declared = next((ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                     and any(getattr(t, "id", None) == "__all__" for t in n.targets)), None)
    if declared is None:
        public = sorted(n for n in functions if not n.startswith("_"))
        assert not public, f"{module} has a public surface {public} but no __all__"
    else:
        unknown = set(declared) - functions - assigned - imported
        assert not unknown, f"{module}.__all__ names what it does not define: {unknown}"
