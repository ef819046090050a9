"""Code versions: which of the package's code a stage runs, and its hash.

A result depends on the code that computes it. Each stage's code is the static import closure
(within the package; imports inside functions included) of its entry modules plus the modules
of the entries a run uses (its model, task and dataset generator, which the registries import
dynamically, so other models' code is not part of it), and the user's plugin modules. The
closure stops at the modules of later stages, so a change to plotting code re-plots without
retraining, while a change to a model's code makes exactly the runs of that model stale.

This module looks entries up in the registries (data, models, tasks), so it sits with the stages
that record versions (train, evaluate, tables); the file hashes come from
:mod:`odeflows.provenance`.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from odeflows import provenance

__all__ = ["STAGES", "code_version", "module_closure"]

STAGES: dict[str, tuple[str, ...]] = {
    "prepare": ("odeflows.data.prepared",),
    "train": ("odeflows.train",),
    "evaluate": ("odeflows.evaluate",),
    "tables": ("odeflows.tables",),
    # the figure registry finds its modules when asked, so the plot stage names them all
    "plot": ("odeflows.figures", "odeflows.figures.*", "odeflows.figures.named",
             "odeflows.figures.named.*"),
    "claims": ("odeflows.claims",),
    "parameter_counts": ("odeflows.parameter_counts",),
}
# the stage functions a task names (``Deferred``, not imported) that each stage calls
_TASK_FUNCTIONS = {"train": ("runner",), "evaluate": ("evaluator",),
                   "tables": ("summariser", "formatter", "curve_table"), "plot": ("drawer",)}
# never part of a computation: they only call the stages
_DRIVERS = ("odeflows.cli", "odeflows.audit")
# data files a stage reads from the package
_STAGE_DATA = {"tables": ("reference/paper_numbers.yaml",),
               "claims": ("reference/paper_numbers.yaml",),
               "parameter_counts": ("reference/paper_numbers.yaml",)}


def _package_root() -> Path:
    return Path(str(resources.files("odeflows")))


@cache
def _module_file(name: str) -> Path | None:
    root = _package_root()
    parts = name.split(".")[1:]
    base = root.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _stat_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path), st.st_mtime_ns, st.st_size


def _imports_of(name: str) -> tuple[str, ...]:
    path = _module_file(name)
    return () if path is None else _parse_imports(name, _stat_key(path))


@cache
def _parse_imports(name: str, key: tuple[str, int, int]) -> tuple[str, ...]:
    """Package modules ``name`` imports anywhere in its source (parents included: importing a
    submodule runs its package's ``__init__``); cached per version of the file."""
    path = Path(key[0])
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join([*pkg, base] if base else pkg)
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for t in targets:
            if t.split(".")[0] != "odeflows":
                continue
            parts = t.split(".")
            for i in range(1, len(parts) + 1):
                mod = ".".join(parts[:i])
                if _module_file(mod) is not None:
                    found.add(mod)
    return tuple(sorted(found))


def _expand(roots: Iterable[str]) -> list[str]:
    """``roots`` with each ``package.*`` replaced by the package's modules."""
    out: list[str] = []
    for root in roots:
        if not root.endswith(".*"):
            out.append(root)
            continue
        package = root[:-2]
        folder = _package_root().joinpath(*package.split(".")[1:])
        out.extend(f"{package}.{f.stem}" for f in sorted(folder.glob("*.py"))
                   if f.stem != "__init__")
    return out


def module_closure(roots: Iterable[str], stop: Iterable[str] = ()) -> list[str]:
    """Package modules reachable from ``roots`` by imports, not entering ``stop``."""
    stop_set, seen, todo = set(stop), set(), list(roots)
    while todo:
        mod = todo.pop()
        if mod in seen or (mod in stop_set and mod not in roots):
            continue
        if _module_file(mod) is None:
            continue
        seen.add(mod)
        todo.extend(_imports_of(mod))
    return sorted(seen)


def code_version(stage: str, cfg: dict[str, Any] | None = None,
                 extra_modules: Iterable[str] = (), plugins: Iterable[str] = ()
                 ) -> dict[str, Any]:
    """``{"version": short hash, "modules": {module: sha256}}`` of the code ``stage`` runs for a
    resolved run config ``cfg`` (its model, task and dataset generator) — judged by content, so a
    docs-only commit changes nothing."""
    order = list(STAGES)
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; allowed values: {', '.join(order)}")
    later = [m for s in order[order.index(stage) + 1:] for m in _expand(STAGES[s])]
    roots = [*_expand(STAGES[stage]), *extra_modules]
    user = list(plugins) + list((cfg or {}).get("modules", []))
    _load_plugins(user)  # their entries must be registered to be found, their files to be hashed
    if cfg is not None:
        roots += _entry_modules(stage, cfg)
    roots += _task_stage_modules(stage, roots)
    modules = module_closure(roots, stop=[*later, *_DRIVERS])
    digests = {m: provenance.sha256_current(_module_file(m))  # type: ignore[arg-type]
               for m in modules}
    for rel in _STAGE_DATA.get(stage, ()):
        digests[f"odeflows/{rel}"] = provenance.sha256_current(_package_root() / rel)
    for f in _plugin_files(user):
        digests[str(f)] = provenance.sha256_current(f)
    version = provenance.sha256_text(json.dumps(digests, sort_keys=True))[:16]
    return {"version": version, "modules": digests}


def _entry_modules(stage: str, cfg: dict[str, Any]) -> list[str]:
    """Modules of the registry entries a run uses (imported dynamically by the registries)."""
    from odeflows.data import get_generator

    if stage == "prepare":  # cfg is a dataset config
        return [m for m in [get_generator(cfg.get("generator", cfg["name"])).module]
                if m.startswith("odeflows.")]
    mods: list[str] = []
    if "generator" in cfg.get("data", {}):
        mods.append(get_generator(cfg["data"]["generator"]).module)
    if "model" in cfg:
        from odeflows.models import get_model
        from odeflows.tasks import get_task

        entry = get_model(cfg["model"], cfg["data"]["kind"])
        mods.extend(m for m in (entry.module, entry.declared_in) if m)
        mods.append(get_task(cfg["task"]).module)
    return [m for m in mods if m.startswith("odeflows.")]


def _task_stage_modules(stage: str, modules: Iterable[str]) -> list[str]:
    """Modules of the functions that the tasks declared in ``modules`` name for ``stage``: code
    the stage runs that no import leads to."""
    names = _TASK_FUNCTIONS.get(stage, ())
    if not names:
        return []
    from odeflows.tasks import TASKS

    wanted = set(modules)
    found = {getattr(task, name).target.partition(":")[0]
             for task in TASKS.all() if task.module in wanted
             for name in names if getattr(task, name, None) is not None}
    return sorted(m for m in found if m.startswith("odeflows."))


def _load_plugins(modules: Iterable[str]) -> None:
    from odeflows import plugins

    plugins.load(modules)


def _plugin_files(modules: Iterable[str]) -> list[Path]:
    from odeflows import plugins

    return plugins.source_files(modules)
