"""The view model of figures: one experiment's runs grouped by dataset and model, and the one
place that reads run directories and prepared data for figures.

Figures never train or evaluate: every number comes from the run directories
(:class:`odeflows.rundir.RunDir`: ``eval.json``, ``metrics.csv``, ``trajectories.npz``,
``density.npz``, ``samples.npz``, ``roundtrip.npz``, ``profile.csv``) and from
``data/prepared/<scale>``, so figures can be redrawn cheaply and always match the tables.
Models are named and coloured as their registry entries (or the experiment's ``display``) say.
"""

from __future__ import annotations

import copy
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from odeflows.config import load_datasets, load_experiment, plan
from odeflows.data.prepared import load as load_prepared
from odeflows.models import get_model
from odeflows.rundir import COMPLETED, RunDir, RunSpec

__all__ = ["COLUMNS", "Experiment", "Group", "RunView", "clear_metrics_cache", "fallback_color",
           "metrics", "per_epoch", "per_iteration", "prepared", "prepared_array"]

# a model without a declared colour gets one of these, stably (hash() of str is salted)
_FALLBACK_COLORS = ["tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"]


def fallback_color(model: str) -> str:
    """The colour of a model that declares none: the same in every process and figure."""
    return _FALLBACK_COLORS[sum(map(ord, model)) % len(_FALLBACK_COLORS)]


@dataclass
class RunView:
    """One run as figures see it: its coordinates, directory and status (completed, failed, or
    missing: not run yet, or eval.json unreadable)."""

    spec: RunSpec
    dir: RunDir
    status: str

    @classmethod
    def of(cls, spec: RunSpec) -> RunView:
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

    def config(self) -> dict[str, Any] | None:
        """The resolved config the run recorded (``config.json``), or None."""
        return self.dir.config()

    def arrays(self, name: str) -> dict[str, np.ndarray] | None:
        """``<name>.npz`` (``trajectories``, ``density``, ``samples``, ``roundtrip``), or None
        when absent or unreadable."""
        return self.dir.arrays(name)

    def profile(self) -> pd.DataFrame | None:
        """``profile.csv`` of a memory-profile run, or None."""
        return self.dir.profile()


@dataclass
class Group:
    """All seeds of one (dataset, model)."""

    dataset: str
    model: str
    runs: list[RunView]
    color: str = "0.3"

    @property
    def completed(self) -> list[RunView]:
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

    def first_completed(self, path_name: str) -> RunView | None:
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
        runs = [RunView.of(s) for s in self.plan.runs]
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

    def curves(self, dataset: str, model: str, fn: Callable[[RunView], pd.Series | None]
               ) -> tuple[Group, list[pd.Series]]:
        """The (dataset, model) group and ``fn`` of each of its completed runs, empty results
        left out."""
        group = self.group(dataset, model)
        curves = [fn(r) for r in group.completed]
        return group, [c for c in curves if c is not None and not c.empty]

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
# training logs


COLUMNS = ("iteration", "epoch", "loss", "bpd", "accuracy", "kinetic", "jacobian", "nfe_forward",
           "nfe_backward", "step_time", "val_loss", "val_accuracy")
"""The columns of ``metrics.csv`` that figures use."""


@lru_cache(maxsize=32)
def _read_metrics(path: str, mtime_ns: int, size: int) -> pd.DataFrame | None:
    df = RunDir(Path(path).parent).metrics()
    if df is None or df.empty or "iteration" not in df:
        return None
    df = df[[c for c in COLUMNS if c in df]].apply(pd.to_numeric, errors="coerce")
    df = df.dropna(subset=["iteration"])
    df = df.sort_values("iteration").reset_index(drop=True)
    if df.empty:
        return None
    if "nfe_forward" in df:
        backward = df["nfe_backward"].fillna(0) if "nfe_backward" in df else 0.0
        df["nfe_total"] = df["nfe_forward"] + backward
    if "step_time" in df:
        # RNODE's training time: the sum of step times (validation and checkpoints excluded)
        df["train_seconds"] = df["step_time"].fillna(0).cumsum()
    return df


def metrics(run: RunView) -> pd.DataFrame | None:
    """The :data:`COLUMNS` of a run's ``metrics.csv`` as numbers sorted by iteration, with the
    derived columns ``nfe_total`` (forward + backward) and ``train_seconds`` (cumulative step
    time); None when there is no log with an iteration column.

    Read once per version of the file, since every figure of a dataset reads the same logs (see
    :func:`clear_metrics_cache`); callers must not modify the frame."""
    path = run.path / "metrics.csv"
    try:
        stat = path.stat()
    except OSError:
        return None
    return _read_metrics(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


def clear_metrics_cache() -> None:
    """Forget the logs :func:`metrics` has read (paper-scale logs are large: figures clear them
    after each dataset)."""
    _read_metrics.cache_clear()


def per_iteration(run: RunView, column: str) -> pd.Series | None:
    """``column`` indexed by iteration, rows without a value left out; None when empty."""
    df = metrics(run)
    if df is None or column not in df:
        return None
    series = pd.Series(df[column].to_numpy(dtype=float), index=df["iteration"].to_numpy(int))
    series = series.dropna()
    return None if series.empty else series


def per_epoch(run: RunView, column: str) -> pd.Series | None:
    """Epoch means of ``column``, indexed from 1 like the papers (epochs are stored 0-based);
    None when empty."""
    df = metrics(run)
    if df is None or column not in df or "epoch" not in df:
        return None
    series = df[column].groupby(df["epoch"]).mean().dropna()
    if series.empty:
        return None
    series.index = series.index.astype(int) + 1
    return series


# ---------------------------------------------------------------------------------------------
# prepared data


def _prepared_path(scale: str, dataset: str) -> Path:
    return Path("data") / "prepared" / scale / f"{dataset}.npz"


def prepared(scale: str, dataset: str) -> dict[str, np.ndarray] | None:
    """The prepared splits of ``dataset`` (paths relative to the working directory), or None."""
    try:
        return load_prepared(_prepared_path(scale, dataset))
    except (FileNotFoundError, OSError, ValueError):
        return None


def prepared_array(scale: str, dataset: str, key: str, limit: int) -> np.ndarray | None:
    """The first ``limit`` items of one prepared array, without reading the others (prepared
    paper-scale image sets hold the whole training split); None when absent or unreadable."""
    path = _prepared_path(scale, dataset)
    if not path.exists():
        return None
    try:
        with np.load(path) as data:
            return data[key][:limit] if key in data.files else None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None
