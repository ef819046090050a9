"""Resolving one run's configuration: the experiment's entry for the selected scale, the settings
layers that apply to a (dataset, model) cell deep-merged in order, completed with the defaults the
model entry, the task and the training loop declare, and checked strictly — a problem names the
key path, the file and the layers that set it. Also what a dataset is prepared with at a scale.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from odeflows.config.checks import check_names
from odeflows.config.errors import ConfigError
from odeflows.config.loading import load_datasets, load_experiment, load_scales, scale_chain
from odeflows.config.schemas import messages, plain, schema, validator
from odeflows.registry import UnknownName, suggest
from odeflows.rundir import RunSpec

__all__ = ["LAYERS", "complete_config", "dataset_config", "deep_merge", "entry_sources",
           "models_on", "resolve_run", "resolve_spec", "scale_entry"]


# layers of an experiment file, in merge order (later wins)
LAYERS = ("settings", "model_settings", "dataset_settings", "dataset_model_settings",
          "overrides", "dataset_overrides", "model_overrides")


def deep_merge(base: dict[str, Any], *overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Return a new dict: ``base`` updated recursively by each override (lists are replaced)."""
    out = copy.deepcopy(base)
    for over in overrides:
        for key, value in (over or {}).items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = deep_merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
    return out


def dataset_config(dataset: str, scale: str, config_dir: str | Path = "config") -> dict[str, Any]:
    """What ``odeflows prepare`` needs: the generator, seed, params and sizes at ``scale``."""
    entries = load_datasets(config_dir)
    if dataset not in entries:
        raise ConfigError(f"{Path(config_dir) / 'datasets.yaml'}: no dataset {dataset!r}"
                          f"{suggest(dataset, entries)}; datasets: {', '.join(entries)}")
    entry = entries[dataset]
    sizes = None
    for s in scale_chain(scale, config_dir):
        if s in entry["sizes"]:
            sizes = entry["sizes"][s]
            break
    if sizes is None:
        raise ConfigError(f"{Path(config_dir) / 'datasets.yaml'}: {dataset}.sizes has no "
                          f"{scale!r} entry (nor one for a scale it extends); it has: "
                          f"{', '.join(entry['sizes'])}")
    return {"name": dataset, "generator": entry.get("generator", dataset),
            "seed": int(entry.get("seed", 0)), "params": entry.get("params", {}),
            "sizes": sizes}


def scale_entry(exp: dict[str, Any], scale: str, config_dir: str | Path) -> dict[str, Any]:
    """The experiment's settings at ``scale``: its own entry (deep-merged over the entry it is
    ``based_on``), or else, whole, the entry of the nearest scale ``scale`` extends in
    scales.yaml."""
    scales = exp["scales"]
    for s in scale_chain(scale, config_dir):
        if s in scales:
            entry, seen = scales[s], [s]
            while "based_on" in entry:
                parent = entry["based_on"]
                if parent not in scales or parent in seen:
                    raise ConfigError(f"experiment {exp['id']}: scales.{s}.based_on: "
                                      f"{parent!r} is not another scale of this experiment")
                seen.append(parent)
                entry = deep_merge(scales[parent], {k: v for k, v in entry.items()
                                                    if k != "based_on"})
            return entry
    raise ConfigError(f"experiment {exp['id']} has no settings for scale {scale!r} (it has: "
                      f"{', '.join(scales)}; a scale can extend another in scales.yaml)")


def entry_sources(exp: dict[str, Any], scale: str, config_dir: str | Path) -> list[str]:
    """The experiment's scales whose entries make up its settings at ``scale``."""
    scales = exp["scales"]
    found = next((s for s in scale_chain(scale, config_dir) if s in scales), None)
    out: list[str] = []
    while found in scales and found not in out:
        out.append(found)
        found = scales[found].get("based_on")
    return out


def models_on(sc: dict[str, Any], exp: dict[str, Any], dataset: str) -> list[str]:
    """The models an experiment runs on ``dataset`` at a scale (its settings ``sc``): the
    scale's ``dataset_models[dataset]`` where given, else the scale's (or experiment's) models."""
    models = sc.get("models", exp["models"])
    only = sc.get("dataset_models", {}).get(dataset)
    return models if only is None else [m for m in models if m in only]


def _layers(exp: dict[str, Any], sc: dict[str, Any], dataset: str, model: str
            ) -> list[tuple[str, dict[str, Any] | None]]:
    """(name, settings) of every layer that applies to a (dataset, model) cell, in merge order."""
    return [
        ("settings", exp["settings"]),
        (f"model_settings.{model}", exp.get("model_settings", {}).get(model)),
        (f"dataset_settings.{dataset}", exp.get("dataset_settings", {}).get(dataset)),
        (f"dataset_model_settings.{dataset}.{model}",
         exp.get("dataset_model_settings", {}).get(dataset, {}).get(model)),
        ("overrides", sc.get("overrides")),
        (f"dataset_overrides.{dataset}", sc.get("dataset_overrides", {}).get(dataset)),
        (f"model_overrides.{model}", sc.get("model_overrides", {}).get(model)),
    ]


def _set_in(layers: list[tuple[str, dict[str, Any] | None]], key: str) -> list[str]:
    """The layers that set the dotted ``key`` (for error messages)."""
    out = []
    for name, layer in layers:
        node: Any = layer or {}
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
        else:
            out.append(name)
    return out


@cache
def _run_validator(model: str, data: str, task: str) -> jsonschema.Draft202012Validator:
    """The strict schema of a resolved run of ``model`` (on ``data``) under ``task``."""
    from odeflows.models import get_model
    from odeflows.tasks import get_task

    entry, tsk = get_model(model, data), get_task(task)
    run_schema = copy.deepcopy(schema("run"))
    props = run_schema["properties"]

    def strict(options: dict[str, Any], required: Iterable[str] = ()) -> dict[str, Any]:
        return {"type": "object", "additionalProperties": False,
                "properties": {k: plain(v) for k, v in options.items()},
                "required": sorted(set(required))}

    props["model_options"] = strict(entry.options,
                                    [k for k, v in entry.options.items() if "default" not in v])
    props["eval"] = strict(tsk.eval_options)
    train = run_schema["$defs"]["train"]
    train["additionalProperties"] = False
    train["properties"].update({k: plain(v) for k, v in tsk.train_options.items()})
    for name, section in tsk.sections.items():
        props[name] = section
        run_schema["required"].append(name)
    return validator(run_schema)


def _defaults(options: dict[str, Any]) -> dict[str, Any]:
    return {k: copy.deepcopy(v["default"]) for k, v in options.items() if "default" in v}


def _section_defaults(section: dict[str, Any]) -> dict[str, Any]:
    return _defaults(section.get("properties", {}))


def resolve_spec(spec: RunSpec, exp: dict[str, Any], sc: dict[str, Any],
                 datasets: dict[str, Any], modules: list[str], config_dir: str | Path,
                 flagged: set[tuple[str, str]] | None = None
                 ) -> tuple[dict[str, Any] | None, list[str]]:
    """(resolved config, problems) of one run, given its experiment file ``exp`` and scale entry
    ``sc`` (as :func:`plan` has them); ``flagged`` collects the (layer, key) of each problem."""
    where = str(Path(config_dir) / "experiments" / f"{spec.experiment}.yaml")
    base = exp.get("variants", {}).get(spec.model, spec.model)
    layers = _layers(exp, sc, spec.dataset, spec.model)
    merged = deep_merge({}, *(layer for _, layer in layers))
    meta = {"experiment": spec.experiment, "dataset": spec.dataset, "model": base,
            "seed": spec.seed, "scale": spec.scale}
    if base != spec.model:
        meta["variant"] = spec.model
    if modules:
        meta["modules"] = list(modules)
    return _complete(meta, merged, datasets[spec.dataset], exp.get("task"), where,
                     f"{where}: run {spec.dataset}/{spec.model}", layers, _shared_keys(exp),
                     flagged)


# layers every model / dataset of an experiment shares (the others name one model or dataset)
_SHARED = ("settings", "dataset_settings", "overrides", "dataset_overrides")
# sections whose keys depend on the model (model_options) or on the task (eval, train)
_OPTION_SECTIONS = ("model_options", "eval", "train")


def _shared_keys(exp: dict[str, Any]) -> dict[str, set[str]]:
    """Keys any model of the experiment (model_options) or any task (eval, train) accepts: a key set
    in a shared layer applies to the runs that accept it; one nothing accepts is a typo."""
    from odeflows.models import MODELS
    from odeflows.tasks import TASKS

    names = {exp.get("variants", {}).get(m, m) for m in exp["models"]}
    model_keys = {k for n in names if n in MODELS for e in (MODELS.get(n, v)
                  for v in MODELS.variants(n)) for k in e.options}
    tasks = list(TASKS.all())
    return {"model_options": model_keys,
            "eval": {k for t in tasks for k in t.eval_options},
            "train": {k for t in tasks for k in t.train_options}}


def _complete(meta: dict[str, Any], merged: dict[str, Any], dataset: dict[str, Any],
              task_name: str | None, where: str, cell: str,
              layers: list[tuple[str, dict[str, Any] | None]] = (),
              shared: dict[str, set[str]] | None = None,
              flagged: set[tuple[str, str]] | None = None
              ) -> tuple[dict[str, Any] | None, list[str]]:
    """A run config from its coordinates (``meta``) and merged settings: the dataset's facts,
    the task, every declared default, then a strict check (problems name the layers that set an
    offending key)."""
    from odeflows.data import get_generator
    from odeflows.models import get_model
    from odeflows.tasks import select_task

    try:
        gen = get_generator(dataset.get("generator", meta["dataset"]))
        model = get_model(meta["model"], gen.data)
        task = select_task(model, gen, task_name)
    except (UnknownName, ValueError) as err:
        return None, [f"{cell}: {err}"]
    merged = dict(merged)
    accepted = {"model_options": set(model.options), "eval": set(task.eval_options),
                "train": set(task.train_options) | set(schema("run")["$defs"]["train"]
                                                       ["properties"])}
    for section in _OPTION_SECTIONS:
        # a key from a shared layer meant for the experiment's other models / tasks
        for key in [k for k in merged.get(section, {}) if k not in accepted[section]]:
            origin = _set_in(list(layers), f"{section}.{key}")
            if (shared and key in shared[section] and origin
                    and all(o.split(".")[0] in _SHARED for o in origin)):
                merged[section] = {k: v for k, v in merged[section].items() if k != key}
    merged.setdefault("eval_solver", merged.get("solver"))
    data: dict[str, Any] = {"generator": gen.name, "kind": gen.data}
    if gen.data == "images":
        data["bits"] = int(dataset.get("bits", gen.bits or 8))
    run = schema("run")["$defs"]
    cfg: dict[str, Any] = {
        **meta, "task": task.name, "data": data,
        "model_options": {**_defaults(dict(model.options)), **merged.get("model_options", {})},
        "solver": {**_defaults(run["solver_partial"]["properties"]),
                   **(merged.get("solver") or {})},
        "eval_solver": {**_defaults(run["solver_partial"]["properties"]),
                        **(merged.get("eval_solver") or {})},
        "train": {**_defaults(run["train"]["properties"]), **_defaults(dict(task.train_options)),
                  **merged.get("train", {})},
        "eval": {**_defaults(dict(task.eval_options)), **merged.get("eval", {})},
    }
    for name, section in task.sections.items():
        cfg[name] = {**_section_defaults(section), **merged.get(name, {})}
    for name in merged:
        if name not in cfg:  # a section nothing reads: reported as an unknown key
            cfg[name] = merged[name]
    problems = []
    for key, msg in messages(_run_validator(meta["model"], gen.data, task.name), cfg):
        origin = _set_in(list(layers), key)
        if flagged is not None:
            flagged.update((o, key) for o in origin)
        src = f" (set in {', '.join(origin)})" if origin else ""
        problems.append(f"{where}: {key}{src}: {msg} [model {meta.get('variant', meta['model'])!r}"
                        f" on {gen.data}, task {task.name!r}]")
    train = cfg["train"]
    if task.loop and isinstance(train, dict) and train.get("epochs") is None \
            and train.get("iterations") is None:
        problems.append(f"{cell}: train: give epochs or iterations")
    return cfg, problems


def complete_config(cfg: dict[str, Any], config_dir: str | Path = "config") -> dict[str, Any]:
    """Complete and check a run configuration written by hand (tests, notebooks): ``experiment``,
    ``dataset`` (a name in datasets.yaml), ``model``, ``seed``, ``scale`` and any of the
    sections ``model_options``, ``solver``, ``eval_solver``, ``train``, ``eval``, … — as the
    workflow resolves an experiment's runs. A ``task`` key names the task (default: derived)."""
    keys = ("experiment", "dataset", "model", "seed", "scale", "variant", "modules")
    meta = {k: cfg[k] for k in keys if k in cfg}
    datasets = load_datasets(config_dir)
    if cfg["dataset"] not in datasets:
        raise ConfigError(f"dataset: unknown dataset {cfg['dataset']!r}"
                          f"{suggest(cfg['dataset'], datasets)}")
    merged = {k: v for k, v in cfg.items() if k not in (*keys, "task", "data")}
    out, problems = _complete(meta, merged, datasets[cfg["dataset"]], cfg.get("task"),
                              "config", "config")
    if problems or out is None:
        raise ConfigError(problems)
    return out


def resolve_run(spec: RunSpec, config_dir: str | Path = "config",
                modules: Iterable[str] = ()) -> dict[str, Any]:
    """The fully resolved, validated configuration of one run (checking only what it needs)."""
    from odeflows import plugins

    exp = load_experiment(spec.experiment, config_dir)
    mods = [*modules, *[m for m in exp.get("modules", []) if m not in modules]]
    plugins.load(mods)
    datasets = load_datasets(config_dir)
    problems = check_names(exp, str(Path(config_dir) / "experiments" /
                                     f"{spec.experiment}.yaml"), datasets,
                            load_scales(config_dir))
    if problems:
        raise ConfigError(problems)
    sc = scale_entry(exp, spec.scale, config_dir)
    if spec.dataset not in sc.get("datasets", exp["datasets"]) or \
            spec.model not in models_on(sc, exp, spec.dataset):
        raise ConfigError(f"run {spec.dataset}/{spec.model} is not part of experiment "
                          f"{spec.experiment} at scale {spec.scale}")
    cfg, problems = resolve_spec(spec, exp, sc, datasets, mods, config_dir)
    if problems or cfg is None:
        raise ConfigError(problems)
    return cfg
