"""Figures of one experiment, drawn from finished run directories and prepared data only.

Nothing here trains or evaluates a model: every number comes from the run directories
(:class:`odeflows.rundir.RunDir`: ``eval.json``, ``metrics.csv``, ``trajectories.npz``,
``density.npz``, ``profile.csv``) and from ``data/prepared/<scale>``, so figures can be redrawn
cheaply and always match the tables. Failed runs are left out of curves but counted in the
legend, so a good-looking mean cannot hide seeds that diverged. Which figures an experiment gets
is its runs' tasks' choice (:meth:`odeflows.tasks.Task.figures`); models are named and coloured
as their registry entries (or the experiment's ``display``) say. Each figure is written as PNG
(for the report) and PDF (for papers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd

from odeflows.config import load_datasets, load_experiment, plan
from odeflows.data.prepared import load as load_prepared
from odeflows.models import get_model
from odeflows.rundir import COMPLETED, RunDir, RunSpec
from odeflows.tasks import get_task

# Agg before pyplot: the workflow runs headless and must never try to open a display
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator  # noqa: E402

DPI = 130
NO_DATA = "no completed runs"

# a model without a declared colour gets one of these, stably (hash() of str is salted)
_FALLBACK_COLORS = ["tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"]
# targets get a red/blue pair that is not a model colour, so panels coloured by label are not
# misread as "this is the NODE curve"
TARGET_COLORS = {1.0: "#b2182b", -1.0: "#2166ac"}
MODE_STYLE = {
    "direct": {"color": "tab:purple", "marker": "o", "label": "direct (backprop through solver)"},
    "adjoint": {"color": "tab:green", "marker": "s", "label": "adjoint"},
}
DATA_COLOR = "0.25"

# the ANODE figures these reproduce were drawn for these datasets only
TRAJECTORY_DATASETS = ("g1d",)
FEATURE_DATASETS = ("spheres2d",)


def fallback_color(model: str) -> str:
    return _FALLBACK_COLORS[sum(map(ord, model)) % len(_FALLBACK_COLORS)]


@dataclass
class Run:
    """One run: its coordinates, directory and status (completed, failed, or missing: not run
    yet, or eval.json unreadable)."""

    spec: RunSpec
    dir: RunDir
    status: str

    @classmethod
    def of(cls, spec: RunSpec) -> Run:
        rd = RunDir.of(spec)
        return cls(spec, rd, rd.status)

    @property
    def ok(self) -> bool:
        return self.status == COMPLETED

    @property
    def path(self) -> Path:
        return self.dir.path

    @property
    def evaluation(self) -> dict[str, Any]:
        """What ``eval.json`` says (empty when missing)."""
        return self.dir.evaluation() or {}


@dataclass
class Group:
    """All seeds of one (dataset, model)."""

    dataset: str
    model: str
    runs: list[Run]
    color: str = "0.3"

    @property
    def completed(self) -> list[Run]:
        return [r for r in self.runs if r.ok]

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.runs)

    def label(self, n_used: int | None = None, name: str | None = None) -> str:
        """Legend label such as ``node (4 seeds, 1 failed)``; ``n_used`` = seeds in the curve."""
        n = len(self.completed) if n_used is None else n_used
        parts = [f"{n} seed{'s' if n != 1 else ''}"]
        if self.count("failed"):
            parts.append(f"{self.count('failed')} failed")
        if self.count("missing"):
            parts.append(f"{self.count('missing')} missing")
        return f"{name or self.model} ({', '.join(parts)})"

    def first_completed(self, path_name: str) -> Run | None:
        """The lowest completed seed that has ``path_name`` (seed 0 unless that one failed)."""
        for run in sorted(self.runs, key=lambda r: r.spec.seed):
            if run.ok and run.dir.has(path_name):
                return run
        return None


class Experiment:
    """The run matrix of one experiment at one scale, grouped by dataset and model."""

    def __init__(self, scale: str, experiment: str, config_dir: str | Path,
                 modules: Sequence[str] = ()):
        self.scale = scale
        self.id = experiment
        self.config_dir = Path(config_dir)
        self.cfg = load_experiment(experiment, config_dir)
        self.plan = plan({"scale": scale, "experiments": [experiment],
                          "config_dir": str(config_dir), "modules": list(modules)})
        runs = [Run.of(s) for s in self.plan.runs]
        # keep the experiment file's order (e.g. resnet, node, anode) rather than alphabetical
        ds_order = {d: i for i, d in enumerate(self.cfg["datasets"])}
        m_order = {m: i for i, m in enumerate(self.cfg["models"])}
        self.datasets = sorted({r.spec.dataset for r in runs}, key=lambda d: ds_order.get(d, 99))
        self.models = sorted({r.spec.model for r in runs}, key=lambda m: m_order.get(m, 99))
        self.groups = {
            (d, m): Group(d, m, [r for r in runs if (r.spec.dataset, r.spec.model) == (d, m)])
            for d in self.datasets for m in self.models
        }
        for group in self.groups.values():
            group.color = self.color(group.model)
        self.seeds = len({r.spec.seed for r in runs}) or 1

    def group(self, dataset: str, model: str) -> Group:
        return self.groups.get((dataset, model), Group(dataset, model, []))

    def config(self, dataset: str, model: str) -> dict[str, Any] | None:
        """The resolved run config of a (dataset, model) cell (seed 0's)."""
        return self.plan.configs.get(RunSpec(self.scale, self.id, dataset, model, 0))

    def _entry(self, model: str) -> Any | None:
        for d in self.datasets:
            cfg = self.config(d, model)
            if cfg is not None:
                return get_model(cfg["model"], cfg["data"]["kind"])
        return None

    def name(self, model: str) -> str:
        """Display name: the experiment's ``display`` label, else the model entry's label."""
        shown = self.cfg.get("display", {}).get(model, {})
        entry = self._entry(model)
        if "label" in shown:
            return shown["label"]
        return entry.label if entry is not None and entry.label and \
            model not in self.cfg.get("variants", {}) else model

    def color(self, model: str) -> str:
        """One colour per model across every figure, so curves can be matched between them."""
        shown = self.cfg.get("display", {}).get(model, {})
        entry = self._entry(model)
        if "color" in shown:
            return shown["color"]
        if entry is not None and entry.color and model not in self.cfg.get("variants", {}):
            return entry.color
        return fallback_color(model)

    def restrict(self, datasets: Sequence[str]) -> Experiment:
        """The same experiment seen through ``datasets`` only (runs and groups are shared)."""
        import copy

        view = copy.copy(self)
        view.datasets = [d for d in self.datasets if d in set(datasets)]
        return view

    def image_datasets(self) -> list[str]:
        """The experiment's datasets of images (as their generators declare)."""
        kinds = {s.dataset: c["data"]["kind"] for s, c in self.plan.configs.items()}
        return [d for d in self.datasets if kinds.get(d) == "images"]

    def dataset_title(self, dataset: str) -> str:
        """How figures title a dataset (offline subsets say what they are)."""
        return load_datasets(self.config_dir).get(dataset, {}).get("title", dataset)

    def status_lines(self, datasets: Sequence[str] | None = None) -> list[str]:
        """One legend-style line per (dataset, model), for figures with nothing to draw."""
        datasets = self.datasets if datasets is None else datasets
        lines = []
        for d in datasets:
            labels = [self.group(d, m).label() for m in self.models]
            lines.append(f"{d}: " + "; ".join(labels) if len(datasets) > 1 else "; ".join(labels))
        return lines

    def caption(self, extra: str = "") -> str:
        text = f"{self.scale} scale · {self.seeds} seed{'s' if self.seeds != 1 else ''} per model"
        return f"{text} · {extra}" if extra else text


# ---------------------------------------------------------------------------------------------
# small helpers


def _figure(n_rows: int, n_cols: int, panel: tuple[float, float] = (4.2, 3.3),
            **kwargs: Any) -> tuple[Figure, np.ndarray]:
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(panel[0] * n_cols, panel[1] * n_rows + 0.7),
                             layout="constrained", squeeze=False, **kwargs)
    return fig, axes


def _title(fig: Figure, title: str, caption: str) -> None:
    # one suptitle with the caption on a second line: constrained layout reserves space for it,
    # which it would not do for a free-floating fig.text subtitle
    fig.suptitle(f"{title}\n{caption}", fontsize=11)


def _no_data(ax: Axes, message: str = NO_DATA) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes,
            fontsize=11, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _save(fig: Figure, out_dir: Path, name: str) -> list[Path]:
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=DPI)
    # the layout is already solved (it is in inches, so the same for the PDF); solving it again
    # would double the cost of every figure
    fig.set_layout_engine("none")
    fig.savefig(paths[1])
    plt.close(fig)
    return paths


def _empty_figure(out_dir: Path, name: str, title: str, caption: str,
                  details: Sequence[str] = ()) -> list[Path]:
    """Placeholder saying that nothing completed, and per model why (failed or not yet run)."""
    fig, axes = _figure(1, 1, panel=(8.0, 3.5))
    axes[0, 0].set_axis_off()
    axes[0, 0].text(0.5, 0.6, NO_DATA, ha="center", va="center", fontsize=14, color="0.4")
    if details:
        axes[0, 0].text(0.5, 0.45, "\n".join(details), ha="center", va="top", fontsize=9,
                        color="0.4")
    _title(fig, title, caption)
    return _save(fig, out_dir, name)


def _metrics(run: Run) -> pd.DataFrame | None:
    df = run.dir.metrics()
    return None if df is None or df.empty else df


def _prepared(scale: str, dataset: str) -> dict[str, np.ndarray] | None:
    try:
        return load_prepared(Path("data") / "prepared" / scale / f"{dataset}.npz")
    except (FileNotFoundError, OSError, ValueError):
        return None


def _band(ax: Axes, curves: Sequence[pd.Series], color: str, label: str,
          marker: str | None = None, linestyle: str = "-") -> bool:
    """Mean line and ±1 std band over seeds; curves are aligned on their index (x values)."""
    curves = [c.dropna() for c in curves if c is not None]
    curves = [c for c in curves if not c.empty]
    if not curves:
        return False
    table = pd.concat(curves, axis=1).sort_index()
    x = table.index.to_numpy(dtype=float)
    mean = table.mean(axis=1).to_numpy()
    # ddof=1 like the tables; a single seed has no spread to show, so no band
    std = table.std(axis=1, ddof=1).to_numpy() if table.shape[1] > 1 else np.zeros_like(mean)
    std = np.nan_to_num(std)
    # markers only where points are sparse enough to be seen individually (smoke-sized runs)
    mk = marker if marker is not None else ("o" if len(x) <= 25 else None)
    ax.plot(x, mean, color=color, label=label, marker=mk, markersize=4, linestyle=linestyle,
            linewidth=1.6)
    if table.shape[1] > 1:
        ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
    return True


def _legend(ax: Axes, **kwargs: Any) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, framealpha=0.85, **kwargs)


def _image_panel(ax: Axes) -> None:
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


# ---------------------------------------------------------------------------------------------
# regression (ANODE toy experiments)


def _per_epoch(run: Run, column: str) -> pd.Series | None:
    metrics = _metrics(run)
    if metrics is None or column not in metrics or "epoch" not in metrics:
        return None
    values = pd.to_numeric(metrics[column], errors="coerce")
    series = values.groupby(metrics["epoch"]).mean().dropna()
    # epochs are stored 0-based; the papers count from 1
    series.index = series.index.astype(int) + 1
    return series


def _epoch_curves(exp: Experiment, out_dir: Path, name: str, column: str, title: str,
                  ylabel: str, models: Sequence[str]) -> list[Path]:
    paths: list[Path] = []
    for dataset in exp.datasets:
        fig, axes = _figure(1, 1, panel=(6.0, 4.0))
        ax = axes[0, 0]
        drawn = False
        for model in models:
            group = exp.group(dataset, model)
            curves = [_per_epoch(r, column) for r in group.completed]
            curves = [c for c in curves if c is not None and not c.empty]
            if not curves and not group.runs:
                continue
            if _band(ax, curves, exp.color(model), group.label(len(curves))):
                drawn = True
            else:
                # still name the model so a reader sees it was attempted and why it is absent
                ax.plot([], [], color=exp.color(model), label=group.label(0))
        if not drawn:
            _no_data(ax)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if drawn:
            ax.xaxis.get_major_locator().set_params(integer=True)
        _legend(ax)
        _title(fig, f"{title} — {dataset}", exp.caption("mean ± std over seeds"))
        paths += _save(fig, out_dir, f"{name}_{dataset}")
    return paths


def _has_nfe(exp: Experiment, model: str) -> bool:
    """Discrete models (ResNet) log zero NFE; leave them out rather than draw a flat zero line."""
    for dataset in exp.datasets:
        for run in exp.group(dataset, model).completed:
            series = _per_epoch(run, "nfe_forward")
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
    panels: list[tuple[str, Run | None, str]] = []
    for model in exp.models:
        run = exp.group(dataset, model).first_completed("trajectories.npz")
        panels.append((model, run, "time"))
        if (exp.config(dataset, model) or {}).get("model_options", {}).get("augment_dim"):
            # the augmented coordinate is where ANODE routes trajectories past each other
            panels.append((model, run, "phase"))
    if not any(run for _, run, _ in panels):
        return _empty_figure(out_dir, name, title, exp.caption(), exp.status_lines([dataset]))
    fig, axes = _figure(1, len(panels), panel=(4.0, 3.5))
    for ax, (model, run, kind) in zip(axes[0], panels, strict=True):
        data = run.dir.arrays("trajectories") if run else None
        if data is None:
            ax.set_title(exp.name(model))
            _no_data(ax)
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
                _no_data(ax, "no augmented dimension")
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
    _title(fig, title, exp.caption("one test input per line, coloured by target"))
    return _save(fig, out_dir, name)


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
    loaded = {m: r.dir.arrays("trajectories") if r else None for m, r in runs.items()}
    inputs = next((d for d in loaded.values() if d is not None), None)
    if inputs is None:
        return _empty_figure(out_dir, name, title, exp.caption(), exp.status_lines([dataset]))
    fig, axes = _figure(1, len(exp.models) + 1, panel=(3.6, 3.6))
    panels = [("input x", inputs["x"], inputs["y"], "x₁", "x₂")]
    for m in exp.models:
        d = loaded[m]
        label = exp.name(m) + (f" (seed {runs[m].spec.seed})" if runs[m] else "")
        panels.append((label, None if d is None else d["states"][-1], None if d is None
                       else d["y"], "h₀", "h₁"))
    for ax, (label, points, y, xl, yl) in zip(axes[0], panels, strict=True):
        ax.set_title(label)
        if points is None:
            _no_data(ax)
            continue
        second = points[:, 1] if points.shape[1] > 1 else np.zeros(len(points))
        ax.scatter(points[:, 0], second, c=_target_colors(y), s=12, alpha=0.8,
                   edgecolors="none")
        ax.set_xlabel(xl)
        ax.set_ylabel(yl if points.shape[1] > 1 else "(1-D state)")
        ax.grid(alpha=0.3)
    _target_legend(axes[0, 0])
    _title(fig, title, exp.caption("test inputs coloured by target"))
    return _save(fig, out_dir, name)


def plot_regression(exp: Experiment, out_dir: Path) -> list[Path]:
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


# ---------------------------------------------------------------------------------------------
# density (AFFJORD toy experiments)


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


def _densities(exp: Experiment, out_dir: Path) -> list[Path]:
    name, title = "densities", "Data and learned densities"
    prepared = {d: _prepared(exp.scale, d) for d in exp.datasets}
    dens = {(d, m): r.dir.arrays("density") if r else None
            for d in exp.datasets for m in exp.models
            for r in [exp.group(d, m).first_completed("density.npz")]}
    if all(v is None for v in dens.values()) and all(v is None for v in prepared.values()):
        return _empty_figure(out_dir, name, title, exp.caption(), exp.status_lines())
    fig, axes = _figure(len(exp.datasets), len(exp.models) + 1, panel=(3.0, 3.0))
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
            _no_data(ax, "no prepared 2-D data")
        for col, model in enumerate(exp.models, start=1):
            ax = axes[row, col]
            d = dens[(dataset, model)]
            if d is None:
                _no_data(ax, f"{NO_DATA}\n{exp.group(dataset, model).label()}")
                continue
            axis = d["axis"]
            # logp[i, j] sits at (x=axis[j], y=axis[i]): row 0 is the lowest y, hence origin=lower
            ax.imshow(np.exp(d["logp"]), origin="lower", cmap="viridis", interpolation="nearest",
                      extent=(axis[0], axis[-1], axis[0], axis[-1]))
            ax.text(0.03, 0.03, f"∫p on grid = {float(d['mass']):.2f}", transform=ax.transAxes,
                    fontsize=7, color="w", va="bottom")
        for col in range(len(exp.models) + 1):
            _image_panel(axes[row, col])
            axes[row, col].set_xlim(-lim, lim)
            axes[row, col].set_ylim(-lim, lim)
        axes[row, 0].set_ylabel(dataset, fontsize=11)
    axes[0, 0].set_title("data (test histogram)")
    for col, model in enumerate(exp.models, start=1):
        axes[0, col].set_title(f"{exp.name(model)} density p(x) "
                               f"({_seed_text(exp, model, 'density.npz')})")
    _title(fig, title, exp.caption(f"x, y ∈ [−{lim:g}, {lim:g}]; colour = density (per panel)"))
    return _save(fig, out_dir, name)


def _val_series(run: Run) -> pd.Series | None:
    metrics = _metrics(run)
    if metrics is None or "val_loss" not in metrics:
        return None
    val = pd.to_numeric(metrics["val_loss"], errors="coerce")
    keep = val.notna()
    return pd.Series(val[keep].to_numpy(), index=metrics.loc[keep, "iteration"].to_numpy())


def _val_loss(exp: Experiment, out_dir: Path) -> list[Path]:
    name, title = "val_loss", "Validation NLL during training"
    fig, axes = _figure(1, len(exp.datasets), panel=(4.6, 3.6))
    any_drawn = False
    for ax, dataset in zip(axes[0], exp.datasets, strict=True):
        drawn = False
        for model in exp.models:
            group = exp.group(dataset, model)
            curves = [c for c in (_val_series(r) for r in group.completed)
                      if c is not None and not c.empty]
            if _band(ax, curves, exp.color(model), group.label(len(curves))):
                drawn = True
            else:
                ax.plot([], [], color=exp.color(model), label=group.label(0))
        if not drawn:
            _no_data(ax)
        any_drawn |= drawn
        ax.set_title(dataset)
        ax.set_xlabel("training iteration")
        ax.set_ylabel("validation NLL (nats per sample)")
        ax.grid(alpha=0.3)
        _legend(ax)
    if not any_drawn:
        plt.close(fig)
        return _empty_figure(out_dir, name, title, exp.caption(), exp.status_lines())
    _title(fig, title, exp.caption("mean ± std over seeds"))
    return _save(fig, out_dir, name)


def _samples(exp: Experiment, out_dir: Path) -> list[Path]:
    name, title = "samples", "Data and model samples"
    samples = {(d, m): r.dir.arrays("density") if r else None
               for d in exp.datasets for m in exp.models
               for r in [exp.group(d, m).first_completed("density.npz")]}
    if all(v is None for v in samples.values()):
        return _empty_figure(out_dir, name, title, exp.caption(), exp.status_lines())
    fig, axes = _figure(len(exp.datasets), len(exp.models) + 1, panel=(3.0, 3.0))
    lim = _grid_limit(exp)
    for row, dataset in enumerate(exp.datasets):
        data = _prepared(exp.scale, dataset)
        cells: list[tuple[np.ndarray | None, str, str]] = [
            (None if data is None else data["x_test"], DATA_COLOR, "no prepared data")]
        for model in exp.models:
            d = samples[(dataset, model)]
            cells.append((None if d is None else d["samples"], exp.color(model),
                          f"{NO_DATA}\n{exp.group(dataset, model).label()}"))
        for col, (points, color, missing) in enumerate(cells):
            ax = axes[row, col]
            if points is None or points.ndim != 2 or points.shape[1] < 2:
                _no_data(ax, missing)
            else:
                # same number of points in each panel so density of dots is comparable
                n = min(len(points), 2000)
                ax.scatter(points[:n, 0], points[:n, 1], s=3, alpha=0.5, color=color,
                           edgecolors="none")
            _image_panel(ax)
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
        axes[row, 0].set_ylabel(dataset, fontsize=11)
    axes[0, 0].set_title("data (test set)")
    for col, model in enumerate(exp.models, start=1):
        axes[0, col].set_title(f"{exp.name(model)} samples "
                               f"({_seed_text(exp, model, 'density.npz')})")
    _title(fig, title, exp.caption(f"x, y ∈ [−{lim:g}, {lim:g}]"))
    return _save(fig, out_dir, name)


def plot_density(exp: Experiment, out_dir: Path) -> list[Path]:
    return _densities(exp, out_dir) + _val_loss(exp, out_dir) + _samples(exp, out_dir)


# ---------------------------------------------------------------------------------------------
# memory profile (adjoint vs backprop through the solver)


def _profile_vs_steps(exp: Experiment, out_dir: Path, name: str, column: str, scale: float,
                      title: str, ylabel: str) -> list[Path]:
    tables: dict[str, list[pd.DataFrame]] = {m: [] for m in exp.models}
    for model in exp.models:
        for dataset in exp.datasets:
            for run in exp.group(dataset, model).completed:
                prof = run.dir.profile()
                if prof is not None and {"mode", "steps", column} <= set(prof.columns):
                    tables[model].append(prof.assign(seed=run.spec.seed))
    if not any(tables.values()):
        return _empty_figure(out_dir, name, title, exp.caption(), exp.status_lines())
    fig, axes = _figure(1, len(exp.models), panel=(4.8, 3.8))
    for ax, model in zip(axes[0], exp.models, strict=True):
        groups = [exp.group(d, model) for d in exp.datasets]
        failed = sum(g.count("failed") for g in groups)
        missing = sum(g.count("missing") for g in groups)
        ax.set_title(exp.name(model))
        if not tables[model]:
            _no_data(ax, f"{NO_DATA}\n{groups[0].label()}" if groups else NO_DATA)
            continue
        prof = pd.concat(tables[model], ignore_index=True)
        n_seeds = prof["seed"].nunique()
        n_rep = prof.groupby(["seed", "mode", "steps"]).size().max()
        order = list(MODE_STYLE)
        for mode in sorted(prof["mode"].unique(),
                           key=lambda m: (order.index(m) if m in order else len(order), m)):
            style = MODE_STYLE.get(mode, {"color": "0.3", "marker": "^", "label": mode})
            sub = prof[prof["mode"] == mode]
            # one curve per (seed, repeat) so the band is the spread over both, as in the table
            curves = [g.set_index("steps")[column].astype(float) * scale
                      for _, g in sub.groupby(["seed", "repeat"] if "repeat" in sub else "seed")]
            extra = "".join(f", {k} {w}" for k, w in ((failed, "failed"), (missing, "missing"))
                            if k)
            label = (f"{style['label']} ({n_seeds} seed{'s' if n_seeds != 1 else ''} × "
                     f"{n_rep} repeat{'s' if n_rep != 1 else ''}{extra})")
            _band(ax, curves, style["color"], label, marker=style["marker"])
        steps = np.sort(prof["steps"].unique())
        if len(steps) > 1:
            # a slope-1 guide makes "linear in steps" vs "flat" readable on log–log axes
            direct = prof[prof["mode"] == "direct"]
            anchor = direct if not direct.empty else prof
            y0 = float(anchor[anchor["steps"] == steps[0]][column].mean()) * scale
            ax.plot(steps, y0 * steps / steps[0], color="0.5", linestyle=":", linewidth=1,
                    label="∝ steps (guide)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.margins(x=0.06, y=0.12)
        ax.set_xticks(steps, [str(int(s)) for s in steps])
        ax.xaxis.set_minor_locator(NullLocator())
        _log_ticks(ax)
        ax.set_xlabel("solver steps (fixed-step RK4)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
        # the curves fill the whole panel (and the flat adjoint line hugs an edge), so the legend
        # goes under the axes where it cannot hide data
        _legend(ax, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    _title(fig, title, exp.caption("mean ± std over seeds and repeats; log–log axes"))
    return _save(fig, out_dir, name)


def _log_ticks(ax: Axes) -> None:
    """Plain-number ticks on a log y axis, dense enough to read values off a narrow range.

    Matplotlib's defaults label only powers of ten, which leaves no label at all when the data
    span less than a decade (flat adjoint memory, smoke-sized step ranges).
    """
    lo, hi = ax.get_ylim()
    decades = range(int(np.floor(np.log10(lo))) - 1, int(np.ceil(np.log10(hi))) + 1)
    for subs in ((1.0,), (1.0, 2.0, 5.0), (1.0, 2.0, 3.0, 5.0), tuple(np.arange(1.0, 10.0))):
        ticks = [m * 10.0**k for k in decades for m in subs if lo <= m * 10.0**k <= hi]
        if len(ticks) >= 3:
            break
    if not ticks:  # degenerate range (e.g. all values equal): keep matplotlib's choice
        return
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    ax.yaxis.set_minor_locator(NullLocator())


def plot_memory(exp: Experiment, out_dir: Path) -> list[Path]:
    return (
        _profile_vs_steps(exp, out_dir, "memory_vs_steps", "peak_saved_bytes", 1 / 2**20,
                          "Peak memory saved for backward vs solver steps",
                          "peak saved tensors (MiB)")
        + _profile_vs_steps(exp, out_dir, "time_vs_steps", "seconds", 1.0,
                            "Time per training step vs solver steps",
                            "seconds per training step (s)")
    )


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
    # one style for every figure, without touching the global rcParams of a calling process
    with plt.rc_context({"axes.titlesize": 10, "axes.labelsize": 9, "xtick.labelsize": 8,
                         "ytick.labelsize": 8}):
        for task, datasets in by_task.items():
            paths += get_task(task).figures(exp.restrict(datasets), out_dir)
        if exp.cfg.get("figures"):
            from odeflows.figures import get_figure

            for name in exp.cfg["figures"]:  # the experiment's own, over all its datasets
                paths += get_figure(name)(exp, out_dir)
    return paths
