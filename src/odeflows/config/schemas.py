"""The configuration files' JSON schemas shipped in ``odeflows/schemas/``, a validator whose
numbers are finite, and messages that name the key path of each problem and, for an unknown key,
the closest known key."""

from __future__ import annotations

import math
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource

from odeflows.registry import suggest

__all__ = ["RENAMED", "SCHEMAS", "messages", "plain", "schema", "validator"]

SCHEMAS = ("workflow", "experiment", "run", "datasets", "scales")

# keys renamed on 2026-12-06 so that each concept has one name: a configuration written before
# then is told the new name where the old one is unknown
RENAMED = {"model_cfg": "model_options", "defaults": "settings", "extends": "based_on"}


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
                if RENAMED.get(extra) in allowed:
                    close = f" (renamed '{RENAMED[extra]}' on 2026-12-06)"
                else:
                    close = suggest(extra, allowed)
                out.append((where, f"unknown key{close}{hint}"))
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
