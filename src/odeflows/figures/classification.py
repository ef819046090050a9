"""Figures of the classification task (ANODE conv NODE/ANODE image classifiers), per dataset:
``loss_<d>`` and ``nfe_<d>`` per epoch, ``nfe_vs_loss_<d>`` (ANODE Fig. 10) and
``accuracy_vs_nfe_<d>`` (ANODE Fig. 11), from the runs' ``metrics.csv`` and ``eval.json``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from odeflows.figures import draw, view
from odeflows.figures.view import Experiment, RunView

__all__ = ["plot_classification"]


def _loss(exp: Experiment, out_dir: Path, dataset: str) -> list[Path]:
    name = f"loss_{dataset}"
    title = f"Training loss — {exp.dataset_title(dataset)}"
    fig, axes = draw.figure(1, 1, panel=(6.8, 4.2))
    ax = axes[0, 0]
    drawn = False
    for model in exp.models:
        group, curves = exp.curves(dataset, model, lambda r: view.per_epoch(r, "loss"))
        drawn |= draw.group_band(ax, group, curves)
    if not drawn:
        draw.close(fig)
        return draw.empty_figure(out_dir, name, title, exp.caption(), exp.status_lines([dataset]))
    draw.style_axes(ax, "epoch", "training cross-entropy (nats, epoch mean)", integer_x=True)
    draw.legend(ax)
    draw.title_fit(fig, title, exp.caption(f"{draw.BAND}; cf. ANODE Fig. 10 (left)"))
    return draw.save(fig, out_dir, name)


def _classifier_nfe(exp: Experiment, out_dir: Path, dataset: str) -> list[Path]:
    name = f"nfe_{dataset}"
    title = f"NFE per training iteration — {exp.dataset_title(dataset)}"
    fig, axes = draw.figure(1, 1, panel=(6.8, 4.2))
    ax = axes[0, 0]
    drawn, backward = False, False
    for model in exp.models:
        group, forward = exp.curves(dataset, model, lambda r: view.per_epoch(r, "nfe_forward"))
        drawn |= draw.group_band(ax, group, forward)
        _, back = exp.curves(dataset, model, lambda r: view.per_epoch(r, "nfe_backward"))
        back = [b for b in back if (b > 0).any()]  # 0 when backpropagating through the solver
        if back:
            backward = True
            draw.group_band(ax, group, back, linestyle="--", labelled=False)
    if not drawn:
        draw.close(fig)
        return draw.empty_figure(out_dir, name, title, exp.caption(), exp.status_lines([dataset]))
    draw.style_axes(ax, "epoch", "function evaluations per iteration (epoch mean)", integer_x=True)
    draw.style_legend(ax, [("-", "forward"), ("--", "backward (adjoint)")] if backward else [])
    note = "" if backward else "; no backward NFE logged (no adjoint)"
    draw.title_fit(fig, title, exp.caption(f"{draw.BAND}{note}; cf. ANODE Fig. 10 (middle)"))
    return draw.save(fig, out_dir, name)


def _epoch_points(run: RunView, x: str, y: str) -> pd.DataFrame | None:
    """Epoch means of two columns of one run, one row per epoch with both present."""
    xs, ys = view.per_epoch(run, x), view.per_epoch(run, y)
    if xs is None or ys is None:
        return None
    both = pd.concat({"x": xs, "y": ys}, axis=1).dropna()
    return None if both.empty else both


def _scatter_models(ax: Axes, exp: Experiment, dataset: str, x: str, y: str,
                    y_scale: float = 1.0) -> bool:
    """Epoch-mean (x, y) of every completed seed, coloured by model; later epochs darker."""
    drawn = False
    for model in exp.models:
        group = exp.group(dataset, model)
        points = [p for p in (_epoch_points(r, x, y) for r in group.completed) if p is not None]
        if not points:
            ax.scatter([], [], color=exp.color(model), label=group.label(0))
            continue
        table = pd.concat(points)
        last = max(int(table.index.max()), 1)
        alpha = 0.35 + 0.65 * table.index.to_numpy(dtype=float) / last
        ax.scatter(table["x"], table["y"] * y_scale, color=exp.color(model), s=26,
                   alpha=np.clip(alpha, 0.2, 1.0), edgecolors="none")
        # the legend marker is opaque whatever the first point's alpha
        ax.scatter([], [], color=exp.color(model), s=26, label=group.label(len(points)))
        drawn = True
    return drawn


def _nfe_vs_loss(exp: Experiment, out_dir: Path, dataset: str) -> list[Path]:
    name = f"nfe_vs_loss_{dataset}"
    title = f"NFE vs training loss — {exp.dataset_title(dataset)}"
    fig, axes = draw.figure(1, 1, panel=(6.8, 4.2))
    ax = axes[0, 0]
    if not _scatter_models(ax, exp, dataset, "nfe_forward", "loss"):
        draw.close(fig)
        return draw.empty_figure(out_dir, name, title, exp.caption(), exp.status_lines([dataset]))
    draw.style_axes(ax, "forward NFE per iteration (epoch mean)",
                    "training cross-entropy (nats, epoch mean)")
    draw.legend(ax)
    draw.title_fit(fig, title, exp.caption("one point per seed and epoch, later epochs more "
                                           "opaque; cf. ANODE Fig. 10 (right)"))
    return draw.save(fig, out_dir, name)


def _accuracy_vs_nfe(exp: Experiment, out_dir: Path, dataset: str) -> list[Path]:
    name = f"accuracy_vs_nfe_{dataset}"
    title = f"Accuracy vs NFE and accuracy per epoch — {exp.dataset_title(dataset)}"
    fig, axes = draw.figure(1, 2, panel=(4.8, 3.9))
    left, right = axes[0]
    drawn = _scatter_models(left, exp, dataset, "nfe_forward", "accuracy", y_scale=100.0)
    right_drawn, tested = False, False
    for model in exp.models:
        group, curves = exp.curves(dataset, model, lambda r: view.per_epoch(r, "val_accuracy"))
        right_drawn |= draw.group_band(right, group, [c * 100.0 for c in curves])
        test = [float(r.evaluation["test_accuracy"]) * 100.0 for r in group.completed
                if isinstance(r.evaluation.get("test_accuracy"), (int, float))]
        if test:
            tested = True
            right.axhline(float(np.mean(test)), color=exp.color(model), linestyle=":",
                          linewidth=1.3)
    if not (drawn or right_drawn):
        draw.close(fig)
        return draw.empty_figure(out_dir, name, title, exp.caption(), exp.status_lines([dataset]))
    left.set_title("training accuracy vs forward NFE")
    if drawn:
        draw.style_axes(left, "forward NFE per iteration (epoch mean)",
                        "training accuracy % (epoch mean of batches)")
    else:
        draw.no_data(left)
    draw.legend(left)
    right.set_title("validation accuracy per epoch")
    if right_drawn:
        draw.style_axes(right, "epoch", "validation accuracy % (held-out training images)",
                        integer_x=True)
    else:
        draw.no_data(right)
    draw.style_legend(right, [(":", "test accuracy (eval.json, mean)")] if tested else [])
    draw.title_fit(fig, title, exp.caption(f"left: one point per seed and epoch; right: "
                                           f"{draw.BAND}; cf. ANODE Fig. 11"))
    return draw.save(fig, out_dir, name)


def plot_classification(exp: Experiment, out_dir: Path) -> list[Path]:
    """The classification task's four figures for each dataset."""
    paths: list[Path] = []
    for dataset in exp.datasets:
        for figure in (_loss, _classifier_nfe, _nfe_vs_loss, _accuracy_vs_nfe):
            paths += figure(exp, out_dir, dataset)
        view.clear_metrics_cache()
    return paths
