"""Load, validate, resolve and hash configurations.

Data flows one way: ``config/config.yaml`` names a scale and experiments; each experiment file is
validated against ``schemas/experiment.schema.yaml``; the run matrix is the product
experiment × dataset × model × seed at that scale; each run's configuration is resolved by deep
merging and validated again against ``schemas/run.schema.yaml``. Errors name the offending key and
the allowed values, and are raised before anything is run or written.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCALES = ("smoke", "laptop", "paper")
EXPERIMENTS = ("anode_toy", "affjord_toy", "node_adjoint", "anode_images", "affjord_images",
               "rnode_images", "rnode_ablation", "affjord_rnode")
IMAGE_EXPERIMENTS = ("anode_images", "affjord_images", "rnode_images", "rnode_ablation",
                     "affjord_rnode")


class ConfigError(ValueError):
    """A configuration value is missing, malformed or unknown."""


@cache
def _schema(name: str) -> dict[str, Any]:
    text = resources.files("odeflows").joinpath("schemas", name).read_text()
    return yaml.safe_load(text)


def _validate(obj: Any, schema_name: str, where: str) -> None:
    validator = jsonschema.Draft202012Validator(_schema(schema_name))
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
    if not errors:
        return
    lines = []
    for err in errors[:5]:
        key = ".".join(str(p) for p in err.absolute_path) or "<top level>"
        msg = err.message
        allowed = err.schema.get("enum") if isinstance(err.schema, dict) else None
        if err.validator == "enum" and allowed:
            msg = f"{err.instance!r} is not allowed; allowed values: {', '.join(map(str, allowed))}"
        elif err.validator == "propertyNames":
            msg = f"unknown name {err.instance!r}: {err.message}"
        lines.append(f"  {where}: key '{key}': {msg}")
    raise ConfigError("invalid configuration:\n" + "\n".join(lines))


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


def config_hash(cfg: dict[str, Any]) -> str:
    """Stable short hash of a JSON-serialisable config (key order does not matter)."""
    blob = json.dumps(cfg, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True, order=True)
class RunSpec:
    """Coordinates of one run; ``path`` is its directory under ``results/``."""

    scale: str
    experiment: str
    dataset: str
    model: str
    seed: int

    @property
    def path(self) -> str:
        return (
            f"results/{self.scale}/runs/{self.experiment}/{self.dataset}/{self.model}/"
            f"seed{self.seed}"
        )


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"configuration file not found: {path}")
    with open(path) as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def validate_workflow(config: dict[str, Any]) -> dict[str, Any]:
    """Validate the top-level workflow config and every experiment file it names."""
    cfg = {"config_dir": "config", **config}
    _validate(cfg, "workflow.schema.yaml", "config")
    for exp in cfg["experiments"]:
        load_experiment(exp, cfg["config_dir"])
    load_datasets(cfg["config_dir"])
    return cfg


@cache
def _load_experiment_cached(experiment: str, config_dir: str) -> str:
    path = Path(config_dir) / "experiments" / f"{experiment}.yaml"
    data = load_yaml(path)
    _validate(data, "experiment.schema.yaml", str(path))
    if data["id"] != experiment:
        raise ConfigError(f"{path}: key 'id' is {data['id']!r}, expected {experiment!r}")
    variants = data.get("variants", {})
    base = _schema("experiment.schema.yaml")["$defs"]["base_model"]["enum"]
    unknown = [m for m in data["models"] if m not in base and m not in variants]
    if unknown:
        raise ConfigError(
            f"{path}: key 'models': {unknown} are neither models ({', '.join(base)}) nor "
            "declared under 'variants'"
        )
    for scale in SCALES:
        sc = data["scales"][scale]
        for key, allowed in (("datasets", data["datasets"]), ("models", data["models"])):
            extra = set(sc.get(key, [])) - set(allowed)
            if extra:
                raise ConfigError(
                    f"{path}: key 'scales.{scale}.{key}': {sorted(extra)} not among the "
                    f"experiment's {key}; allowed values: {', '.join(allowed)}"
                )
    return json.dumps(data)


def load_experiment(experiment: str, config_dir: str | Path = "config") -> dict[str, Any]:
    return json.loads(_load_experiment_cached(experiment, str(config_dir)))


def load_datasets(config_dir: str | Path = "config") -> dict[str, Any]:
    data = load_yaml(Path(config_dir) / "datasets.yaml")
    for name, entry in data.items():
        for scale in SCALES:
            sizes = entry.get("sizes", {}).get(scale)
            # image sets may say null: every available image of that split
            allow_all = entry.get("family") == "images"
            if not sizes or any(
                not (allow_all and sizes.get(k, 0) is None) and int(sizes.get(k) or 0) < 1
                for k in ("train", "val", "test")
            ):
                raise ConfigError(
                    f"config/datasets.yaml: key '{name}.sizes.{scale}' needs positive "
                    "train, val and test sizes" + (" (or null: all)" if allow_all else "")
                )
    return data


def run_matrix(config: dict[str, Any]) -> list[RunSpec]:
    """All runs of the configured scale, sorted."""
    cfg = validate_workflow(config)
    scale, config_dir = cfg["scale"], cfg["config_dir"]
    specs = []
    for exp_id in cfg["experiments"]:
        exp = load_experiment(exp_id, config_dir)
        sc = exp["scales"][scale]
        for dataset in sc.get("datasets", exp["datasets"]):
            for model in sc.get("models", exp["models"]):
                for seed in range(sc["seeds"]):
                    specs.append(RunSpec(scale, exp_id, dataset, model, seed))
    return sorted(specs)


def resolve_run(spec: RunSpec, config_dir: str | Path = "config") -> dict[str, Any]:
    """The fully resolved, validated configuration of one run: defaults ← model_settings ←
    dataset_settings ← dataset_model_settings ← the scale's overrides, dataset_overrides and
    model_overrides (later wins)."""
    exp = load_experiment(spec.experiment, config_dir)
    sc = exp["scales"][spec.scale]
    # a variant (e.g. affjord_hyper) is a base model with its own model_settings entry
    base_model = exp.get("variants", {}).get(spec.model, spec.model)
    merged = deep_merge(
        exp["defaults"],
        exp.get("model_settings", {}).get(spec.model),
        exp.get("dataset_settings", {}).get(spec.dataset),
        exp.get("dataset_model_settings", {}).get(spec.dataset, {}).get(spec.model),
        sc.get("overrides"),
        sc.get("dataset_overrides", {}).get(spec.dataset),
        sc.get("model_overrides", {}).get(spec.model),
    )
    merged.setdefault("eval_solver", merged.get("solver"))
    datasets = load_datasets(config_dir)
    if spec.dataset not in datasets:
        raise ConfigError(f"config/datasets.yaml: no entry for dataset {spec.dataset!r}")
    entry = datasets[spec.dataset]
    images = entry.get("family") == "images"
    # an experiment over toy and image data (affjord_rnode) is a density task on both
    task = "image_density" if images and exp["task"] == "density" else exp["task"]
    cfg = {
        "experiment": spec.experiment,
        "dataset": spec.dataset,
        "model": base_model,
        "seed": spec.seed,
        "scale": spec.scale,
        "task": task,
        **merged,
    }
    if base_model != spec.model:
        cfg["variant"] = spec.model
    if images:
        cfg["data"] = {"source": entry["source"], "bits": int(entry.get("bits", 8)),
                       **cfg.get("data", {})}
    cfg.setdefault("eval", {})
    _validate(cfg, "run.schema.yaml", f"resolved config of {spec.path}")
    return cfg


def dataset_config(dataset: str, scale: str, config_dir: str | Path = "config") -> dict[str, Any]:
    entry = load_datasets(config_dir).get(dataset)
    if entry is None:
        raise ConfigError(f"config/datasets.yaml: no entry for dataset {dataset!r}")
    cfg = {
        "name": dataset,
        "family": entry["family"],
        "seed": int(entry.get("seed", 0)),
        "params": entry.get("params", {}),
        "sizes": entry["sizes"][scale],
    }
    if entry["family"] == "images":
        cfg.update(source=entry["source"], raw_root=entry.get("raw_root", "data/raw"),
                   image_size=entry.get("image_size"), download=False)
    return cfg


def run_resources(scale: str, experiment: str, dataset: str,
                  config_dir: str | Path = "config") -> dict[str, Any]:
    """Scheduler resources of one training job: the scale's ``resources`` updated by its
    ``dataset_resources[dataset]`` (e.g. ImageNet64 on 4 GPUs). ``processes`` > 1 means the job is
    launched by torchrun with that many processes (one per GPU)."""
    sc = load_experiment(experiment, config_dir)["scales"][scale]
    return {**sc.get("resources", {}), **sc.get("dataset_resources", {}).get(dataset, {})}


def launcher(resources: dict[str, Any]) -> str:
    """Command prefix that starts ``odeflows`` once per process (empty for one process)."""
    n = int(resources.get("processes", 1))
    if n <= 1:
        return ""
    return f"torchrun --standalone --nproc_per_node={n} --no-python "
