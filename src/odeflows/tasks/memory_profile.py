"""Memory and time of one training step against the number of solver steps, with the adjoint
and with backpropagation through the solver (the Neural ODE note's §2.2 claim). Named by an
experiment (``task: memory_profile``); each model is measured on the loss of the task it would be
trained with on that dataset (a regressor regresses the labels, a flow fits the density)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from odeflows.registry import Deferred
from odeflows.tasks import EVAL_BATCH, Task, register_task

__all__ = ["MemoryProfileTask"]


class MemoryProfileTask(Task):
    name = "memory_profile"
    automatic = False
    loop = False
    eval_options = EVAL_BATCH
    sections = {"profile": {
        "type": "object", "additionalProperties": False, "required": ["steps"],
        "properties": {
            "steps": {"type": "array", "items": {"type": "integer", "minimum": 1},
                      "minItems": 1, "description": "fixed-grid solver steps to measure"},
            "repeats": {"type": "integer", "minimum": 1, "default": 1},
        }}}
    table_keys = ("model", "mode", "steps")
    headlines = ("direct_memory_growth_ratio", "adjoint_memory_growth_ratio")
    runner = Deferred("odeflows.profiling:profile")
    evaluator = Deferred("odeflows.profiling:evaluate_profile")
    summariser = Deferred("odeflows.profiling:summarise_profile")
    formatter = Deferred("odeflows.profiling:profile_markdown")
    drawer = Deferred("odeflows.figures.memory:plot_memory")

    def accepts(self, model, data) -> str | None:
        from odeflows.tasks import select_task

        try:
            select_task(model, data)
        except ValueError as err:
            return str(err)
        return None

    def execute(self, cfg: dict[str, Any], data_path: str | Path, run_dir: str | Path,
                progress: bool = True) -> dict[str, Any]:
        return self.runner(cfg, data_path, run_dir)

    def evaluate_run(self, run_dir: str | Path, data_path: str | Path) -> dict[str, Any]:
        return self.evaluator(run_dir)

    def summarise(self, runs, reference):
        return self.summariser(list(runs["run_dir"]))

    def markdown(self, table, title: str) -> str:
        return self.formatter(table, title)

    def curves(self, runs):
        # memory and time against solver steps: the summary itself
        return self.summarise(runs, None)


register_task(MemoryProfileTask())
