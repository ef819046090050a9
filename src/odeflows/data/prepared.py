"""Prepared datasets: fixed train/validation/test splits generated from a seed, one ``.npz`` file
per (dataset, scale), with a sidecar JSON recording its content hash and how it was made."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from odeflows.data import anode_toy, toy2d
from odeflows.provenance import sha256_file, write_json_atomic

SPLITS = ("train", "val", "test")


def generate(cfg: dict[str, Any]) -> dict[str, np.ndarray]:
    """Arrays ``x_<split>`` (and ``y_<split>`` for supervised sets) for a dataset config."""
    arrays: dict[str, np.ndarray] = {}
    for i, split in enumerate(SPLITS):
        # one independent stream per split, so changing one split's size leaves the others
        rng = np.random.default_rng([cfg["seed"], i])
        n = int(cfg["sizes"][split])
        if cfg["family"] == "toy2d":
            arrays[f"x_{split}"] = toy2d.sample(cfg["name"], n, rng)
        elif cfg["family"] == "anode_toy":
            x, y = anode_toy.sample(cfg["name"], n, rng, **cfg.get("params", {}))
            arrays[f"x_{split}"], arrays[f"y_{split}"] = x, y
        else:
            raise ValueError(f"unknown dataset family {cfg['family']!r}; "
                             "allowed values: toy2d, anode_toy")
    return arrays


def prepare(cfg: dict[str, Any], out: str | Path) -> dict[str, Any]:
    """Write ``out`` (.npz) and ``out`` with suffix .json; returns the metadata."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays = generate(cfg)
    tmp = out.with_name(f".{out.stem}.tmp{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, out)
    meta = {
        "dataset": cfg["name"],
        "family": cfg["family"],
        "seed": cfg["seed"],
        "params": cfg.get("params", {}),
        "sizes": {s: int(cfg["sizes"][s]) for s in SPLITS},
        "dim": int(arrays["x_train"].shape[1]),
        "sha256": sha256_file(out),
    }
    write_json_atomic(out.with_suffix(".json"), meta)
    return meta


def load(path: str | Path) -> dict[str, np.ndarray]:
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
    from odeflows.provenance import read_json

    meta = Path(path).with_suffix(".json")
    return read_json(meta) if meta.exists() else {}
