"""Load, validate, resolve and hash configurations.

Names live once: scales in ``config/scales.yaml``, datasets in ``config/datasets.yaml``,
experiments as the files ``config/experiments/<id>.yaml``, models, dataset generators and tasks in
their registries. Data flows one way: the workflow config names a scale and experiments; the run
matrix is experiment × dataset × model × seed at that scale; each run's configuration is resolved
by deep merging the experiment's layers, completed with the defaults its model entry, its task and
the training loop declare, and checked strictly — an unknown key anywhere is an error that names
the key path, the file and layer that set it and, where one is close, the intended key. Every
settings layer of every experiment file is also checked on its own, at every scale, so that a
value the selected scale overrides, or one of a scale not selected, is reported now rather than
when that scale runs; numbers must be finite.
:func:`plan` checks everything and reports every problem at once, before anything is run or
written.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from odeflows import config_checks
from odeflows.config_checks import messages as _messages
from odeflows.config_checks import plain as _plain
from odeflows.config_checks import schema as _schema
from odeflows.config_checks import validator as _validator
from odeflows.provenance import config_hash
from odeflows.registry import UnknownName, suggest
from odeflows.rundir import RunSpec

__all__ = ["ConfigError", "Plan", "RunSpec", "config_hash", "dataset_config", "deep_merge",
           "experiment_ids", "launcher", "load_datasets", "load_experiment", "load_scales",
           "models_on", "plan", "complete_config", "resolve_run", "run_matrix", "run_resources",
           "scale_entry", "validate_workflow"]

# layers of an experiment file, in merge order (later wins)
LAYERS = ("defaults", "model_settings", "dataset_settings", "dataset_model_settings",
          "overrides", "dataset_overrides", "model_overrides")


class ConfigError(ValueError):
    """One or more configuration values are missing, malformed or unknown."""

    def __init__(self, problems: str | list[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        n = len(self.problems)
        head = "invalid configuration" if n == 1 else f"invalid configuration: {n} problems"
        super().__init__(head + ":\n" + "\n".join(f"  - {p}" for p in self.problems))


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


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"configuration file not found: {path}")
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


# -- the single sources of names ------------------------------------------------------------------
def experiment_ids(config_dir: str | Path = "config") -> list[str]:
    """Every experiment: the files ``<config_dir>/experiments/*.yaml``."""
    return sorted(p.stem for p in (Path(config_dir) / "experiments").glob("*.yaml"))


def _load_checked(path: str, schema: str) -> str:
    """A config file checked against its schema, as JSON (cached per version of the file)."""
    try:
        st = Path(path).stat()
    except OSError:
        st = None
    return _load_checked_version(path, schema, st.st_mtime_ns if st else 0,
                                 st.st_size if st else 0)


@cache
def _load_checked_version(path: str, schema: str, mtime_ns: int, size: int) -> str:
    data = load_yaml(path)
    problems = [f"{path}: {k}: {m}" for k, m in _messages(_validator(_schema(schema)), data)]
    if problems:
        raise ConfigError(problems)
    return json.dumps(data)


def load_scales(config_dir: str | Path = "config") -> dict[str, Any]:
    path = str(Path(config_dir) / "scales.yaml")
    scales = json.loads(_load_checked(path, "scales"))
    for name, entry in scales.items():
        seen, cur = [name], entry.get("extends")
        while cur is not None:
            if cur not in scales:
                raise ConfigError(f"{path}: {name}.extends: unknown scale {cur!r}"
                                  f"{suggest(cur, scales)}; scales: {', '.join(scales)}")
            if cur in seen:
                raise ConfigError(f"{path}: {name}.extends: cycle {' -> '.join([*seen, cur])}")
            seen.append(cur)
            cur = scales[cur].get("extends")
    return scales


def scale_chain(scale: str, config_dir: str | Path = "config") -> list[str]:
    """``scale`` and the scales it extends, nearest first."""
    scales = load_scales(config_dir)
    if scale not in scales:
        raise ConfigError(f"scale {scale!r} is not in {Path(config_dir) / 'scales.yaml'}"
                          f"{suggest(scale, scales)}; allowed values: {', '.join(scales)}")
    chain = [scale]
    while (parent := scales[chain[-1]].get("extends")) is not None:
        chain.append(parent)
    return chain


def load_datasets(config_dir: str | Path = "config") -> dict[str, Any]:
    return json.loads(_load_checked(str(Path(config_dir) / "datasets.yaml"), "datasets"))


def load_experiment(experiment: str, config_dir: str | Path = "config") -> dict[str, Any]:
    """The experiment file, checked for structure (names are checked by :func:`plan`)."""
    path = Path(config_dir) / "experiments" / f"{experiment}.yaml"
    if not path.exists():
        known = experiment_ids(config_dir)
        raise ConfigError(f"unknown experiment {experiment!r}{suggest(experiment, known)}: no "
                          f"file {path}; experiments: {', '.join(known)}")
    data = json.loads(_load_checked(str(path), "experiment"))
    if data["id"] != experiment:
        raise ConfigError(f"{path}: id: is {data['id']!r}, expected {experiment!r} (the file "
                          "name)")
    return data


def _modules_of(workflow: dict[str, Any], experiments: Iterable[dict[str, Any]]) -> list[str]:
    """The user's modules: the workflow config's, then the experiments' (in order, once)."""
    mods = list(workflow.get("modules") or [])
    for exp in experiments:
        mods += [m for m in exp.get("modules", []) if m not in mods]
    return mods


# -- datasets -------------------------------------------------------------------------------------
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


def _check_dataset(name: str, entry: dict[str, Any], where: str) -> list[str]:
    from odeflows.data import get_generator

    gen_name = entry.get("generator", name)
    try:
        gen = get_generator(gen_name)
    except UnknownName as err:
        return [f"{where}: {name}.generator: {err}"]
    schema = {"type": "object", "additionalProperties": False,
              "properties": {k: _plain(v) for k, v in gen.params.items()}}
    problems = [f"{where}: {name}.params.{k}: {m}"
                for k, m in _messages(_validator(schema), entry.get("params", {}))]
    if "bits" in entry and gen.data != "images":
        problems.append(f"{where}: {name}.bits: only image datasets have a bit depth")
    return problems


# -- runs -----------------------------------------------------------------------------------------
def scale_entry(exp: dict[str, Any], scale: str, config_dir: str | Path) -> dict[str, Any]:
    """The experiment's settings at ``scale``: its own entry (merged over the entry it
    ``extends``), or the entry of the nearest scale ``scale`` extends in scales.yaml."""
    scales = exp["scales"]
    for s in scale_chain(scale, config_dir):
        if s in scales:
            entry, seen = scales[s], [s]
            while "extends" in entry:
                parent = entry["extends"]
                if parent not in scales or parent in seen:
                    raise ConfigError(f"experiment {exp['id']}: scales.{s}.extends: "
                                      f"{parent!r} is not another scale of this experiment")
                seen.append(parent)
                entry = deep_merge(scales[parent], {k: v for k, v in entry.items()
                                                    if k != "extends"})
            return entry
    raise ConfigError(f"experiment {exp['id']} has no settings for scale {scale!r} (it has: "
                      f"{', '.join(scales)}; a scale can extend another in scales.yaml)")


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
        ("defaults", exp["defaults"]),
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
    schema = copy.deepcopy(_schema("run"))
    props = schema["properties"]

    def strict(options: dict[str, Any], required: Iterable[str] = ()) -> dict[str, Any]:
        return {"type": "object", "additionalProperties": False,
                "properties": {k: _plain(v) for k, v in options.items()},
                "required": sorted(set(required))}

    props["model_cfg"] = strict(entry.options,
                                [k for k, v in entry.options.items() if "default" not in v])
    props["eval"] = strict(tsk.eval_options)
    train = schema["$defs"]["train"]
    train["additionalProperties"] = False
    train["properties"].update({k: _plain(v) for k, v in tsk.train_options.items()})
    for name, section in tsk.sections.items():
        props[name] = section
        schema["required"].append(name)
    return _validator(schema)


def _defaults(options: dict[str, Any]) -> dict[str, Any]:
    return {k: copy.deepcopy(v["default"]) for k, v in options.items() if "default" in v}


def _section_defaults(section: dict[str, Any]) -> dict[str, Any]:
    return _defaults(section.get("properties", {}))


def _resolve(spec: RunSpec, exp: dict[str, Any], sc: dict[str, Any],
             datasets: dict[str, Any], modules: list[str], config_dir: str | Path,
             flagged: set[tuple[str, str]] | None = None
             ) -> tuple[dict[str, Any] | None, list[str]]:
    """(resolved config, problems) of one run; ``flagged`` collects the (layer, key) of each."""
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
_SHARED = ("defaults", "dataset_settings", "overrides", "dataset_overrides")
# sections whose keys depend on the model (model_cfg) or on the task (eval, train)
_OPTION_SECTIONS = ("model_cfg", "eval", "train")


def _shared_keys(exp: dict[str, Any]) -> dict[str, set[str]]:
    """Keys any model of the experiment (model_cfg) or any task (eval, train) accepts: a key set
    in a shared layer applies to the runs that accept it; one nothing accepts is a typo."""
    from odeflows.models import MODELS
    from odeflows.tasks import TASKS

    names = {exp.get("variants", {}).get(m, m) for m in exp["models"]}
    model_keys = {k for n in names if n in MODELS for e in (MODELS.get(n, v)
                  for v in MODELS.variants(n)) for k in e.options}
    tasks = list(TASKS.all())
    return {"model_cfg": model_keys,
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
    accepted = {"model_cfg": set(model.options), "eval": set(task.eval_options),
                "train": set(task.train_options) | set(_schema("run")["$defs"]["train"]
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
    run = _schema("run")["$defs"]
    cfg: dict[str, Any] = {
        **meta, "task": task.name, "data": data,
        "model_cfg": {**_defaults(dict(model.options)), **merged.get("model_cfg", {})},
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
    for key, msg in _messages(_run_validator(meta["model"], gen.data, task.name), cfg):
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
    sections ``model_cfg``, ``solver``, ``eval_solver``, ``train``, ``eval``, … — as the workflow
    resolves an experiment's runs. A ``task`` key names the task (default: derived)."""
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
                _messages(_validator(_schema("workflow")), cfg)]
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
        problems += [p for p in _malformed_layer_problems(exp_id, config_dir) if p not in problems]
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
        problems += _check_names(exp, where, datasets, scales)
        in_layers[exp_id] = _layer_problems(exp, where)
        try:
            sc = scale_entry(exp, scale, config_dir)
        except ConfigError as err:
            problems += [f"{where}: {p}" for p in err.problems]
            continue
        sources[exp_id] = _entry_sources(exp, scale, config_dir)
        if "seeds" not in sc:
            problems.append(f"{where}: scales.{scale}.seeds: missing (how many repeated runs)")
            continue
        if int(sc["seeds"]) == 0:  # declared not to run at this scale
            result.experiments.remove(exp_id)
            continue
        for dataset in sc.get("datasets", exp["datasets"]):
            if dataset not in datasets:
                continue  # reported by _check_names
            if dataset not in checked:
                checked.add(dataset)
                problems += _check_dataset(dataset, datasets[dataset], ds_file)
                try:
                    dataset_config(dataset, scale, config_dir)
                except ConfigError as err:
                    problems += err.problems
            for model in models_on(sc, exp, dataset):
                if not _takes(exp, model, dataset, sc, datasets):
                    continue  # e.g. an image baseline beside toy sets in a mixed experiment
                spec0 = RunSpec(scale, exp_id, dataset, model, 0)
                run_cfg, found = _resolve(spec0, exp, sc, datasets, _modules_of(cfg, [exp]),
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
    problems += _unused_datasets_problems(datasets, checked, ds_file)
    if problems:
        raise ConfigError(problems)
    return result


def _malformed_layer_problems(exp_id: str, config_dir: str | Path) -> list[str]:
    """The problems of the settings layers of an experiment file that fails its schema."""
    path = Path(config_dir) / "experiments" / f"{exp_id}.yaml"
    try:
        raw = load_yaml(path)
    except ConfigError:
        return []  # already reported
    return [text for _, _, text in _layer_problems(raw, str(path))]


def _layer_problems(exp: dict[str, Any], where: str) -> list[tuple[str, str, str]]:
    """(layer, key, message) of every value of every settings layer of an experiment file, at
    every scale, that the options declared for its section do not accept: model_cfg those of the
    layer's model (a layer every model shares: of any model of the experiment), train and eval
    those of the training loop and of any task."""
    from odeflows.models import MODELS

    registered = set(MODELS.names())
    variants = {k: v for k, v in (exp.get("variants") or {}).items() if isinstance(v, str)} \
        if isinstance(exp.get("variants"), dict) else {}
    models = exp["models"] if isinstance(exp.get("models"), list) else []
    shared = {variants.get(m, m) for m in models if isinstance(m, str)} & registered
    problems = []
    for layer, model, settings in config_checks.experiment_layers(exp):
        bases = shared if model is None else {variants.get(model, model)} & registered
        if not bases:
            continue  # an unknown model: reported by _check_names
        for key, msg in config_checks.layer_problems(settings, _options(tuple(sorted(bases))),
                                                     ""):
            problems.append((layer, key, f"{where}: {layer}.{key}: {msg}"))
    return problems


@cache
def _options(models: tuple[str, ...]) -> config_checks.Options:
    """What a settings layer of runs of ``models`` accepts, whatever their task."""
    from odeflows.models import MODELS
    from odeflows.tasks import TASKS

    tasks = list(TASKS.all())
    sections: dict[str, Any] = {}
    for task in tasks:
        for name, section in task.sections.items():
            sections.setdefault(name, section)
    return config_checks.Options(
        model_cfg=config_checks.declarations(*(MODELS.get(m, kind).options for m in models
                                               for kind in MODELS.variants(m))),
        train=config_checks.declarations(_schema("run")["$defs"]["train"]["properties"],
                                         *(dict(t.train_options) for t in tasks)),
        eval=config_checks.declarations(*(dict(t.eval_options) for t in tasks)),
        sections=sections)


def _entry_sources(exp: dict[str, Any], scale: str, config_dir: str | Path) -> list[str]:
    """The experiment's scales whose entries make up its settings at ``scale``."""
    scales = exp["scales"]
    found = next((s for s in scale_chain(scale, config_dir) if s in scales), None)
    out: list[str] = []
    while found in scales and found not in out:
        out.append(found)
        found = scales[found].get("extends")
    return out


def _as_resolved(layer: str, sources: list[str]) -> str:
    """A layer's name as the resolved runs' messages give it (``overrides`` for the selected
    scale's ``scales.<name>.overrides``)."""
    for scale in sources:
        if layer.startswith(f"scales.{scale}."):
            return layer.removeprefix(f"scales.{scale}.")
    return layer


def _unused_datasets_problems(datasets: dict[str, Any], checked: set[str],
                              where: str) -> list[str]:
    """Problems of the datasets no run of the selected scale uses (a generator a module not
    loaded now registers is not known here, so it is not reported)."""
    from odeflows.data import GENERATORS

    problems = []
    for name, entry in datasets.items():
        if name not in checked and entry.get("generator", name) in GENERATORS:
            problems += _check_dataset(name, entry, where)
    return problems


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


def _check_names(exp: dict[str, Any], where: str, datasets: dict[str, Any],
                 scales: dict[str, Any]) -> list[str]:
    """Names an experiment file uses, against their single sources."""
    from odeflows.models import MODELS
    from odeflows.tasks import TASKS

    problems = []
    registered = MODELS.names()
    variants = exp.get("variants", {})
    for variant, base in variants.items():
        if base not in registered:
            problems.append(f"{where}: variants.{variant}: unknown model {base!r}"
                            f"{suggest(base, registered)}; models: {', '.join(registered)}")
    for model in exp["models"]:
        if model not in registered and model not in variants:
            problems.append(f"{where}: models: {model!r} is neither a registered model"
                            f"{suggest(model, registered + list(variants))} nor declared under "
                            f"variants; models: {', '.join(registered)}")
    for ds in exp["datasets"]:
        if ds not in datasets:
            problems.append(f"{where}: datasets: unknown dataset {ds!r}{suggest(ds, datasets)} "
                            f"(config/datasets.yaml)")
    if "task" in exp and exp["task"] not in TASKS:
        problems.append(f"{where}: task: unknown task {exp['task']!r}"
                        f"{suggest(exp['task'], TASKS.names())}; tasks: {', '.join(TASKS.names())}")
    models, dsets = set(exp["models"]), set(exp["datasets"])
    for section, allowed in (("model_settings", models), ("dataset_settings", dsets),
                             ("dataset_model_settings", dsets), ("display", models),
                             ("variants", models)):
        for key in exp.get(section, {}):
            if key not in allowed:
                problems.append(f"{where}: {section}.{key}: not one of the experiment's "
                                f"{'models' if allowed is models else 'datasets'}"
                                f"{suggest(key, allowed)}; allowed: {', '.join(sorted(allowed))}")
    for ds, cells in exp.get("dataset_model_settings", {}).items():
        for key in cells:
            if key not in models:
                problems.append(f"{where}: dataset_model_settings.{ds}.{key}: not one of the "
                                f"experiment's models{suggest(key, models)}")
    if exp.get("figures"):
        # the light registry: figure modules import matplotlib only when they draw
        from odeflows.figure_names import FIGURES

        known = FIGURES.names()
        for name in exp["figures"]:
            if name not in known:
                problems.append(f"{where}: figures: unknown figure {name!r}"
                                f"{suggest(name, known)}; figures: {', '.join(known)}")
    for scale, sc in exp["scales"].items():
        if scale not in scales:
            problems.append(f"{where}: scales.{scale}: unknown scale{suggest(scale, scales)}; "
                            f"scales (config/scales.yaml): {', '.join(scales)}")
        for key, allowed in (("datasets", dsets), ("models", models),
                             ("dataset_overrides", dsets), ("model_overrides", models),
                             ("dataset_resources", dsets)):
            extra = [k for k in sc.get(key, []) if k not in allowed]
            for k in extra:
                problems.append(f"{where}: scales.{scale}.{key}: {k!r} is not among the "
                                f"experiment's {'models' if allowed is models else 'datasets'}"
                                f"{suggest(k, allowed)}; allowed values: "
                                f"{', '.join(sorted(allowed))}")
        for ds, cell_models in sc.get("dataset_models", {}).items():
            if ds not in dsets:
                problems.append(f"{where}: scales.{scale}.dataset_models.{ds}: not one of the "
                                f"experiment's datasets{suggest(ds, dsets)}")
            for m in cell_models:
                if m not in models:
                    problems.append(f"{where}: scales.{scale}.dataset_models.{ds}: {m!r} is not "
                                    f"one of the experiment's models{suggest(m, models)}")
    return problems


def run_matrix(config: dict[str, Any]) -> list[RunSpec]:
    """All runs of the configured scale, sorted (the whole configuration is checked)."""
    return plan(config).runs


def resolve_run(spec: RunSpec, config_dir: str | Path = "config",
                modules: Iterable[str] = ()) -> dict[str, Any]:
    """The fully resolved, validated configuration of one run (checking only what it needs)."""
    from odeflows import plugins

    exp = load_experiment(spec.experiment, config_dir)
    mods = [*modules, *[m for m in exp.get("modules", []) if m not in modules]]
    plugins.load(mods)
    datasets = load_datasets(config_dir)
    problems = _check_names(exp, str(Path(config_dir) / "experiments" /
                                     f"{spec.experiment}.yaml"), datasets,
                            load_scales(config_dir))
    if problems:
        raise ConfigError(problems)
    sc = scale_entry(exp, spec.scale, config_dir)
    if spec.dataset not in sc.get("datasets", exp["datasets"]) or \
            spec.model not in models_on(sc, exp, spec.dataset):
        raise ConfigError(f"run {spec.dataset}/{spec.model} is not part of experiment "
                          f"{spec.experiment} at scale {spec.scale}")
    cfg, problems = _resolve(spec, exp, sc, datasets, mods, config_dir)
    if problems or cfg is None:
        raise ConfigError(problems)
    return cfg


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
