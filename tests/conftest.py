from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# the SLURM configuration as the session found it (tests/test_slurm.py runs with it)
SLURM_CONF = os.environ.get("SLURM_CONF")

BASE_FLOW = {
    "experiment": "affjord_toy", "dataset": "hash", "model": "ffjord", "seed": 0,
    "scale": "smoke",
    "model_options": {"width": 16, "hyper_hidden": 8, "t_data": 1.0, "t_base": 0.0,
                      "base_std": 1.0, "divergence": "exact", "analytic_trace": True},
    "solver": {"method": "rk4", "steps": 4, "adjoint": False},
    "train": {"lr": 1e-2, "batch_size": 64, "iterations": 12, "val_every": 4,
              "checkpoint_every": 3, "threads": 1},
    "eval": {"batch_size": 256, "grid_points": 12, "grid_limit": 2.0, "samples": 50,
             "hutchinson_probes": 50},
}
# options only one family of flow fields accepts
FLOW_FIELDS = {"ffjord": {"field": "hyper_t"}, "rnode": {"field": "hyper_t"},
               "affjord": {"aug_dim": 2, "aug_hidden": 3},
               "affjord_rnode": {"aug_dim": 2, "aug_hidden": 3}}
BASE_REG = {
    "experiment": "anode_toy", "dataset": "spheres2d", "model": "node", "seed": 0,
    "scale": "smoke",
    "model_options": {"hidden": 16, "nonlinearity": "relu"},
    "solver": {"method": "dopri5", "rtol": 1e-3, "atol": 1e-3, "adjoint": False,
               "max_num_steps": 1000},
    "train": {"lr": 1e-3, "batch_size": 32, "epochs": 2, "checkpoint_every": 5, "threads": 1},
    "eval": {"batch_size": 256, "trajectory_points": 5},
}


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config.option, "loadscopereorder"):
        # pytest-xdist would order test files by their number of tests; keep the order below
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Start the tests that take minutes (marked `long_running`) first, longest first: in
    parallel runs the other workers then fill in around them instead of one worker starting the
    smoke workflow after the rest of the suite. The sort is stable, so a file's tests keep their
    order."""
    def minutes(item: pytest.Item) -> float:
        mark = item.get_closest_marker("long_running")
        return mark.kwargs["minutes"] if mark else 0.0
    items.sort(key=lambda item: -minutes(item))


@pytest.fixture(scope="session", autouse=True)
def _no_slurm_probe(tmp_path_factory):
    """Snakemake's SLURM executor plugin runs `scontrol show config` whenever Snakemake starts.
    Where SLURM is installed but no controller runs (CI outside the SLURM test), that blocks for
    10 s per Snakemake call, 60 s without a slurm.conf; an empty configuration makes it fail at
    once. Only tests/test_slurm.py talks to a cluster, with the session's own configuration."""
    empty = tmp_path_factory.mktemp("slurm") / "slurm.conf"
    empty.write_text("")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLURM_CONF", str(empty))
        yield


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    torch.set_num_threads(1)


def _config_factory(base: dict, default_model: str, per_model: dict | None = None):
    """A run config like ``base`` for ``model``, with shallow-merged section overrides, completed
    and checked by the same code as the workflow's (:func:`odeflows.config.complete_config`)."""
    from odeflows.config import complete_config

    def make(model: str = default_model, **over):
        cfg = copy.deepcopy(base)
        cfg["model"] = model
        cfg["model_options"] = {**cfg["model_options"], **(per_model or {}).get(model, {})}
        for key, value in over.items():
            cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
        return complete_config(cfg, ROOT / "config")
    return make


@pytest.fixture
def flow_cfg():
    return _config_factory(BASE_FLOW, "ffjord", FLOW_FIELDS)


@pytest.fixture
def reg_cfg():
    return _config_factory(BASE_REG, "node")


@pytest.fixture
def toy_data(tmp_path):
    """Prepared-data files in the real on-disk format, written by the real prepare code."""
    from odeflows.data.prepared import prepare

    def make(name: str, n: int = 256) -> Path:
        cfg = {"name": name, "seed": 0, "params": {},
               "sizes": {"train": n, "val": n // 2, "test": n // 2}}
        out = tmp_path / "data" / f"{name}.npz"
        prepare(cfg, out)
        return out
    return make


def finite_difference_jacobian(fn, x: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Central differences of fn: (B, D) -> (B, D), in float64; returns (B, D, D)."""
    x = x.double()
    cols = []
    for k in range(x.shape[1]):
        e = torch.zeros_like(x)
        e[:, k] = eps
        cols.append((fn(x + e) - fn(x - e)) / (2 * eps))
    return torch.stack(cols, dim=2)


np.set_printoptions(precision=5)
