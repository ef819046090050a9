"""Prepared datasets: fixed train/validation/test splits generated from a seed, one ``.npz`` file
per (dataset, scale), with a sidecar JSON recording its content hash and how it was made."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from odeflows.data import anode_toy, toy2d
from odeflows.provenance import sha256_file, write_json_atomic

SPLITS = ("train", "val", "test")


def generate(cfg: dict[str, Any]) -> dict[str, np.ndarray]:
    """Arrays ``x_<split>`` (and ``y_<split>`` for supervised sets) for a dataset config."""
    if cfg["family"] == "images":
        return _generate_images(cfg)
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
                             "allowed values: toy2d, anode_toy, images")
    return arrays


def prepare(cfg: dict[str, Any], out: str | Path) -> dict[str, Any]:
    """Write ``out`` (.npz) and ``out`` with suffix .json; returns the metadata."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays = generate(cfg)
    tmp = out.with_name(f".{out.stem}.tmp{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, out)
    if cfg["family"] == "images":
        # image sizes may be null ("all available"): record what was actually written
        sizes = {s: int(arrays[f"x_{s}"].shape[0]) for s in SPLITS}
        dim = int(np.prod(arrays["x_train"].shape[1:]))
    else:
        sizes = {s: int(cfg["sizes"][s]) for s in SPLITS}
        dim = int(arrays["x_train"].shape[1])
    meta = {
        "dataset": cfg["name"],
        "family": cfg["family"],
        "seed": cfg["seed"],
        "params": cfg.get("params", {}),
        "sizes": sizes,
        "dim": dim,
        "sha256": sha256_file(out),
    }
    if cfg["family"] == "images":
        meta.update(_image_meta(cfg, arrays))
    write_json_atomic(out.with_suffix(".json"), meta)
    return meta


# ----------------------------------------------------------------------------- images
#
# cfg keys of the ``images`` family (each may also sit under ``params``):
#   source      registry name in odeflows.data.images.DATASETS (default: the dataset name)
#   raw_root    folder of the raw files (default "data/raw")
#   image_size  square size to resize to, or null for the native size
#   download    let torchvision download missing files (default false)
#   verify      check torchvision's published MD5s of the raw files (default true)
#   sizes       {train, val, test}: counts, or null for "all available"; val null means
#               10% of the available training images, at most 10,000

VAL_FRACTION, VAL_MAX = 0.1, 10_000
_IMAGE_DEFAULTS: dict[str, Any] = {
    "raw_root": "data/raw", "image_size": None, "download": False, "verify": True}


def _image_option(cfg: dict[str, Any], key: str) -> Any:
    if key in cfg:
        return cfg[key]
    params = cfg.get("params") or {}
    if key == "source":
        return params.get("source", cfg["name"])
    return params.get(key, _IMAGE_DEFAULTS[key])


def _count(sizes: dict[str, Any], split: str, available: int, default: int) -> int:
    n = sizes.get(split)
    n = default if n is None else int(n)
    if not 0 <= n <= available:
        pool = {"train": "training images left after val", "val": "training images",
                "test": "test images"}[split]
        raise ValueError(f"{split} size {n} must be within 0..{available} (the {pool})")
    return n


def _subset(n: int, available: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of a seeded random ``n``-subset; all of them, in order, if n = available."""
    if n == available:
        return np.arange(available)
    return np.sort(rng.permutation(available)[:n])


def _generate_images(cfg: dict[str, Any]) -> dict[str, np.ndarray]:
    """Train / val / test of a real image set. Val is carved from the official training set
    (seeded); train and test are seeded subsets when smaller than available. The test split
    always comes from the official test set, which the papers evaluate on."""
    from odeflows.data.images import load_image_arrays

    src = load_image_arrays(_image_option(cfg, "source"), _image_option(cfg, "raw_root"),
                            download=bool(_image_option(cfg, "download")),
                            image_size=_image_option(cfg, "image_size"),
                            verify=bool(_image_option(cfg, "verify")))
    sizes = cfg.get("sizes") or {}
    n_avail = len(src["y_train"])
    n_val = _count(sizes, "val", n_avail, min(round(VAL_FRACTION * n_avail), VAL_MAX))
    n_train = _count(sizes, "train", n_avail - n_val, n_avail - n_val)
    # val first, then train from the rest: val stays the same when only the train size changes,
    # and smaller training sets are nested in larger ones
    perm = np.random.default_rng([cfg["seed"], 0]).permutation(n_avail)
    idx = {"val": np.sort(perm[:n_val]), "train": np.sort(perm[n_val:n_val + n_train])}
    n_test_avail = len(src["y_test"])
    n_test = _count(sizes, "test", n_test_avail, n_test_avail)
    idx_test = _subset(n_test, n_test_avail, np.random.default_rng([cfg["seed"], 2]))
    arrays: dict[str, np.ndarray] = {}
    for split in SPLITS:
        part, i = ("test", idx_test) if split == "test" else ("train", idx[split])
        arrays[f"x_{split}"] = src[f"x_{part}"][i]
        arrays[f"y_{split}"] = src[f"y_{part}"][i]
    return arrays


def _portable(path: Path) -> str:
    """A path that reads the same on every machine for files inside installed packages."""
    for parent in path.parents:
        if parent.name in ("site-packages", "dist-packages"):
            return path.relative_to(parent).as_posix()
    return path.as_posix()


def _raw_record(path: Path) -> dict[str, Any]:
    r"""{path, sha256, bytes} of a raw file. A folder (of images) is one entry whose sha256 is that
    of its manifest: the ``sha256sum`` lines ``"<sha256>  <relative path>\n"`` of every file below
    it, sorted by path, as ``find . -type f -printf '%P\n' | LC_ALL=C sort |
    xargs -d '\n' sha256sum | sha256sum`` prints when run inside it."""
    if not path.is_dir():
        return {"path": _portable(path), "sha256": sha256_file(path),
                "bytes": path.stat().st_size}
    files = sorted((f.relative_to(path).as_posix(), f) for f in path.rglob("*") if f.is_file())
    manifest = "".join(f"{sha256_file(f)}  {rel}\n" for rel, f in files)
    return {"path": _portable(path), "sha256": hashlib.sha256(manifest.encode()).hexdigest(),
            "bytes": sum(f.stat().st_size for _, f in files), "files": len(files),
            "kind": "directory"}


def _image_meta(cfg: dict[str, Any], arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    from importlib import metadata

    from odeflows.data.images import dataset, raw_files

    ds = dataset(_image_option(cfg, "source"))
    shape = [int(d) for d in arrays["x_train"].shape[1:]]
    meta: dict[str, Any] = {
        "source": ds.name,
        "description": ds.description,
        "shape": shape,
        "classes": ds.classes,
        "bits": ds.bits,
        "image_size": _image_option(cfg, "image_size"),
        "raw_files": [_raw_record(p)
                      for p in raw_files(ds.name, _image_option(cfg, "raw_root"))],
    }
    if ds.package:
        meta["package"] = {ds.package: metadata.version(ds.package)}
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
