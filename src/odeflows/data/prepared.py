"""Prepared datasets: fixed train/validation/test splits made by a registered generator from the
dataset's seed, one ``.npz`` file per (dataset, scale), with a sidecar JSON recording its content
hash, byte size, array shapes and dtypes, split sizes and how it was made.

:func:`load` checks a file against whatever its sidecar records before anything uses it, so a
corrupt or swapped file stops a job with one paragraph naming the file and the command that
regenerates it, instead of a zip error deep inside training (Snakemake does not rebuild an
output that exists). :func:`verify` is the strict form the CLI and the audit use: it also
requires the sidecar and its hash. Hashing costs about 3 s per GB, paid once per process and
file version (cached by path, size and modification time).
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from odeflows.data import SPLITS, Arrays, get_generator
from odeflows.provenance import read_json, sha256_current, sha256_file, write_json_atomic

__all__ = ["PreparedDataError", "generate", "load", "load_meta", "prepare", "regenerate_hint",
           "sidecar", "verify"]


class PreparedDataError(ValueError):
    """A prepared dataset is missing, unreadable or differs from its sidecar; the message names
    the file, what is wrong and the command that regenerates it."""


def generate(cfg: dict[str, Any]) -> Arrays:
    """Arrays ``x_<split>`` (and ``y_<split>`` for labelled sets) of a dataset config
    (``name``, ``generator``, ``seed``, ``params``, ``sizes`` of one scale)."""
    return get_generator(cfg.get("generator", cfg["name"])).generate(cfg)


def prepare(cfg: dict[str, Any], out: str | Path) -> dict[str, Any]:
    """Write ``out`` (.npz) and ``out`` with suffix .json; returns the metadata."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    gen = get_generator(cfg.get("generator", cfg["name"]))
    arrays = gen.generate(cfg)
    tmp = out.with_name(f".{out.stem}.tmp{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, out)
    meta = {
        "dataset": cfg["name"],
        "generator": gen.name,
        "data": gen.data,
        "seed": cfg["seed"],
        "params": cfg.get("params", {}),
        # sizes may be null in the config ("all available"): record what was written
        "sizes": {s: int(arrays[f"x_{s}"].shape[0]) for s in SPLITS},
        "dim": int(np.prod(arrays["x_train"].shape[1:])),
        "sha256": sha256_file(out),
        "bytes": out.stat().st_size,
        "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)}
                   for k, v in sorted(arrays.items())},
    }
    if gen.describe is not None:
        meta.update(gen.describe(cfg, arrays))
    write_json_atomic(out.with_suffix(".json"), meta)
    return meta


def sidecar(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


def load_meta(path: str | Path) -> dict[str, Any]:
    """The sidecar metadata (content hash, sizes, seed) of a prepared dataset, if present."""
    meta = sidecar(path)
    return read_json(meta) if meta.exists() else {}


def regenerate_hint(path: str | Path, dataset: str | None = None) -> str:
    """The command that rewrites ``path``: data/prepared/<scale>/<name>.npz by convention."""
    path = Path(path)
    scale = path.parent.name if path.parent.parent.name == "prepared" else "<scale>"
    return (f"regenerate it with `odeflows prepare --dataset {dataset or path.stem} --scale "
            f"{scale} --out {path}` (add --config-dir/--modules as your workflow does), or "
            f"restore it with `dvc checkout {path.parent}` if it came from `dvc pull`")


def _error(path: Path, what: str, dataset: str | None = None) -> PreparedDataError:
    return PreparedDataError(f"prepared dataset {path} {what}; {regenerate_hint(path, dataset)}")


def _read_sidecar(path: Path, strict: bool) -> dict[str, Any]:
    side = sidecar(path)
    if not side.exists():
        if strict:
            raise _error(path, f"has no sidecar {side} (written by `odeflows prepare` with its "
                               "hash and shapes), so its content cannot be checked")
        return {}
    try:
        meta = read_json(side)
    except (OSError, json.JSONDecodeError) as err:
        raise _error(path, f"has an unreadable sidecar {side} ({err})") from None
    if strict and not meta.get("sha256"):
        raise _error(path, f"has a sidecar {side} without the file's sha256", meta.get("dataset"))
    return meta


def verify(path: str | Path, strict: bool = True) -> dict[str, Any]:
    """The sidecar metadata of ``path`` once the file's size and SHA-256 match it; raises
    :class:`PreparedDataError` otherwise. ``strict=False`` accepts a file without a sidecar (or
    with a partial one, as hand-made test data have) and checks only what is recorded."""
    path = Path(path)
    if not path.exists():
        raise _error(path, "is missing")
    meta = _read_sidecar(path, strict)
    st = path.stat()
    name = meta.get("dataset")
    if meta.get("bytes") is not None and st.st_size != meta["bytes"]:
        raise _error(path, f"has {st.st_size} bytes where its sidecar records {meta['bytes']} "
                           "(truncated, appended to or replaced)", name)
    if meta.get("sha256"):
        actual = sha256_current(path)
        if actual != meta["sha256"]:
            raise _error(path, f"does not match its sidecar: sha256 {actual[:12]}… where "
                               f"{sidecar(path)} records {meta['sha256'][:12]}… (the file is "
                               "corrupt or was replaced)", name)
    return meta


def _described(a: np.ndarray | None) -> str:
    return "absent" if a is None else f"{tuple(a.shape)} {a.dtype}"


def _check_arrays(path: Path, arrays: Arrays, meta: dict[str, Any]) -> None:
    expected = {k: f"{tuple(v['shape'])} {v['dtype']}"
                for k, v in (meta.get("arrays") or {}).items()}
    wrong = [f"{k} is {_described(arrays.get(k))} where the sidecar records {want}"
             for k, want in expected.items() if _described(arrays.get(k)) != want]
    wrong += [f"the {s} split has {len(arrays[f'x_{s}'])} items where the sidecar records {n}"
              for s, n in (meta.get("sizes") or {}).items()
              if f"x_{s}" in arrays and n is not None and len(arrays[f"x_{s}"]) != n]
    if wrong:
        raise _error(path, "does not match its sidecar (" + "; ".join(wrong) + ")",
                     meta.get("dataset"))


def load(path: str | Path, strict: bool = False) -> Arrays:
    """The arrays of a prepared dataset, checked against its sidecar first (see :func:`verify`;
    ``strict`` as there)."""
    path = Path(path)
    meta = verify(path, strict)
    try:
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise _error(path, f"cannot be read as .npz ({type(err).__name__}: {err})",
                     meta.get("dataset")) from None
    _check_arrays(path, arrays, meta)
    return arrays
