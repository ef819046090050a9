"""Tasks: what a run is trained to do and how it is judged.

Everything that differs between regression, classification, 2-D density, image density and
memory profiling belongs to a :class:`Task`: the loss of a batch, the score of a held-out split,
the evaluation options and what evaluation writes, the run's entry point (training or
profiling), the columns and labels of its tables, the headline metrics and its figures. The task
of a run is chosen once, when its configuration is resolved, from the facts its model entry and
its dataset generator declare (:func:`select_task`), or named by the experiment
(``task: memory_profile``); every other module asks the task object.

Built-in tasks are the modules of this package; a user's own module registers more with
:func:`register_task`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from odeflows.registry import Deferred, Registry

if TYPE_CHECKING:
    import pandas as pd
    import torch
    from torch import nn

    from odeflows.data import DatasetGenerator
    from odeflows.models import ModelEntry
    from odeflows.rundir import RunDir

__all__ = ["EVAL_BATCH", "FLOW_EVAL_OPTIONS", "TASKS", "Task", "batches", "counted", "device_of",
           "get_task", "no_grad", "register_task", "select_task", "task_for"]

Options = Mapping[str, dict[str, Any]]

# every task: the evaluation batch size
EVAL_BATCH = {"batch_size": {"type": "integer", "minimum": 1, "default": 1000}}
# the density tasks: what odeflows.evidence.flows measures besides the scores
FLOW_EVAL_OPTIONS: Options = {
    "cost_batch": {"type": "integer", "minimum": 0, "default": 0,
                   "description": "points for the cost of log p vs sampling (0: not measured)"},
    "cost_repeats": {"type": "integer", "minimum": 1, "default": 3,
                     "description": "timed repeats of each direction (the fastest counts)"},
    "roundtrip_batch": {"type": "integer", "minimum": 0, "default": 0,
                        "description": "test points for the x → z → x error (0: not measured)"},
    "roundtrip_tolerances": {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0},
                             "default": [1.0e-3, 1.0e-5, 1.0e-7, 1.0e-9],
                             "description": "rtol = atol of the adaptive solver for the round "
                                            "trip of a model with an eval_solver"},
    "roundtrip_method": {"enum": ["dopri5", "dopri8", "bosh3", "adaptive_heun", "tsit5"],
                         "default": "dopri5"},
}


class Task:
    """Base task: supervised or not, trained by the shared loop, scored on a held-out split,
    summarised as mean ± std over successful seeds per (dataset, model)."""

    name: str = ""
    #: chosen automatically from model and dataset facts (False: only when an experiment names it)
    automatic: bool = True
    #: its runs go through the shared training loop (which needs epochs or iterations)
    loop: bool = True
    supervised: bool = False
    #: allowed keys of the run config's ``eval`` section (JSON schema fragments with defaults)
    eval_options: Options = EVAL_BATCH
    #: extra allowed keys of the ``train`` section
    train_options: Options = {}
    #: extra top-level sections of the run config this task reads (e.g. ``profile``)
    sections: Options = {}
    #: columns of the summary table (means/stds over seeds), in order, with their labels
    metrics: tuple[str, ...] = ()
    labels: Mapping[str, str] = {}
    #: columns `dvc metrics` shows per (dataset, model)
    headlines: tuple[str, ...] = ()
    #: the rows of its table
    table_keys: tuple[str, ...] = ("dataset", "model")
    module: str = ""
    #: the stage functions that do its work, named (not imported: a declaration must not depend
    #: on the stages that read it) and resolved when called
    runner = Deferred("odeflows.train:train")
    evaluator = Deferred("odeflows.evaluate:evaluate")
    summariser = Deferred("odeflows.tables:summarise")
    formatter = Deferred("odeflows.tables:to_markdown")
    curve_table = Deferred("odeflows.tables:training_curves")
    #: ``draw(exp, out_dir) -> list[Path]`` of its own figures (None: it has none)
    drawer: Deferred | None = None

    # -- selection ------------------------------------------------------------------------------
    def accepts(self, model: ModelEntry, data: DatasetGenerator) -> str | None:
        """None when this task can train ``model`` on ``data``, else why not."""
        return "not applicable"

    def configure(self, cfg: dict[str, Any]) -> Task:
        """The task as a resolved run config sets it up (default: itself)."""
        return self

    # -- training ---------------------------------------------------------------------------------
    def execute(self, cfg: dict[str, Any], data_path: str | Path, run_dir: str | Path,
                progress: bool = True) -> dict[str, Any]:
        """The run's job: training by the shared loop (profiling for memory profiles)."""
        return self.runner(cfg, data_path, run_dir, progress=progress)

    def output_dim(self, meta: dict[str, Any], y: torch.Tensor | None) -> int:
        return y.shape[1] if y is not None and y.dim() > 1 else 1

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None,
             generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def score(self, model: nn.Module, x: np.ndarray, y: np.ndarray | None, batch_size: int,
              generator: torch.Generator) -> dict[str, Any]:
        raise NotImplementedError

    # -- evaluation -------------------------------------------------------------------------------
    def evaluate_run(self, run_dir: str | Path, data_path: str | Path) -> dict[str, Any]:
        """Score a finished run on its test split (never retrains); writes ``eval.json``."""
        return self.evaluator(run_dir, data_path)

    def test_scores(self, model: nn.Module, data: dict[str, np.ndarray], cfg: dict[str, Any],
                    generator: torch.Generator) -> dict[str, Any]:
        """``test_<score>`` of the best-validation weights in eval mode."""
        test = self.score(model, data["x_test"], data.get("y_test"),
                          int(cfg["eval"]["batch_size"]), generator)
        return {f"test_{k}": v for k, v in test.items()}

    def evidence(self, model: nn.Module, data: dict[str, np.ndarray], cfg: dict[str, Any],
                 generator: torch.Generator, run: RunDir) -> dict[str, Any]:
        """What else a completed run's evaluation records (checks, arrays for figures written
        into ``run``); called after :meth:`test_scores` with the same generator."""
        return {}

    def run_columns(self, evaluation: dict[str, Any]) -> dict[str, Any]:
        """Per-seed table columns derived from nested entries of ``eval.json``."""
        return {}

    # -- tables and figures -----------------------------------------------------------------------
    def summarise(self, runs: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
        return self.summariser(runs, self.metrics, reference)

    def markdown(self, table: pd.DataFrame, title: str) -> str:
        return self.formatter(table, self.metrics, self.labels, title)

    def curves(self, runs: pd.DataFrame) -> pd.DataFrame:
        return self.curve_table(runs)

    def figures(self, exp: Any, out_dir: Path) -> list[Path]:
        return [] if self.drawer is None else self.drawer(exp, out_dir)


TASKS: Registry[Task] = Registry("task", packages=("odeflows.tasks",))


def register_task(task: Task) -> Task:
    if not task.module:
        task.module = type(task).__module__
    return TASKS.add(task.name, task)


def get_task(name: str) -> Task:
    return TASKS.get(name)


def select_task(model: ModelEntry, data: DatasetGenerator, requested: str | None = None) -> Task:
    """The task of ``model`` on ``data``: the experiment's ``requested`` task when it names one
    (it must accept the pair), else the one automatic task that accepts it."""
    if requested is not None:
        task = get_task(requested)
        why = task.accepts(model, data)
        if why:
            raise ValueError(f"task {requested!r} cannot run model {model.name!r} on dataset "
                             f"generator {data.name!r}: {why}")
        return task
    fits = [t for t in TASKS.all() if t.automatic and not t.accepts(model, data)]
    if len(fits) != 1:
        kinds = "/".join(sorted(model.kinds))
        what = "no task" if not fits else f"several tasks ({', '.join(t.name for t in fits)})"
        raise ValueError(f"{what} fit(s) model {model.name!r} ({kinds} on {model.data}) with "
                         f"dataset generator {data.name!r} ({data.data}, targets "
                         f"{data.targets}); name one with the experiment's 'task' key")
    return fits[0]


def task_for(cfg: dict[str, Any]) -> Task:
    """The configured task object of a resolved run config."""
    return get_task(cfg["task"]).configure(cfg)


# -- helpers shared by the tasks ------------------------------------------------------------------
def batches(n: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


F = TypeVar("F", bound=Callable[..., Any])


def no_grad(fn: F) -> F:
    """``torch.no_grad()`` as a decorator that imports torch when called, not when the task
    module is imported: tasks are selected, validated and tabulated without torch (planning the
    workflow, building tables), which saves each such process the seconds torch takes."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)
    return wrapper  # type: ignore[return-value]


def device_of(model: nn.Module) -> torch.device:
    """Where a model lives (a closed-form model may hold buffers only)."""
    import torch

    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def counted(model: nn.Module, fn: Any, *args: Any) -> tuple[Any, int]:
    """``fn(*args)`` and the network passes (NFE) it took."""
    from odeflows.ode import count_nfe, reset_nfe

    reset_nfe(model)
    out = fn(*args)
    return out, count_nfe(model)
