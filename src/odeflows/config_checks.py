"""Schema checks of configuration documents: the shipped JSON schemas, a validator whose numbers
are finite, messages that name the key path and the closest known key, and the check of one
settings layer of an experiment file (a partial run configuration) against the options the
models, the tasks and the training loop declare.

Kept apart from :mod:`odeflows.config` so that checking a layer needs no registry: the caller
passes the declarations in (:class:`Options`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource

from odeflows.registry import suggest

SCHEMAS = ("workflow", "experiment", "run", "datasets", "scales")


@cache
def schema(name: str) -> dict[str, Any]:
    text = resources.files("odeflows").joinpath("schemas", f"{name}.schema.yaml").read_text()
    return {"$id": f"{name}.schema.yaml", **yaml.safe_load(text)}


@cache
def _registry() -> Registry:
    return Registry().with_resources(
        (f"{n}.schema.yaml", Resource.from_contents(schema(n))) for n in SCHEMAS)


def _finite_number(checker: Any, instance: Any) -> bool:
    # YAML reads .nan and .inf as floats, which JSON schema would take for numbers
    return (jsonschema.Draft202012Validator.TYPE_CHECKER.is_type(instance, "number")
            and math.isfinite(instance))


_FiniteValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("number", _finite_number))


def validator(fragment: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """A validator of ``fragment`` (which may refer to the shipped schemas) whose "number" is a
    finite number."""
    return _FiniteValidator(fragment, registry=_registry())


def _non_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def messages(checker: jsonschema.Draft202012Validator, obj: Any,
             prefix: str = "") -> list[tuple[str, str]]:
    """(key path, message) of every schema violation, unknown keys with close matches."""
    out = []
    for err in sorted(checker.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
        path = ".".join(str(p) for p in err.absolute_path)
        key = ".".join(p for p in (prefix, path) if p) or "<top level>"
        fragment = err.schema if isinstance(err.schema, dict) else {}
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            allowed = sorted(fragment.get("properties", {}))
            for extra in sorted(set(err.instance) - set(allowed)):
                if fragment.get("patternProperties"):
                    continue
                where = ".".join(p for p in (key if key != "<top level>" else "", extra) if p)
                hint = f"; allowed: {', '.join(allowed)}" if allowed else ""
                out.append((where, f"unknown key{suggest(extra, allowed)}{hint}"))
            continue
        if _non_finite(err.instance):
            out.append((key, f"{err.instance!r} is not a finite number"))
        elif err.validator == "enum":
            out.append((key, f"{err.instance!r} is not allowed; allowed values: "
                             f"{', '.join(map(str, fragment.get('enum', [])))}"))
        elif err.validator == "required":
            out.append((key, err.message))
        else:
            out.append((key, f"{err.instance!r}: {err.message}"
                        if not err.message.startswith(repr(err.instance)) else err.message))
    return out


def plain(fragment: dict[str, Any]) -> dict[str, Any]:
    """A declared option as a JSON schema (its default is filled in, not validated)."""
    return {k: v for k, v in fragment.items() if k != "default"}


# -- settings layers ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Options:
    """What a section of a settings layer accepts: per key, every declaration of it (models and
    tasks may declare one key differently), and the sections tasks add (e.g. profile)."""

    model_cfg: dict[str, list[dict[str, Any]]]
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
    props = {name: _strict(options[name]) for name in ("model_cfg", "train", "eval")}
    props.update({name: _partial(s) for name, s in options["sections"].items()})
    return validator({"type": "object", "properties": props})


def layer_problems(layer: dict[str, Any] | None, options: Options,
                   prefix: str) -> list[tuple[str, str]]:
    """(key path below ``prefix``, message) of every value of one settings layer that no
    declaration accepts: a wrong type, a non-finite number, an unknown key. Keys only the
    merge of all layers provides are not required here."""
    if not isinstance(layer, dict):
        return []  # the experiment schema reports it
    blob = json.dumps({"model_cfg": options.model_cfg, "train": options.train,
                       "eval": options.eval, "sections": options.sections}, sort_keys=True)
    return messages(_layer_validator(blob), layer, prefix)


def _mapping(value: Any) -> dict[Any, Any]:
    # a file that fails its schema is still walked, for the problems of its other layers
    return value if isinstance(value, dict) else {}


def experiment_layers(exp: dict[str, Any]) -> Iterable[tuple[str, str | None, dict[str, Any]]]:
    """(layer name, the model it applies to or None for layers every model shares, settings) of
    every settings layer of an experiment file, at every scale."""
    yield "defaults", None, exp.get("defaults")
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
