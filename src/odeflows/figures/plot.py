"""Every figure of one experiment: the figures of each task its runs have, then the registered
figures it names. This is what ``odeflows plot`` (the workflow's plot rule) runs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from odeflows.figure_names import get_figure
from odeflows.figures import draw
from odeflows.figures.view import Experiment
from odeflows.tasks import get_task

__all__ = ["plot_experiment"]


def plot_experiment(scale: str, experiment: str, out_dir: str | Path,
                    config_dir: str | Path = "config", modules: Sequence[str] = ()
                    ) -> list[Path]:
    """Write every figure of ``experiment`` at ``scale`` into ``out_dir`` as PNG and PDF: the
    figures of each task its runs have, over that task's datasets, then the registered figures
    the experiment names (``figures:``).

    Reads run directories (paths relative to the working directory) and prepared data only.
    Returns the paths written, PNG before PDF for each figure.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    exp = Experiment(scale, experiment, config_dir, modules)
    by_task: dict[str, list[str]] = {}
    for spec in exp.plan.runs:
        datasets = by_task.setdefault(exp.plan.configs[spec]["task"], [])
        if spec.dataset not in datasets:
            datasets.append(spec.dataset)
    paths: list[Path] = []
    with draw.style():
        for task, datasets in by_task.items():
            paths += get_task(task).figures(exp.restrict(datasets), out_dir)
        for name in exp.cfg.get("figures") or ():  # the experiment's own, over all its datasets
            paths += get_figure(name)(exp, out_dir)
    return paths
