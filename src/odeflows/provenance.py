"""Run records: hashes, code versions, git state, package versions, host and device. The only
module that hashes files or reads git."""

from __future__ import annotations

import ast
import glob
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Iterable
from functools import cache
from importlib import metadata, resources
from pathlib import Path
from typing import Any

PACKAGES = ("odeflows", "torch", "torchdiffeq", "numpy", "pandas", "matplotlib", "snakemake",
            "dvc", "torchvision")


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's content. ``md5`` is what DVC records in dvc.lock, so checkpoint
    hashes can be matched against DVC's; ``sha256`` is used everywhere else."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, algorithm).hexdigest()


def sha256_file(path: str | Path) -> str:
    return file_digest(path, "sha256")


def md5_file(path: str | Path) -> str:
    return file_digest(path, "md5")


def sha256_current(path: str | Path) -> str:
    """SHA-256 of a file, computed once per process and version of the file (path, size,
    modification time): for checks that meet the same large file many times."""
    return _digest(_stat_key(Path(path)))


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# -- code versions -----------------------------------------------------------------------------
# A result depends on the code that computes it. Each stage's code is the static import closure
# (within the package; imports inside functions included) of its entry modules plus the modules
# of the entries a run uses (its model, task and dataset generator, which the registries import
# dynamically, so other models' code is not part of it), and the user's plugin modules. The
# closure stops at the modules of later stages, so a change to plotting code re-plots without
# retraining, while a change to a model's code makes exactly the runs of that model stale.
STAGES: dict[str, tuple[str, ...]] = {
    "prepare": ("odeflows.data.prepared",),
    "train": ("odeflows.train",),
    "evaluate": ("odeflows.evaluate",),
    "aggregate": ("odeflows.aggregate",),
    # the figure registry is a plot-stage root so that configuration checks of figure names
    # (config imports it lazily) never make figure code part of a training run's version
    "plot": ("odeflows.plots", "odeflows.plots_images", "odeflows.figures"),
    "claims": ("odeflows.claims",),
    "parameters": ("odeflows.parameters",),
}
# never part of a computation: they only call the stages
_DRIVERS = ("odeflows.cli", "odeflows.audit")
# data files a stage reads from the package
_STAGE_DATA = {"aggregate": ("reference/paper_numbers.yaml",),
               "claims": ("reference/paper_numbers.yaml",),
               "parameters": ("reference/paper_numbers.yaml",)}


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


@cache
def _digest(key: tuple[str, int, int]) -> str:
    return sha256_file(key[0])


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
    later = [m for s in order[order.index(stage) + 1:] for m in STAGES[s]]
    roots = [*STAGES[stage], *extra_modules]
    user = list(plugins) + list((cfg or {}).get("modules", []))
    _load_plugins(user)  # their entries must be registered to be found, their files to be hashed
    if cfg is not None:
        roots += _entry_modules(stage, cfg)
    modules = module_closure(roots, stop=[*later, *_DRIVERS])
    digests = {m: _digest(_stat_key(_module_file(m))) for m in modules}  # type: ignore[arg-type]
    for rel in _STAGE_DATA.get(stage, ()):
        digests[f"odeflows/{rel}"] = _digest(_stat_key(_package_root() / rel))
    for f in _plugin_files(user):
        digests[str(f)] = _digest(_stat_key(Path(f)))
    version = sha256_text(json.dumps(digests, sort_keys=True))[:16]
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


def _load_plugins(modules: Iterable[str]) -> None:
    from odeflows import plugins

    plugins.load(modules)


def _plugin_files(modules: Iterable[str]) -> list[Path]:
    from odeflows import plugins

    return plugins.source_files(modules)


def git_state(cwd: str | Path = ".") -> dict[str, Any]:
    def run(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                                 timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = run("rev-parse", "HEAD")
    # results/, data/ and .snakemake/ are outputs, not code: they do not make the tree dirty
    status = run("status", "--porcelain", "--", ".", ":!results", ":!data", ":!.snakemake",
                 ":!logs")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def dvc_status(root: str | Path, stage: str) -> tuple[bool | None, str]:
    """``(clean, what dvc said)`` of ``dvc status <stage>`` in ``root``; ``clean`` is None when
    DVC does not version ``root`` (no ``.dvc/`` or ``dvc.lock``) or cannot run there."""
    root = Path(root)
    missing = [n for n in (".dvc", "dvc.lock") if not (root / n).exists()]
    if missing:
        return None, f"not checked: {root.resolve()} has no {' and no '.join(missing)}"
    try:
        out = subprocess.run(["dvc", "status", "--json", stage], cwd=root, capture_output=True,
                             text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as err:
        return None, f"not checked: `dvc status {stage}` could not run ({err})"
    if out.returncode != 0:
        return False, f"`dvc status {stage}` failed: {(out.stderr or out.stdout).strip()}"
    try:
        changes = json.loads(out.stdout or "{}")
    except json.JSONDecodeError:
        return None, f"not checked: `dvc status {stage}` printed no JSON"
    if not changes:
        return True, f"`dvc status {stage}`: outputs and dependencies match dvc.lock"
    return False, f"`dvc status {stage}` lists changes since dvc.lock: {json.dumps(changes)}"


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_model() -> str:
    """The processor's name (Linux: /proc/cpuinfo), else what the platform module reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def host_info() -> dict[str, Any]:
    import torch

    device = "cpu"
    if torch.cuda.is_available():
        device = f"cuda:{torch.cuda.get_device_name(0)}"
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        # which vector kernels torch dispatched to: runs on machines that differ here (or in the
        # processor) agree only to rounding, which training amplifies (docs/workstation.md)
        "cpu_model": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "argv": sys.argv,
    }


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``path`` so that a reader (or a rerun after kill -9) sees the old file or the new
    one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    with open(tmp, "w", newline="") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    remove_stale_temporaries(path)


def temporary_path(path: Path) -> Path:
    """Where an atomic write of ``path`` goes before its rename: hidden, in the same directory
    (a rename is atomic only within one file system), named by the writing process."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def remove_stale_temporaries(path: Path) -> None:
    """Delete the temporary files that earlier writes of ``path`` left when their process was
    killed between writing and renaming (kill -9, a node failure). Every job rewrites its files
    when it reruns, so this keeps the result directories that DVC versions free of them. A file
    whose process still runs on this machine is left alone."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.tmp*"):
        pid = tmp.name.rsplit(".tmp", 1)[1]
        if pid.isdigit() and not _process_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    if os.name != "posix":  # os.kill would terminate it
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    return True


def read_json(path: str | Path) -> Any:
    with open(path) as fh:
        return json.load(fh)
