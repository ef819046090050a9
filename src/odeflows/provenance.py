"""Run records: hashes (files, texts, configs), JSON files written atomically, git state, package
versions, host and device. The only module that hashes files or reads git; it imports nothing else
of the package, so every layer may use it (code versions, which follow imports through the
registries, are :mod:`odeflows.versions`)."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["config_hash", "cpu_model", "dvc_status", "file_digest", "git_state", "host_info",
           "md5_file", "package_versions", "read_json", "remove_stale_temporaries",
           "sha256_current", "sha256_file", "sha256_text", "temporary_path", "write_json_atomic",
           "write_text_atomic"]

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


def _stat_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path), st.st_mtime_ns, st.st_size


@cache
def _digest(key: tuple[str, int, int]) -> str:
    return sha256_file(key[0])


def config_hash(cfg: dict[str, Any]) -> str:
    """Stable short hash of a JSON-serialisable config (key order does not matter)."""
    blob = json.dumps(cfg, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


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
