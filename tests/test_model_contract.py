"""One contract over the model registry: every registered entry (name × data kind) builds from a
resolved run config, runs its task's loss forward and backward, scores in evaluation mode,
samples if it is a density that samples, and has the parameter count the harness reports.

Everything is derived from what the entry declares (kinds, data, options, ``samples``, ``fit``,
``reference_count``), so a newly registered model is covered without editing this file. Options
take the smallest value their schema allows and solvers take two fixed-grid steps: the contract
is about wiring, not accuracy, and must stay cheap.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch

from conftest import ROOT
from odeflows.config import complete_config, load_datasets
from odeflows.data import DatasetGenerator, get_generator
from odeflows.evidence.estimators import hutchinson_check
from odeflows.models import (
    MODELS,
    BuildContext,
    ModelEntry,
    build_model,
    num_parameters,
)
from odeflows.ode import Solver
from odeflows.tasks import Task, select_task, task_for

CONFIG = ROOT / "config"
BATCH = 4
SAMPLES = 3
SOLVER = {"method": "euler", "steps": 2, "adjoint": False}

ENTRIES = sorted(MODELS.all(), key=lambda e: (e.name, e.data))
SAMPLERS = [e for e in ENTRIES if e.is_density and e.samples]
DIVERGENCE = [e for e in ENTRIES if "divergence" in e.traits]


def entry_id(entry: ModelEntry) -> str:
    return f"{entry.name}-{entry.data}"


def smallest(schema: dict[str, Any]) -> Any:
    """The smallest value an option's schema allows where it bounds sizes (integers, arrays of
    integers); the declared default otherwise. ``None``: the schema gives no value."""
    if schema.get("type") == "integer" and "minimum" in schema:
        return int(schema["minimum"])
    items = schema.get("items", {})
    if schema.get("type") == "array" and items.get("type") == "integer" and "minimum" in items:
        return [int(items["minimum"])] * int(schema.get("minItems", 1))
    return schema.get("default")


def small_options(entry: ModelEntry) -> dict[str, Any]:
    options = {key: smallest(schema) for key, schema in entry.options.items()}
    missing = sorted(k for k, v in options.items() if v is None and "default" not in
                     entry.options[k])
    assert not missing, (f"model {entry.name!r} on {entry.data}: options {missing} have neither "
                         "a default nor a minimum; the contract cannot choose a value")
    return {k: v for k, v in options.items() if v is not None}


def vector_arrays(name: str, dataset: dict[str, Any], n: int = 2 * BATCH) -> dict[str, np.ndarray]:
    gen = get_generator(dataset.get("generator", name))
    return gen.generate({"seed": 0, "params": dataset.get("params") or {},
                         "sizes": {"train": n, "val": n, "test": n}})


def input_shape(name: str, dataset: dict[str, Any], gen: DatasetGenerator) -> tuple[int, ...]:
    """The inputs of a dataset as the harness sees them: images at their configured size, vectors
    at the dimension the generator draws."""
    if gen.data == "images":
        size = (dataset.get("params") or {}).get("image_size")
        return (gen.shape[0], size, size) if size else tuple(gen.shape)
    return tuple(vector_arrays(name, dataset)["x_train"].shape[1:])


def dataset_for(entry: ModelEntry) -> tuple[str, tuple[int, ...]]:
    """The configured dataset whose task takes this entry with the fewest input values; a
    density prefers data without targets (what it is fitted to when such data exist)."""
    candidates = []
    for name, dataset in load_datasets(CONFIG).items():
        gen = get_generator(dataset.get("generator", name))
        if gen.data != entry.data:
            continue
        try:
            select_task(entry, gen)
        except ValueError:
            continue
        shape = input_shape(name, dataset, gen)
        candidates.append((entry.is_density and gen.targets is not None, math.prod(shape), name,
                           shape))
    assert candidates, f"no configured dataset has a task for {entry.name!r} on {entry.data}"
    _, _, name, shape = min(candidates)
    return name, shape


def run_config(entry: ModelEntry, dataset: str) -> dict[str, Any]:
    return complete_config({
        "experiment": "model_contract", "dataset": dataset, "model": entry.name, "seed": 0,
        "scale": "smoke", "model_options": small_options(entry), "solver": SOLVER,
        "eval_solver": SOLVER, "train": {"lr": 1e-3, "batch_size": BATCH, "iterations": 1},
        "eval": {"batch_size": BATCH}}, CONFIG)


def batch(cfg: dict[str, Any], shape: tuple[int, ...], classes: int | None
          ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A training batch as the harness's loader hands it to the task: uint8 images (with class
    labels), float vectors (with their targets where the dataset has them)."""
    if cfg["data"]["kind"] == "images":
        x = torch.randint(0, 256, (BATCH, *shape), dtype=torch.uint8)
        y = torch.randint(0, classes, (BATCH,)) if classes else None
        return x, y
    arrays = vector_arrays(cfg["dataset"], load_datasets(CONFIG)[cfg["dataset"]])
    y = arrays.get("y_train")
    return (torch.from_numpy(arrays["x_train"][:BATCH]),
            None if y is None else torch.from_numpy(y[:BATCH]))


def build_context(cfg: dict[str, Any], shape: tuple[int, ...], out_dim: int) -> BuildContext:
    return BuildContext(shape, out_dim, Solver.from_config(cfg["solver"]),
                        Solver.from_config(cfg["eval_solver"]), cfg["data"])


class Contract(NamedTuple):
    entry: ModelEntry
    cfg: dict[str, Any]
    task: Task
    model: torch.nn.Module
    x: torch.Tensor
    y: torch.Tensor | None
    out_dim: int


@pytest.fixture(params=ENTRIES, ids=entry_id)
def contract(request) -> Contract:
    """An entry built as the training harness builds it: task and output size from the resolved
    config and the batch, the model by :func:`odeflows.models.build_model`."""
    entry: ModelEntry = request.param
    dataset, shape = dataset_for(entry)
    cfg = run_config(entry, dataset)
    gen = get_generator(cfg["data"]["generator"])
    x, y = batch(cfg, shape, gen.classes)
    task = task_for(cfg)
    out_dim = task.output_dim({"classes": gen.classes}, y)
    return Contract(entry, cfg, task, build_model(cfg, shape, out_dim), x, y, out_dim)


def test_forward_backward_and_score(contract):
    entry, _, task, model, x, y, _ = contract
    generator = torch.Generator().manual_seed(0)
    if entry.fit is not None:
        # fitted in closed form: the harness gives it no optimiser, so it must have nothing
        # for one, and its fit must make the data it saw likelier
        assert num_parameters(model) == 0
        model.eval()
        before, _ = task.loss(model, x, y, generator)
        entry.fit(model, x)
        after, _ = task.loss(model, x, y, generator)
        assert torch.isfinite(after) and after < before
    else:
        model.train()
        loss, stats = task.loss(model, x, y, generator)
        assert loss.dim() == 0 and torch.isfinite(loss), stats
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
        assert grads, "no parameter received a gradient"
        assert all(torch.isfinite(g).all() for g in grads)
        assert any(g.abs().sum() > 0 for g in grads), "every gradient is zero"
    model.eval()
    score = task.score(model, x.numpy(), None if y is None else y.numpy(), BATCH, generator)
    assert math.isfinite(score["loss"]), score


@pytest.mark.parametrize("contract", SAMPLERS, ids=entry_id, indirect=True)
def test_samples(contract):
    entry, _, _, model, x, _, _ = contract
    if entry.fit is not None:
        entry.fit(model, x)
    model.eval()
    out = model.sample(SAMPLES, torch.Generator().manual_seed(0))
    assert tuple(out.shape) == (SAMPLES, *x.shape[1:])
    assert torch.isfinite(out).all()


def test_parameter_count(contract):
    entry, cfg, _, model, x, _, out_dim = contract
    shape = tuple(x.shape[1:])
    ours = num_parameters(model)
    # the parameter table (odeflows.parameter_counts) counts models built on the meta device
    with torch.device("meta"):
        assert num_parameters(build_model(cfg, shape, out_dim)) == ours
    if entry.reference_count is not None:
        counted = entry.reference_count(cfg["model_options"], build_context(cfg, shape, out_dim),
                                        entry.name)
        if counted is not None:
            assert counted.ours == ours, dict(counted.extras)


@pytest.mark.parametrize("contract", DIVERGENCE, ids=entry_id, indirect=True)
def test_divergence_trait(contract):
    """The trait promises what the density evaluation runs for claim 10: Hutchinson's
    estimator of its field's divergence beside the exact trace."""
    _, _, _, model, x, _, _ = contract
    check = hutchinson_check(model.eval(), x, 2, torch.Generator().manual_seed(0))
    assert check["points"] == len(x)
    for kind in ("gaussian", "rademacher"):
        assert all(math.isfinite(check[kind][k]) for k in ("mean_abs_exact", "mean_bias",
                                                           "mean_se")), check[kind]
