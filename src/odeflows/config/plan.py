"""The plan of a scale: the workflow configuration checked, every experiment file checked (every
settings layer at every scale as well, so a value the selected scale overrides, or one of a scale
not selected, is reported now rather than when that scale runs), and every run of the run matrix
— experiment × dataset × model × seed — resolved; then the scheduler resources of a training job
and the command that launches it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from odeflows.config.checks import (
    check_dataset,
    check_names,
    experiment_layer_problems,
    malformed_layer_problems,
    unused_datasets_problems,
)
from odeflows.config.errors import ConfigError
from odeflows.config.loading import experiment_ids, load_datasets, load_experiment, load_scales
from odeflows.config.resolve import (
    dataset_config,
    entry_sources,
    models_on,
    resolve_spec,
    scale_entry,
)
from odeflows.config.schemas import messages, schema, validator
from odeflows.registry import suggest
from odeflows.rundir import RunSpec

__all__ = ["Plan", "launcher", "plan", "run_matrix", "run_resources", "validate_workflow"]


@dataclass
class Plan:
    """Every run of a validated configuration, with its resolved config."""

    scale: str
    config_dir: str
    experiments: list[str]
    modules: list[str]
    configs: dict[RunSpec, dict[str, Any]] = field(default_factory=dict)

    @property
    def runs(self) -> list[RunSpec]:
        return sorted(self.configs)

    def runs_of(self, experiment: str) -> list[RunSpec]:
        return [s for s in self.runs if s.experiment == experiment]

    def config(self, spec: RunSpec) -> dict[str, Any]:
        return self.configs[spec]

    def datasets(self) -> list[str]:
        return sorted({s.dataset for s in self.configs})


def validate_workflow(config: dict[str, Any]) -> dict[str, Any]:
    """The workflow config with defaults (all experiments of the config dir by default)."""
    cfg = {"config_dir": "config", "modules": [], "scale": "laptop", **config}
    problems = [f"config: {k}: {m}" for k, m in
                messages(validator(schema("workflow")), cfg)]
    if problems:
        raise ConfigError(problems)
    known = experiment_ids(cfg["config_dir"])
    if not known:
        raise ConfigError(f"no experiment files in {Path(cfg['config_dir']) / 'experiments'}")
    cfg.setdefault("experiments", known)
    unknown = [e for e in cfg["experiments"] if e not in known]
    if unknown:
        raise ConfigError([f"config: experiments: unknown experiment {e!r}{suggest(e, known)}; "
                           f"experiments (files in {Path(cfg['config_dir']) / 'experiments'}): "
                           f"{', '.join(known)}" for e in unknown])
    scales = load_scales(cfg["config_dir"])
    if cfg["scale"] not in scales:
        raise ConfigError(f"config: scale: {cfg['scale']!r} is not a scale"
                          f"{suggest(cfg['scale'], scales)}; allowed values: "
                          f"{', '.join(scales)} (config/scales.yaml)")
    return cfg


def plan(config: dict[str, Any]) -> Plan:
    """Check the whole configuration of a scale and resolve every run; raises one
    :class:`ConfigError` listing every problem found."""
    from odeflows import plugins

    cfg = validate_workflow(config)
    scale, config_dir = cfg["scale"], cfg["config_dir"]
    problems: list[str] = []
    experiments: dict[str, dict[str, Any]] = {}
    malformed = []
    for exp_id in cfg["experiments"]:
        try:
            experiments[exp_id] = load_experiment(exp_id, config_dir)
        except ConfigError as err:
            problems += err.problems
            malformed.append(exp_id)
    modules = _modules_of(cfg, experiments.values())
    try:
        plugins.load(modules)
    except ImportError as err:
        raise ConfigError(problems + [str(err)]) from None
    for exp_id in malformed:
        problems += [p for p in malformed_layer_problems(exp_id, config_dir) if p not in problems]
    try:
        datasets = load_datasets(config_dir)
        scales = load_scales(config_dir)
    except ConfigError as err:
        raise ConfigError(problems + err.problems) from None
    ds_file = str(Path(config_dir) / "datasets.yaml")
    checked: set[str] = set()
    result = Plan(scale, config_dir, list(cfg["experiments"]), modules)
    # every layer at every scale; reported after the resolved runs, which say more of a value
    # they also find wrong (the run, the model, the task)
    in_layers: dict[str, list[tuple[str, str, str]]] = {}
    flagged: dict[str, set[tuple[str, str]]] = {}
    sources: dict[str, list[str]] = {}
    for exp_id, exp in experiments.items():
        where = str(Path(config_dir) / "experiments" / f"{exp_id}.yaml")
        problems += check_names(exp, where, datasets, scales)
        in_layers[exp_id] = experiment_layer_problems(exp, where)
        try:
            sc = scale_entry(exp, scale, config_dir)
        except ConfigError as err:
            problems += [f"{where}: {p}" for p in err.problems]
            continue
        sources[exp_id] = entry_sources(exp, scale, config_dir)
        if "seeds" not in sc:
            problems.append(f"{where}: scales.{scale}.seeds: missing (how many repeated runs)")
            continue
        if int(sc["seeds"]) == 0:  # declared not to run at this scale
            result.experiments.remove(exp_id)
            continue
        for dataset in sc.get("datasets", exp["datasets"]):
            if dataset not in datasets:
                continue  # reported by check_names
            if dataset not in checked:
                checked.add(dataset)
                problems += check_dataset(dataset, datasets[dataset], ds_file)
                try:
                    dataset_config(dataset, scale, config_dir)
                except ConfigError as err:
                    problems += err.problems
            for model in models_on(sc, exp, dataset):
                if not _takes(exp, model, dataset, sc, datasets):
                    continue  # e.g. an image baseline beside toy sets in a mixed experiment
                spec0 = RunSpec(scale, exp_id, dataset, model, 0)
                run_cfg, found = resolve_spec(spec0, exp, sc, datasets, _modules_of(cfg, [exp]),
                                          config_dir, flagged.setdefault(exp_id, set()))
                problems += [p for p in found if p not in problems]
                if run_cfg is None or found:
                    continue
                for seed in range(int(sc["seeds"])):
                    result.configs[RunSpec(scale, exp_id, dataset, model, seed)] = {
                        **run_cfg, "seed": seed}
    for exp_id, found in in_layers.items():
        problems += [text for layer, key, text in found
                     if (_as_resolved(layer, sources.get(exp_id, [])), key)
                     not in flagged.get(exp_id, set())]
    problems += unused_datasets_problems(datasets, checked, ds_file)
    if problems:
        raise ConfigError(problems)
    return result


def _modules_of(workflow: dict[str, Any], experiments: Iterable[dict[str, Any]]) -> list[str]:
    """The user's modules: the workflow config's, then the experiments' (in order, once)."""
    mods = list(workflow.get("modules") or [])
    for exp in experiments:
        mods += [m for m in exp.get("modules", []) if m not in mods]
    return mods


def _as_resolved(layer: str, sources: list[str]) -> str:
    """A layer's name as the resolved runs' messages give it (``overrides`` for the selected
    scale's ``scales.<name>.overrides``)."""
    for scale in sources:
        if layer.startswith(f"scales.{scale}."):
            return layer.removeprefix(f"scales.{scale}.")
    return layer


def _data_kind(entry: dict[str, Any], name: str) -> str | None:
    from odeflows.data import GENERATORS

    gen = entry.get("generator", name)
    return GENERATORS.get(gen).data if gen in GENERATORS else None


def _takes(exp: dict[str, Any], model: str, dataset: str, sc: dict[str, Any],
           datasets: dict[str, Any]) -> bool:
    """Whether a model runs on a dataset: a model runs on the datasets whose kind of data it
    takes; one that takes none of the experiment's datasets is an error (reported by resolving
    it), not silently skipped."""
    from odeflows.models import MODELS

    base = exp.get("variants", {}).get(model, model)
    if base not in MODELS:
        return True  # reported as unknown
    kinds = set(MODELS.variants(base))
    names = sc.get("datasets", exp["datasets"])
    this = _data_kind(datasets[dataset], dataset)
    if this is None or this in kinds:
        return True
    return not any(_data_kind(datasets[d], d) in kinds for d in names if d in datasets)


def run_matrix(config: dict[str, Any]) -> list[RunSpec]:
    """All runs of the configured scale, sorted (the whole configuration is checked)."""
    return plan(config).runs


def run_resources(scale: str, experiment: str, dataset: str,
                  config_dir: str | Path = "config") -> dict[str, Any]:
    """Scheduler resources of one training job: the scale's ``resources`` updated by its
    ``dataset_resources[dataset]`` (e.g. ImageNet64 on 4 GPUs). ``processes`` > 1 means the job is
    launched by torchrun with that many processes (one per GPU)."""
    sc = scale_entry(load_experiment(experiment, config_dir), scale, config_dir)
    return {**sc.get("resources", {}), **sc.get("dataset_resources", {}).get(dataset, {})}


def launcher(resources: dict[str, Any]) -> str:
    """Command prefix that starts ``odeflows`` once per process (empty for one process)."""
    n = int(resources.get("processes", 1))
    if n <= 1:
        return ""
    return f"torchrun --standalone --nproc_per_node={n} --no-python "
