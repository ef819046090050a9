"""Dataset generators and loaders, registered by name.

A generator turns a dataset's configuration (``config/datasets.yaml``: seed, params, sizes of the
scale) into arrays ``x_<split>`` (and ``y_<split>`` for labelled sets) for the splits train, val
and test. It declares what it makes (vectors or images; targets: none, regression values or
classes) and which params it accepts, so configurations are checked before anything runs and the
harness picks a task from these facts, never from a name. Built-in generators live in this
package's modules (``toy2d``, ``anode_toy``, ``images``); a user's own module registers more with
:func:`register_generator` or :func:`register_sampler`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from odeflows.registry import Registry

__all__ = ["Arrays", "DatasetGenerator", "GENERATORS", "SPLITS", "get_generator",
           "register_generator", "register_sampler"]

SPLITS = ("train", "val", "test")
DATA_KINDS = ("vectors", "images")
TARGETS = ("regression", "classes")

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class DatasetGenerator:
    """A registered dataset generator and the facts the harness reads from it."""

    name: str
    data: str  # "vectors" | "images"
    generate: Callable[[dict[str, Any]], Arrays]
    targets: str | None = None  # None (density data) | "regression" | "classes"
    params: Mapping[str, dict[str, Any]] = field(default_factory=dict)  # JSON schema per param
    # sidecar extras; its "facts" (name → number the generator knows about the distribution,
    # e.g. the true entropy) are copied into every run's eval.json as data_<name>
    describe: Callable[[dict[str, Any], Arrays], dict[str, Any]] | None = None
    shape: tuple[int, ...] | None = None  # images: native (C, H, W)
    classes: int | None = None
    bits: int | None = None  # images: bits per pixel the papers model
    description: str = ""
    module: str = ""

    def __post_init__(self) -> None:
        if self.data not in DATA_KINDS:
            raise ValueError(f"generator {self.name!r}: data must be one of {DATA_KINDS}")
        if self.targets not in (None, *TARGETS):
            raise ValueError(f"generator {self.name!r}: targets must be None or one of {TARGETS}")


GENERATORS: Registry[DatasetGenerator] = Registry("dataset generator", packages=("odeflows.data",))


def register_generator(entry: DatasetGenerator) -> DatasetGenerator:
    return GENERATORS.add(entry.name, entry)


def get_generator(name: str) -> DatasetGenerator:
    return GENERATORS.get(name)


def register_sampler(name: str, *, targets: str | None = None,
                     params: Mapping[str, dict[str, Any]] | None = None,
                     description: str = "",
                     facts: Callable[..., Mapping[str, float]] | None = None
                     ) -> Callable[[Callable], Callable]:
    """Register ``fn(n, rng, **params)`` → ``x`` or ``(x, y)`` as a vector dataset: each split is
    drawn independently from its own seeded stream (so changing one split's size leaves the others
    unchanged). ``facts(**params)`` gives numbers known in closed form about the distribution
    (e.g. its entropy), recorded in the prepared data's sidecar and in each run's evaluation."""
    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        def generate(cfg: dict[str, Any]) -> Arrays:
            arrays: Arrays = {}
            for i, split in enumerate(SPLITS):
                rng = np.random.default_rng([int(cfg["seed"]), i])
                out = fn(int(cfg["sizes"][split]), rng, **(cfg.get("params") or {}))
                x, y = out if isinstance(out, tuple) else (out, None)
                arrays[f"x_{split}"] = x
                if y is not None:
                    arrays[f"y_{split}"] = y
            return arrays

        describe = None
        if facts is not None:
            def describe(cfg: dict[str, Any], arrays: Arrays) -> dict[str, Any]:
                return {"facts": {k: float(v)
                                  for k, v in facts(**(cfg.get("params") or {})).items()}}

        register_generator(DatasetGenerator(name, "vectors", generate, targets=targets,
                                            params=params or {}, describe=describe,
                                            description=description, module=fn.__module__))
        return fn
    return wrap
