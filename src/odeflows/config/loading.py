"""Reading the configuration files: each checked against its schema (cached per version of the
file), the scales' ``extends`` chains, and the experiments as the files under ``experiments/``."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from odeflows.config.errors import ConfigError
from odeflows.config.schemas import messages, schema, validator
from odeflows.registry import suggest

__all__ = ["experiment_ids", "load_datasets", "load_experiment", "load_scales", "load_yaml",
           "scale_chain"]


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


def experiment_ids(config_dir: str | Path = "config") -> list[str]:
    """Every experiment: the files ``<config_dir>/experiments/*.yaml``."""
    return sorted(p.stem for p in (Path(config_dir) / "experiments").glob("*.yaml"))


def _load_checked(path: str, schema_name: str) -> str:
    """A config file checked against its schema, as JSON (cached per version of the file)."""
    try:
        st = Path(path).stat()
    except OSError:
        st = None
    return _load_checked_version(path, schema_name, st.st_mtime_ns if st else 0,
                                 st.st_size if st else 0)


@cache
def _load_checked_version(path: str, schema_name: str, mtime_ns: int, size: int) -> str:
    data = load_yaml(path)
    problems = [f"{path}: {k}: {m}" for k, m in messages(validator(schema(schema_name)), data)]
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
