"""Prepared datasets: fixed train/validation/test splits made by a registered generator from the
dataset's seed, one ``.npz`` file per (dataset, scale), with a sidecar JSON recording its content
hash and how it was made."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from odeflows.data import SPLITS, Arrays, get_generator
from odeflows.provenance import read_json, sha256_file, write_json_atomic


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
    }
    if gen.describe is not None:
        meta.update(gen.describe(cfg, arrays))
    write_json_atomic(out.with_suffix(".json"), meta)
    return meta


def load(path: str | Path) -> Arrays:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"prepared dataset {path} is missing; create it with "
            f"`snakemake {path}` or `odeflows prepare`"
        )
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def load_meta(path: str | Path) -> dict[str, Any]:
    """The sidecar metadata (content hash, sizes, seed) of a prepared dataset, if present."""
    meta = Path(path).with_suffix(".json")
    return read_json(meta) if meta.exists() else {}
