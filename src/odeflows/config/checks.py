"""Checks of an experiment file beyond its schema: the names it uses against their single
sources (the registries, config/datasets.yaml, config/scales.yaml), each dataset's params against
what its generator accepts, and every settings layer, at every scale, against the options the
models, the tasks and the training loop declare (a layer on its own is a partial run
configuration: keys only the merge of all layers provides are not required).

The check of one layer (:func:`layer_problems`) needs no registry: the caller passes the
declarations in (:class:`Options`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from odeflows.config.errors import ConfigError
from odeflows.config.loading import load_yaml
from odeflows.config.schemas import messages, plain, schema, validator
from odeflows.registry import UnknownName, suggest

__all__ = ["Options", "check_dataset", "check_names", "declarations", "experiment_layer_problems",
           "experiment_layers", "layer_problems", "malformed_layer_problems",
           "unused_datasets_problems"]


@dataclass(frozen=True)
class Options:
    """What a section of a settings layer accepts: per key, every declaration of it (models and
    tasks may declare one key differently), and the sections tasks add (e.g. profile)."""

    model_options: dict[str, list[dict[str, Any]]]
    train: dict[str, list[dict[str, Any]]]
    eval: dict[str, list[dict[str, Any]]]
    sections: dict[str, dict[str, Any]]


def declarations(*option_sets: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per key, the distinct declarations of it among ``option_sets``."""
    out: dict[str, list[dict[str, Any]]] = {}
    for options in option_sets:
        for key, decl in options.items():
            found = out.setdefault(key, [])
            if plain(decl) not in found:
                found.append(plain(decl))
    return out


def _one_of(decls: list[dict[str, Any]]) -> dict[str, Any]:
    # a value in a layer some runs share must suit at least one declaration; the resolved run
    # configs then check it against the one that applies
    return decls[0] if len(decls) == 1 else {"anyOf": decls}


def _strict(decls: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False,
            "properties": {k: _one_of(v) for k, v in decls.items()}}


def _partial(fragment: dict[str, Any]) -> dict[str, Any]:
    """A section's schema without its required keys: another layer may give them."""
    return {k: v for k, v in fragment.items() if k != "required"}


@cache
def _layer_validator(options_json: str) -> jsonschema.Draft202012Validator:
    options = json.loads(options_json)
    props = {name: _strict(options[name]) for name in ("model_options", "train", "eval")}
    props.update({name: _partial(s) for name, s in options["sections"].items()})
    return validator({"type": "object", "properties": props})


def layer_problems(layer: dict[str, Any] | None, options: Options,
                   prefix: str) -> list[tuple[str, str]]:
    """(key path below ``prefix``, message) of every value of one settings layer that no
    declaration accepts: a wrong type, a non-finite number, an unknown key. Keys only the
    merge of all layers provides are not required here."""
    if not isinstance(layer, dict):
        return []  # the experiment schema reports it
    blob = json.dumps({"model_options": options.model_options, "train": options.train,
                       "eval": options.eval, "sections": options.sections}, sort_keys=True)
    return messages(_layer_validator(blob), layer, prefix)


def _mapping(value: Any) -> dict[Any, Any]:
    # a file that fails its schema is still walked, for the problems of its other layers
    return value if isinstance(value, dict) else {}


def experiment_layers(exp: dict[str, Any]) -> Iterable[tuple[str, str | None, dict[str, Any]]]:
    """(layer name, the model it applies to or None for layers every model shares, settings) of
    every settings layer of an experiment file, at every scale."""
    yield "settings", None, exp.get("settings")
    for model, layer in _mapping(exp.get("model_settings")).items():
        yield f"model_settings.{model}", model, layer
    for dataset, layer in _mapping(exp.get("dataset_settings")).items():
        yield f"dataset_settings.{dataset}", None, layer
    for dataset, cells in _mapping(exp.get("dataset_model_settings")).items():
        for model, layer in _mapping(cells).items():
            yield f"dataset_model_settings.{dataset}.{model}", model, layer
    for scale, entry in _mapping(exp.get("scales")).items():
        entry = _mapping(entry)
        yield f"scales.{scale}.overrides", None, entry.get("overrides")
        for dataset, layer in _mapping(entry.get("dataset_overrides")).items():
            yield f"scales.{scale}.dataset_overrides.{dataset}", None, layer
        for model, layer in _mapping(entry.get("model_overrides")).items():
            yield f"scales.{scale}.model_overrides.{model}", model, layer


def check_names(exp: dict[str, Any], where: str, datasets: dict[str, Any],
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


def check_dataset(name: str, entry: dict[str, Any], where: str) -> list[str]:
    """Problems of a dataset's entry: its generator, the params it is called with, its bits."""
    from odeflows.data import get_generator

    gen_name = entry.get("generator", name)
    try:
        gen = get_generator(gen_name)
    except UnknownName as err:
        return [f"{where}: {name}.generator: {err}"]
    params_schema = {"type": "object", "additionalProperties": False,
                     "properties": {k: plain(v) for k, v in gen.params.items()}}
    problems = [f"{where}: {name}.params.{k}: {m}"
                for k, m in messages(validator(params_schema), entry.get("params", {}))]
    if "bits" in entry and gen.data != "images":
        problems.append(f"{where}: {name}.bits: only image datasets have a bit depth")
    return problems


def malformed_layer_problems(exp_id: str, config_dir: str | Path) -> list[str]:
    """The problems of the settings layers of an experiment file that fails its schema."""
    path = Path(config_dir) / "experiments" / f"{exp_id}.yaml"
    try:
        raw = load_yaml(path)
    except ConfigError:
        return []  # already reported
    return [text for _, _, text in experiment_layer_problems(raw, str(path))]


def experiment_layer_problems(exp: dict[str, Any], where: str) -> list[tuple[str, str, str]]:
    """(layer, key, message) of every value of every settings layer of an experiment file, at
    every scale, that the options declared for its section do not accept: model_options those of the
    layer's model (a layer every model shares: of any model of the experiment), train and eval
    those of the training loop and of any task."""
    from odeflows.models import MODELS

    registered = set(MODELS.names())
    variants = {k: v for k, v in (exp.get("variants") or {}).items() if isinstance(v, str)} \
        if isinstance(exp.get("variants"), dict) else {}
    models = exp["models"] if isinstance(exp.get("models"), list) else []
    shared = {variants.get(m, m) for m in models if isinstance(m, str)} & registered
    problems = []
    for layer, model, settings in experiment_layers(exp):
        bases = shared if model is None else {variants.get(model, model)} & registered
        if not bases:
            continue  # an unknown model: reported by check_names
        for key, msg in layer_problems(settings, _options(tuple(sorted(bases))), ""):
            problems.append((layer, key, f"{where}: {layer}.{key}: {msg}"))
    return problems


@cache
def _options(models: tuple[str, ...]) -> Options:
    """What a settings layer of runs of ``models`` accepts, whatever their task."""
    from odeflows.models import MODELS
    from odeflows.tasks import TASKS

    tasks = list(TASKS.all())
    sections: dict[str, Any] = {}
    for task in tasks:
        for name, section in task.sections.items():
            sections.setdefault(name, section)
    return Options(
        model_options=declarations(*(MODELS.get(m, kind).options for m in models
                                     for kind in MODELS.variants(m))),
        train=declarations(schema("run")["$defs"]["train"]["properties"],
                           *(dict(t.train_options) for t in tasks)),
        eval=declarations(*(dict(t.eval_options) for t in tasks)),
        sections=sections)


def unused_datasets_problems(datasets: dict[str, Any], checked: set[str],
                             where: str) -> list[str]:
    """Problems of the datasets no run of the selected scale uses (a generator a module not
    loaded now registers is not known here, so it is not reported)."""
    from odeflows.data import GENERATORS

    problems = []
    for name, entry in datasets.items():
        if name not in checked and entry.get("generator", name) in GENERATORS:
            problems += check_dataset(name, entry, where)
    return problems
