"""Figures of the regression task (the ANODE toy experiments): training loss and forward NFE per
epoch for every dataset, hidden-state trajectories on ``g1d`` and learned features on
``spheres2d``.

Failed runs are left out of curves but counted in the legend, so a good-looking mean cannot hide
seeds that diverged.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from odeflows.figures import draw, view
from odeflows.figures.view import Experiment, RunView

__all__ = ["FEATURE_DATASETS", "TARGET_COLORS", "TRAJECTORY_DATASETS", "plot_regression"]

# targets get a red/blue pair that is not a model colour, so panels coloured by label are not
# misread as "this is the NODE curve"
TARGET_COLORS = {1.0: "#b2182b", -1.0: "#2166ac"}

# the ANODE figures these reproduce were drawn for these datasets only
TRAJECTORY_DATASETS = ("g1d",)
FEATURE_DATASETS = ("spheres2d",)


def _epoch_curves(exp: Experiment, out_dir: Path, name: str, column: str, title: str,
                  ylabel: str, models: Sequence[str]) -> list[Path]:
    paths: list[Path] = []
    for dataset in exp.datasets:
        fig, axes = draw.figure(1, 1, panel=(6.0, 4.0))
        ax = axes[0, 0]
        drawn = False
        for model in models:
            group, curves = exp.curves(dataset, model, lambda r: view.per_epoch(r, column))
            if not curves and not group.runs:
                continue
            drawn |= draw.group_band(ax, group, curves)
        if not drawn:
            draw.no_data(ax)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if drawn:
            ax.xaxis.get_major_locator().set_params(integer=True)
        draw.legend(ax)
        draw.title(fig, f"{title} — {dataset}", exp.caption(draw.BAND))
        paths += draw.save(fig, out_dir, f"{name}_{dataset}")
    return paths


def _has_nfe(exp: Experiment, model: str) -> bool:
    """Discrete models (ResNet) log zero NFE; leave them out rather than draw a flat zero line."""
    for dataset in exp.datasets:
        for run in exp.group(dataset, model).completed:
            series = view.per_epoch(run, "nfe_forward")
            if series is not None and (series > 0).any():
                return True
    # no data yet: keep ODE models in so their failures still show up in the legend
    return not any(exp.group(d, model).completed for d in exp.datasets)


def _target_legend(ax: Axes, extra: Sequence[Line2D] = ()) -> None:
    handles = [Line2D([], [], color=TARGET_COLORS[1.0], label="target +1"),
               Line2D([], [], color=TARGET_COLORS[-1.0], label="target −1"), *extra]
    ax.legend(handles=handles, fontsize=8, framealpha=0.85)


def _target_colors(y: np.ndarray) -> list[str]:
    return [TARGET_COLORS[1.0] if v > 0 else TARGET_COLORS[-1.0] for v in np.ravel(y)]


def _trajectories(exp: Experiment, out_dir: Path, dataset: str) -> list[Path]:
    name = f"trajectories_{dataset}"
    title = f"Hidden-state trajectories on {dataset} (first state coordinate)"
    panels: list[tuple[str, RunView | None, str]] = []
    for model in exp.models:
        run = exp.group(dataset, model).first_completed("trajectories.npz")
        panels.append((model, run, "time"))
        if (exp.config(dataset, model) or {}).get("model_options", {}).get("augment_dim"):
            # the augmented coordinate is where ANODE routes trajectories past each other
            panels.append((model, run, "phase"))
    if not any(run for _, run, _ in panels):
        return draw.empty_figure(out_dir, name, title, exp.caption(),
                                 exp.status_lines([dataset]))
    fig, axes = draw.figure(1, len(panels), panel=(4.0, 3.5))
    for ax, (model, run, kind) in zip(axes[0], panels, strict=True):
        data = run.arrays("trajectories") if run else None
        if data is None:
            ax.set_title(exp.name(model))
            draw.no_data(ax)
            continue
        states, times, y = _distinct_trajectories(data)
        colors = _target_colors(y)
        seed = f"seed {run.spec.seed}"
        if kind == "time":
            # few distinct lines (g1d) should read as solid lines; many should not saturate
            alpha = 0.9 if len(colors) <= 10 else 0.45
            for i, c in enumerate(colors):
                ax.plot(times, states[:, i, 0], color=c, alpha=alpha, linewidth=1.4,
                        marker="o" if model == "resnet" else None, markersize=3)
            # where each input should end up: readout is the first coordinate of the last state
            ax.scatter(np.full(len(y), times[-1]), np.ravel(y), c=colors, marker="*", s=90,
                       edgecolors="k", linewidths=0.5, zorder=3)
            discrete = model == "resnet"
            ax.set_xlabel("residual block" if discrete else "ODE time t")
            ax.set_ylabel("h₀ (first state coordinate)")
            ax.set_title(f"{exp.name(model)} ({seed})")
            if discrete:
                ax.xaxis.get_major_locator().set_params(integer=True)
            star = Line2D([], [], color="w", marker="*", markeredgecolor="k", markersize=10,
                          label="target at t end")
            _target_legend(ax, [star])
        else:
            aug = data["x"].shape[1]  # first augmented coordinate follows the d input coordinates
            if states.shape[2] <= aug:
                ax.set_title(f"{exp.name(model)}: augmented dimension")
                draw.no_data(ax, "no augmented dimension")
                continue
            alpha = 0.9 if len(colors) <= 10 else 0.45
            for i, c in enumerate(colors):
                ax.plot(states[:, i, 0], states[:, i, aug], color=c, alpha=alpha, linewidth=1.4)
            ax.scatter(states[0, :, 0], states[0, :, aug], c=colors, marker="o", s=18,
                       edgecolors="k", linewidths=0.4, zorder=3)
            ax.scatter(states[-1, :, 0], states[-1, :, aug], c=colors, marker="s", s=18,
                       edgecolors="k", linewidths=0.4, zorder=3)
            ax.set_xlabel("h₀ (first state coordinate)")
            ax.set_ylabel(f"h{_sub(aug)} (first augmented coordinate)")
            ax.set_title(f"{exp.name(model)}: h₀ vs augmented ({seed})")
            start = Line2D([], [], color="w", marker="o", markeredgecolor="k", label="t = 0")
            end = Line2D([], [], color="w", marker="s", markeredgecolor="k", label="t end")
            _target_legend(ax, [start, end])
        ax.grid(alpha=0.3)
    draw.title(fig, title, exp.caption("one test input per line, coloured by target"))
    return draw.save(fig, out_dir, name)


def _distinct_trajectories(data: dict[str, np.ndarray], limit: int = 200
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """States, times and targets of distinct test inputs only, at most ``limit`` of them.

    g1d's test set repeats x = ±1, so identical lines would be drawn dozens of times over; large
    test sets would bury the picture (and the PDF) under thousands of lines.
    """
    states, y = data["states"], np.ravel(data["y"])
    flat = np.concatenate([states.transpose(1, 0, 2).reshape(states.shape[1], -1),
                           y[:, None]], axis=1)
    _, keep = np.unique(flat, axis=0, return_index=True)
    keep = np.sort(keep)[:limit]
    return states[:, keep], data["times"], y[keep]


def _sub(i: int) -> str:
    return str(i).translate(str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉"))


def _features(exp: Experiment, out_dir: Path, dataset: str) -> list[Path]:
    name = f"features_{dataset}"
    title = f"Inputs and learned features on {dataset}: final hidden state (h₀, h₁)"
    runs = {m: exp.group(dataset, m).first_completed("trajectories.npz") for m in exp.models}
    loaded = {m: r.arrays("trajectories") if r else None for m, r in runs.items()}
    inputs = next((d for d in loaded.values() if d is not None), None)
    if inputs is None:
        return draw.empty_figure(out_dir, name, title, exp.caption(),
                                 exp.status_lines([dataset]))
    fig, axes = draw.figure(1, len(exp.models) + 1, panel=(3.6, 3.6))
    panels = [("input x", inputs["x"], inputs["y"], "x₁", "x₂")]
    for m in exp.models:
        d = loaded[m]
        label = exp.name(m) + (f" (seed {runs[m].spec.seed})" if runs[m] else "")
        panels.append((label, None if d is None else d["states"][-1], None if d is None
                       else d["y"], "h₀", "h₁"))
    for ax, (label, points, y, xl, yl) in zip(axes[0], panels, strict=True):
        ax.set_title(label)
        if points is None:
            draw.no_data(ax)
            continue
        second = points[:, 1] if points.shape[1] > 1 else np.zeros(len(points))
        ax.scatter(points[:, 0], second, c=_target_colors(y), s=12, alpha=0.8,
                   edgecolors="none")
        ax.set_xlabel(xl)
        ax.set_ylabel(yl if points.shape[1] > 1 else "(1-D state)")
        ax.grid(alpha=0.3)
    _target_legend(axes[0, 0])
    draw.title(fig, title, exp.caption("test inputs coloured by target"))
    return draw.save(fig, out_dir, name)


def plot_regression(exp: Experiment, out_dir: Path) -> list[Path]:
    """The regression task's figures: ``loss_<d>`` and ``nfe_<d>`` per dataset,
    ``trajectories_g1d`` and ``features_spheres2d``."""
    paths = _epoch_curves(exp, out_dir, "loss", "loss", "Training loss",
                          "training loss (smooth-L1, dimensionless)", exp.models)
    nfe_models = [m for m in exp.models if _has_nfe(exp, m)]
    paths += _epoch_curves(exp, out_dir, "nfe", "nfe_forward", "Forward NFE during training",
                           "forward NFE per iteration (evaluations)", nfe_models)
    for dataset in TRAJECTORY_DATASETS:
        if dataset in exp.datasets:
            paths += _trajectories(exp, out_dir, dataset)
    for dataset in FEATURE_DATASETS:
        if dataset in exp.datasets:
            paths += _features(exp, out_dir, dataset)
    return paths

