"""Where a run departs from the papers' protocol, derived from the configs.

The ``paper`` scale's resolved configuration *is* the papers' protocol. A run's deviations are
the differences between its resolved config and that of the same (experiment, dataset, model) at
scale ``paper`` or, where the paper scale does not run that dataset, the run on the dataset it
``stands_in_for`` (config/datasets.yaml): grouped into kinds (:data:`KINDS`), with the training
length as a share of the paper's optimiser steps.

Optimiser steps are counted per process, as the training loop counts them
(``odeflows.train.total_iterations``): ``iterations`` where given, else ``epochs`` ×
⌈n_train / (batch_size × processes)⌉, with n_train the size of the prepared training split (the
validation images are carved out of an official training set) and ``processes`` the run's
DistributedDataParallel process count, whose batch is per process. A DDP run of the paper thus
takes fewer, larger steps; the process count is listed as an optimisation difference.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import cache
from pathlib import Path
from typing import Any

from odeflows.config import (
    ConfigError,
    dataset_config,
    load_datasets,
    load_experiment,
    models_on,
    plan,
    resolve_run,
    run_resources,
    scale_entry,
)
from odeflows.registry import suggest
from odeflows.rundir import RunSpec

__all__ = ["IGNORED", "KINDS", "PAPER", "Deviations", "Difference", "ExperimentDeviations",
           "experiment_deviations", "optimiser_steps", "paper_counterpart",
           "protocol_deviations"]

PAPER = "paper"
KINDS = ("data", "solver", "architecture", "optimisation", "training length", "evaluation",
         "other")
LENGTH = "training length"

# Keys that change neither what is trained nor what is measured: the run's coordinates and seed
# (repeats, not protocol), where and how fast it runs, how often it checkpoints or logs, and the
# batch sizes of evaluation (the same numbers in more or fewer chunks). Patterns match dotted
# key paths of a resolved run config.
IGNORED = ("experiment", "scale", "seed", "modules", "variant",
           "data.generator", "data.kind",  # the dataset's name says it
           "train.threads", "train.device", "train.checkpoint_every", "train.val_every",
           "eval.batch_size", "eval.cost_batch", "eval.roundtrip_batch",
           "model_options.fused", "model_options.track_regularisers",  # kernels and logging
           "*.progress", "*.path", "*_path", "*.raw_root")

# (pattern, kind), first match wins
_KIND_OF = (("dataset", "data"), ("data.*", "data"),
            ("solver.*", "solver"), ("eval_solver.*", "solver"),
            ("model_options.*", "architecture"),
            ("train.epochs", LENGTH), ("train.iterations", LENGTH),
            ("train.*", "optimisation"),
            ("eval.*", "evaluation"), ("profile.*", "evaluation"),
            ("*", "other"))

# how summaries name a key: derived facts by name, the others by their path less its section
_LABELS = {"data.n_train": "training examples", "data.resolution": "resolution",
           "train.processes": "processes"}
_SECTION_LABELS = (("eval_solver.", "eval solver "), ("eval.", "eval "), ("solver.", ""),
                   ("model_options.", ""), ("train.", ""), ("data.", ""))


def kind_of(key: str) -> str:
    """The kind of deviation a dotted key path is (:data:`KINDS`)."""
    return next(kind for pattern, kind in _KIND_OF if fnmatchcase(key, pattern))


def _ignored(key: str) -> bool:
    return any(fnmatchcase(key, pattern) for pattern in IGNORED)


def _label(key: str) -> str:
    if key in _LABELS:
        return _LABELS[key]
    return next((label + key[len(prefix):] for prefix, label in _SECTION_LABELS
                 if key.startswith(prefix)), key)


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower() if value is not None else "none"
    if isinstance(value, float):
        if value != 0 and not 1e-2 <= abs(value) < 1e5:
            mantissa, exponent = f"{value:e}".split("e")
            return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
        return f"{value:g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def _percent(share: float) -> str:
    pct = 100 * share
    return f"{pct:.0f} %" if pct >= 10 else f"{pct:#.2g} %"


@dataclass(frozen=True)
class Difference:
    """One key whose value differs from the paper scale's."""

    kind: str
    key: str
    ours: Any
    paper: Any

    def __str__(self) -> str:
        return f"{_label(self.key)} {_fmt(self.ours)} (paper {_fmt(self.paper)})"


@dataclass(frozen=True)
class Deviations:
    """How one run's protocol differs from the paper scale's run of the same cell;
    ``paper_dataset`` is None where the paper scale has no such run to compare with."""

    experiment: str
    dataset: str
    model: str
    scale: str
    paper_dataset: str | None
    differences: tuple[Difference, ...] = ()
    steps: int | None = None
    paper_steps: int | None = None

    @property
    def step_share(self) -> float | None:
        """Our optimiser steps / the paper's (None without a training loop or a paper run)."""
        if self.steps is None or not self.paper_steps:
            return None
        return self.steps / self.paper_steps

    @property
    def substituted(self) -> bool:
        return self.paper_dataset is not None and self.paper_dataset != self.dataset

    @property
    def at_protocol(self) -> bool:
        return self.paper_dataset is not None and not self.differences

    def of_kind(self, kind: str) -> list[Difference]:
        if kind not in KINDS:
            raise ValueError(f"unknown kind of deviation {kind!r}{suggest(kind, KINDS)}; "
                             f"kinds: {', '.join(KINDS)}")
        return [d for d in self.differences if d.kind == kind]

    def get(self, key: str) -> Difference | None:
        return next((d for d in self.differences if d.key == key), None)

    def summary(self) -> str:
        """One line: the substitution, each kind's differences, the share of optimiser steps."""
        if self.paper_dataset is None:
            return f"{self.dataset}/{self.model}: no run at scale {PAPER} to compare with"
        if self.at_protocol:
            return "at the paper's protocol"
        return _summary_line(self.differences, [self])


@dataclass(frozen=True)
class ExperimentDeviations:
    """The deviations of every (dataset, model) an experiment runs at a scale."""

    experiment: str
    scale: str
    cells: dict[tuple[str, str], Deviations] = field(default_factory=dict)

    @property
    def min_step_share(self) -> float | None:
        shares = [d.step_share for d in self.cells.values() if d.step_share is not None]
        return min(shares) if shares else None

    @property
    def at_protocol(self) -> bool:
        return bool(self.cells) and all(d.at_protocol for d in self.cells.values())

    def distinct(self) -> list[Difference]:
        """Every difference of any cell, once, in order of first appearance."""
        seen: dict[tuple[str, str, str], Difference] = {}
        for dev in self.cells.values():
            for d in dev.differences:  # values may be lists: keyed by their text
                seen.setdefault((d.key, repr(d.ours), repr(d.paper)), d)
        return list(seen.values())

    def summary(self) -> str:
        if not self.cells:
            return f"not run at scale {self.scale}"
        if self.at_protocol:
            return "at the paper's protocol"
        missing = [f"{ds}/{m}" for (ds, m), d in self.cells.items() if d.paper_dataset is None]
        line = _summary_line(self.distinct(), list(self.cells.values()))
        if missing:
            line += f"; no paper-scale run for {', '.join(missing)}"
        return line

    def headline(self) -> str:
        """'at the paper's protocol' or 'on a substitute (<summary>)'."""
        return "at the paper's protocol" if self.at_protocol \
            else f"on a substitute ({self.summary()})"


def _summary_line(differences: Iterable[Difference], cells: list[Deviations]) -> str:
    by_key: dict[str, list[Difference]] = {}
    for d in differences:
        if d.key != "dataset" and d.kind != LENGTH:
            by_key.setdefault(d.key, []).append(d)
    parts: list[str] = []
    datasets = list(dict.fromkeys(
        f"{c.dataset} (for {c.paper_dataset})" if c.substituted else c.dataset for c in cells
        if c.paper_dataset is not None))
    for kind in KINDS:
        texts = [_merged(ds) for key, ds in by_key.items() if kind_of(key) == kind]
        if kind == "data" and any(c.substituted for c in cells):
            parts.append(f"on {', '.join(datasets)}" + (f": {', '.join(texts)}" if texts else ""))
        elif texts:
            parts.append(f"{kind}: {', '.join(texts)}")
    known = [c.step_share for c in cells if c.step_share is not None]
    if known:
        low, high = min(known), max(known)
        span = _percent(low) if _percent(low) == _percent(high) \
            else f"{_percent(low)[:-2]}–{_percent(high)}"
        steps = ""
        if len(cells) == 1:  # its share is known: both counts are
            steps = f" ({cells[0].steps:,} of {cells[0].paper_steps:,})"
        parts.append(f"{span} of the paper's optimiser steps{steps}")
    return "; ".join(parts)


def _merged(diffs: list[Difference]) -> str:
    """One key's differences across cells, its distinct values joined by '/'."""
    if len(diffs) == 1:
        return str(diffs[0])
    ours = list(dict.fromkeys(_fmt(d.ours) for d in diffs))
    paper = list(dict.fromkeys(_fmt(d.paper) for d in diffs))
    return f"{_label(diffs[0].key)} {'/'.join(ours)} (paper {'/'.join(paper)})"


# -- resolving and comparing ----------------------------------------------------------------------
def _stamp(experiment: str, config_dir: str | Path) -> tuple[Any, ...]:
    """What a cached answer depends on: the config files' paths, mtimes and sizes."""
    root = Path(config_dir).resolve()
    out = []
    for path in (root / "scales.yaml", root / "datasets.yaml",
                 root / "experiments" / f"{experiment}.yaml"):
        try:
            st = path.stat()
            out.append((str(path), st.st_mtime_ns, st.st_size))
        except OSError:
            out.append((str(path), 0, 0))
    return tuple(out)


def paper_counterpart(experiment: str, dataset: str, model: str,
                      config_dir: str | Path = "config") -> str | None:
    """The dataset of the paper-scale run a run on ``dataset`` is compared with: the same
    dataset where the paper scale runs it with ``model``, else the one it ``stands_in_for``
    (config/datasets.yaml); None where neither runs."""
    return _counterpart(experiment, dataset, model, str(config_dir),
                        _stamp(experiment, config_dir))


@cache
def _counterpart(experiment: str, dataset: str, model: str, config_dir: str,
                 stamp: tuple[Any, ...]) -> str | None:
    exp = load_experiment(experiment, config_dir)
    try:
        sc = scale_entry(exp, PAPER, config_dir)
    except ConfigError:
        return None
    datasets = load_datasets(config_dir)
    candidates = [dataset]
    target = datasets.get(dataset, {}).get("stands_in_for")
    if target is not None:
        if target not in datasets:
            raise ConfigError(f"{Path(config_dir) / 'datasets.yaml'}: {dataset}.stands_in_for: "
                              f"{target!r} is not a dataset of this file{suggest(target, datasets)}"
                              f"; name the dataset {dataset} stands in for, e.g. mnist")
        candidates.append(target)
    for ds in candidates:
        if ds in sc.get("datasets", exp["datasets"]) and model in models_on(sc, exp, ds):
            return ds
    return None


def _n_train(dataset: str, scale: str, config_dir: str | Path) -> int | None:
    """Size of the prepared training split, as odeflows.data.images carves it."""
    from odeflows.data.images import DATASETS, VAL_FRACTION, VAL_MAX

    cfg = dataset_config(dataset, scale, config_dir)
    sizes = cfg["sizes"]
    if sizes.get("train") is not None:
        return int(sizes["train"])
    image_set = DATASETS.get(cfg["generator"])
    if image_set is None or image_set.train_images is None:
        return None
    available = image_set.train_images
    n_val = sizes.get("val")
    n_val = min(round(VAL_FRACTION * available), VAL_MAX) if n_val is None else int(n_val)
    return available - n_val


def _resolution(dataset: str, scale: str, config_dir: str | Path) -> str | None:
    from odeflows.data import get_generator

    cfg = dataset_config(dataset, scale, config_dir)
    gen = get_generator(cfg["generator"])
    if gen.data != "images" or gen.shape is None:
        return None
    size = (cfg.get("params") or {}).get("image_size")
    height, width = (size, size) if size else gen.shape[1:]
    return f"{height}×{width}"


def optimiser_steps(train: dict[str, Any], n_train: int | None, processes: int = 1
                    ) -> int | None:
    """Optimiser steps per process: ``iterations`` if given, else ``epochs`` × batches per
    epoch (drop-last off, the batch per process), as the training loop counts them."""
    if train.get("iterations"):
        return int(train["iterations"])
    if n_train is None or not train.get("epochs"):
        return None
    per_epoch = max(1, math.ceil(n_train / (int(train["batch_size"]) * processes)))
    return int(train["epochs"]) * per_epoch


def _leaves(node: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            out.update(_leaves(value, path))
        else:
            out[path] = value
    return out


@cache
def _view(spec: RunSpec, config_dir: str, modules: tuple[str, ...],
          stamp: tuple[Any, ...]) -> tuple[dict[str, Any], int | None]:
    """(protocol keys → values, optimiser steps) of one run: its resolved config less the
    ignored keys, plus the derived facts the config implies (training-set size, resolution,
    process count); the optimiser steps are returned beside them, not diffed: their ratio is
    the step share."""
    from odeflows.tasks import get_task

    configs = _plan_configs(spec.experiment, spec.scale, config_dir, modules, stamp)
    cfg = configs.get((spec.dataset, spec.model)) or resolve_run(spec, config_dir, modules)
    flat = {k: v for k, v in _leaves(cfg).items() if not _ignored(k)}
    n_train = _n_train(spec.dataset, spec.scale, config_dir)
    processes = int(run_resources(spec.scale, spec.experiment, spec.dataset, config_dir)
                    .get("processes", 1))
    loop = get_task(cfg["task"]).loop
    steps = optimiser_steps(cfg["train"], n_train, processes) if loop else None
    derived = {"data.resolution": _resolution(spec.dataset, spec.scale, config_dir),
               "data.n_train": n_train, "train.processes": processes}
    # derived facts first: a summary names the resolution before the bit depth it qualifies
    return {**{k: v for k, v in derived.items() if v is not None}, **flat}, steps


def _kind_index(key: str) -> int:
    return KINDS.index(kind_of(key))


def protocol_deviations(experiment: str, dataset: str, model: str, scale: str,
                        config_dir: str | Path = "config", modules: Iterable[str] = ()
                        ) -> Deviations:
    """How the run (experiment, dataset, model) at ``scale`` differs from the paper scale's run
    of the same cell (or of the dataset it stands in for): every protocol key that differs
    (:data:`IGNORED` keys aside), grouped by kind, and the share of the paper's optimiser
    steps."""
    config_dir, mods = str(config_dir), tuple(modules)
    stamp = _stamp(experiment, config_dir)
    ours, steps = _view(RunSpec(scale, experiment, dataset, model, 0), config_dir, mods, stamp)
    paper_ds = _counterpart(experiment, dataset, model, config_dir, stamp)
    if paper_ds is None:
        return Deviations(experiment, dataset, model, scale, None, steps=steps)
    theirs, paper_steps = _view(RunSpec(PAPER, experiment, paper_ds, model, 0), config_dir, mods,
                                stamp)
    diffs = tuple(Difference(kind_of(k), k, ours.get(k), theirs.get(k))
                  for k in sorted(dict.fromkeys([*ours, *theirs]), key=_kind_index)
                  if ours.get(k) != theirs.get(k))
    return Deviations(experiment, dataset, model, scale, paper_ds, diffs, steps, paper_steps)


@cache
def _plan_configs(experiment: str, scale: str, config_dir: str, modules: tuple[str, ...],
                  stamp: tuple[Any, ...]) -> dict[tuple[str, str], dict[str, Any]]:
    """(dataset, model) → resolved config of every run ``experiment`` plans at ``scale`` (one
    plan resolves them all, much faster than one :func:`resolve_run` each)."""
    found = plan({"scale": scale, "config_dir": config_dir, "experiments": [experiment],
                  "modules": list(modules)})
    return {(s.dataset, s.model): found.config(s) for s in found.runs_of(experiment)
            if s.seed == 0}


def experiment_deviations(experiment: str, scale: str, config_dir: str | Path = "config",
                          modules: Iterable[str] = ()) -> ExperimentDeviations:
    """The deviations of every (dataset, model) ``experiment`` runs at ``scale`` (none where it
    runs no seeds there)."""
    config_dir, mods = str(config_dir), tuple(modules)
    cells = _plan_configs(experiment, scale, config_dir, mods, _stamp(experiment, config_dir))
    return ExperimentDeviations(experiment, scale, {
        (ds, m): protocol_deviations(experiment, ds, m, scale, config_dir, mods)
        for ds, m in cells})
