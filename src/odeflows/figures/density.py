"""Figures of the density task (the AFFJORD toy experiments): the data and each model's learned
density on a grid, validation NLL during training, and data against model samples.

Each column of the density and sample panels shows one seed (seed 0 unless it failed), which
its title names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from odeflows.figures import draw, view
from odeflows.figures.view import Experiment

__all__ = ["plot_density"]


def _grid_limit(exp: Experiment) -> float:
    for d in exp.datasets:
        for m in exp.models:
            cfg = exp.config(d, m)
            if cfg is not None and "grid_limit" in cfg["eval"]:
                return float(cfg["eval"]["grid_limit"])
    return 1.6


def _seed_text(exp: Experiment, model: str, path_name: str) -> str:
    """Which seed a column shows: seed 0, unless it failed somewhere and another stood in."""
    seeds = sorted({r.spec.seed for d in exp.datasets
                    for r in [exp.group(d, model).first_completed(path_name)] if r})
    return "seed " + "/".join(map(str, seeds)) if seeds else "no completed run"


def _frame_grid(exp: Experiment, axes: np.ndarray, lim: float, data_title: str,
                what: str) -> None:
    """Square panels over [−lim, lim]², one dataset per row, the data then one model per
    column, titled on the first row."""
    for row, dataset in enumerate(exp.datasets):
        for ax in axes[row]:
            draw.image_panel(ax)
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
        axes[row, 0].set_ylabel(dataset, fontsize=11)
    axes[0, 0].set_title(data_title)
    for col, model in enumerate(exp.models, start=1):
        axes[0, col].set_title(f"{exp.name(model)} {what} "
                               f"({_seed_text(exp, model, 'density.npz')})")


def _densities(exp: Experiment, out_dir: Path) -> list[Path]:
    name, title = "densities", "Data and learned densities"
    prepared = {d: view.prepared(exp.scale, d) for d in exp.datasets}
    dens = {(d, m): r.arrays("density") if r else None
            for d in exp.datasets for m in exp.models
            for r in [exp.group(d, m).first_completed("density.npz")]}
    if all(v is None for v in dens.values()) and all(v is None for v in prepared.values()):
        return draw.empty_figure(out_dir, name, title, exp.caption(), exp.status_lines())
    fig, axes = draw.figure(len(exp.datasets), len(exp.models) + 1, panel=(3.0, 3.0))
    lim = _grid_limit(exp)
    for row, dataset in enumerate(exp.datasets):
        ax = axes[row, 0]
        data = prepared[dataset]
        if data is not None and data["x_test"].shape[1] == 2:
            x = data["x_test"]
            # ~1.5 sqrt(n) bins: fine enough to show the shape, coarse enough not to look like noise
            bins = int(np.clip(1.5 * np.sqrt(len(x)), 20, 100))
            ax.hist2d(x[:, 0], x[:, 1], bins=bins, range=[[-lim, lim], [-lim, lim]],
                      cmap="viridis")
        else:
            draw.no_data(ax, "no prepared 2-D data")
        for col, model in enumerate(exp.models, start=1):
            ax = axes[row, col]
            d = dens[(dataset, model)]
            if d is None:
                draw.no_data(ax, f"{draw.NO_DATA}\n{exp.group(dataset, model).label()}")
                continue
            axis = d["axis"]
            # logp[i, j] sits at (x=axis[j], y=axis[i]): row 0 is the lowest y, hence origin=lower
            ax.imshow(np.exp(d["logp"]), origin="lower", cmap="viridis", interpolation="nearest",
                      extent=(axis[0], axis[-1], axis[0], axis[-1]))
            ax.text(0.03, 0.03, f"∫p on grid = {float(d['mass']):.2f}", transform=ax.transAxes,
                    fontsize=7, color="w", va="bottom")
    _frame_grid(exp, axes, lim, "data (test histogram)", "density p(x)")
    draw.title(fig, title, exp.caption(f"x, y ∈ [−{lim:g}, {lim:g}]; colour = density (per panel)"))
    return draw.save(fig, out_dir, name)


def _val_loss(exp: Experiment, out_dir: Path) -> list[Path]:
    name, title = "val_loss", "Validation NLL during training"
    fig, axes = draw.figure(1, len(exp.datasets), panel=(4.6, 3.6))
    any_drawn = False
    for ax, dataset in zip(axes[0], exp.datasets, strict=True):
        drawn = False
        for model in exp.models:
            group, curves = exp.curves(dataset, model, lambda r: view.per_iteration(r, "val_loss"))
            drawn |= draw.group_band(ax, group, curves)
        if not drawn:
            draw.no_data(ax)
        any_drawn |= drawn
        ax.set_title(dataset)
        ax.set_xlabel("training iteration")
        ax.set_ylabel("validation NLL (nats per sample)")
        ax.grid(alpha=0.3)
        draw.legend(ax)
    if not any_drawn:
        draw.close(fig)
        return draw.empty_figure(out_dir, name, title, exp.caption(), exp.status_lines())
    draw.title(fig, title, exp.caption(draw.BAND))
    return draw.save(fig, out_dir, name)


def _samples(exp: Experiment, out_dir: Path) -> list[Path]:
    name, title = "samples", "Data and model samples"
    samples = {(d, m): r.arrays("density") if r else None
               for d in exp.datasets for m in exp.models
               for r in [exp.group(d, m).first_completed("density.npz")]}
    if all(v is None for v in samples.values()):
        return draw.empty_figure(out_dir, name, title, exp.caption(), exp.status_lines())
    fig, axes = draw.figure(len(exp.datasets), len(exp.models) + 1, panel=(3.0, 3.0))
    lim = _grid_limit(exp)
    for row, dataset in enumerate(exp.datasets):
        data = view.prepared(exp.scale, dataset)
        cells: list[tuple[np.ndarray | None, str, str]] = [
            (None if data is None else data["x_test"], draw.DATA_COLOR, "no prepared data")]
        for model in exp.models:
            d = samples[(dataset, model)]
            cells.append((None if d is None else d["samples"], exp.color(model),
                          f"{draw.NO_DATA}\n{exp.group(dataset, model).label()}"))
        for col, (points, color, missing) in enumerate(cells):
            ax = axes[row, col]
            if points is None or points.ndim != 2 or points.shape[1] < 2:
                draw.no_data(ax, missing)
            else:
                # same number of points in each panel so density of dots is comparable
                n = min(len(points), 2000)
                ax.scatter(points[:n, 0], points[:n, 1], s=3, alpha=0.5, color=color,
                           edgecolors="none")
    _frame_grid(exp, axes, lim, "data (test set)", "samples")
    draw.title(fig, title, exp.caption(f"x, y ∈ [−{lim:g}, {lim:g}]"))
    return draw.save(fig, out_dir, name)


def plot_density(exp: Experiment, out_dir: Path) -> list[Path]:
    """The density task's figures: ``densities``, ``val_loss`` and ``samples``, each with one
    row per dataset."""
    return _densities(exp, out_dir) + _val_loss(exp, out_dir) + _samples(exp, out_dir)
