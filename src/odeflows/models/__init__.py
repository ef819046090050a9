"""Model registry: every model is an entry registered under a name by the module that defines it.

An entry declares what the harness needs to know — what the model is (``density``,
``classifier``, ``regressor``), which data it takes (``vectors`` or ``images``; one name may have
an implementation for each), whether it samples, the options of ``model_options`` it accepts (JSON
schema fragments with their defaults; anything else in the configuration is an error) and how
to build it. Evaluation, tables, figures, the audit and the parameter table read these facts,
never the model's name.

Built-in entries are declared in :mod:`odeflows.models.entries` (one module per implementation
module of this package: ``classifiers``, ``conv_classifiers``, ``cnf``, ``odenvp``, …), imported
on first use; their builders are :class:`~odeflows.registry.Deferred`, so knowing the entries
does not import torch — only building a model does. A user's own module registers more with
:func:`register_model` (with plain functions) and is named in the configuration (``modules:``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from odeflows.registry import Registry

if TYPE_CHECKING:
    from torch import nn

    from odeflows.ode import Solver

__all__ = ["BuildContext", "MODELS", "ModelEntry", "ReferenceCount", "build_model", "data_kind",
           "get_model", "model_names", "num_parameters", "register_model", "with_defaults"]

KINDS = ("density", "classifier", "regressor")
DATA_KINDS = ("vectors", "images")
Options = Mapping[str, dict[str, Any]]


@dataclass(frozen=True)
class BuildContext:
    """What a builder gets besides the model's options: the input shape (``(D,)`` or
    ``(C, H, W)``), the output size of predictors, the training / evaluation solvers and the
    dataset's facts (the run config's ``data``: generator, kind, image bits)."""

    shape: tuple[int, ...]
    out_dim: int
    solver: Solver
    eval_solver: Solver
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReferenceCount:
    """The reference implementation's parameter count of a configuration, analytic from its
    layer shapes, and what the reference builds that we do not (name → number of parameters;
    ``ours = total − extras``), for the parameter table."""

    total: int
    extras: Mapping[str, int] = field(default_factory=dict)

    @property
    def ours(self) -> int:
        return self.total - sum(self.extras.values())


@dataclass(frozen=True)
class ModelEntry:
    """A registered model implementation for one kind of data."""

    name: str
    data: str
    kinds: frozenset[str]
    build: Callable[[dict[str, Any], BuildContext], nn.Module]
    options: Options = field(default_factory=dict)
    samples: bool = False
    # parameter table: the reference code's count, given the options, the context and the
    # experiment's reference implementation (e.g. RNODE's code also trains its FFJORD baseline)
    reference_count: Callable[[dict[str, Any], BuildContext, str], ReferenceCount | None] | None \
        = None
    # fitted in closed form from the training inputs instead of by the optimisation loop
    fit: Callable[[nn.Module, Any], None] | None = None
    # what the model offers beyond the surface of its kind; known traits:
    #   "divergence": a CNF whose field's divergence can be checked against Hutchinson's estimator
    #   "baseline": a reference every other model of its kind should beat (tables flag its rows)
    traits: frozenset[str] = frozenset()
    label: str = ""
    color: str | None = None
    description: str = ""
    #: the module that implements it (its code is what a run's results depend on)
    module: str = ""
    #: the module that declares it, where that is another one (the built-in entries)
    declared_in: str = ""

    def __post_init__(self) -> None:
        if self.data not in DATA_KINDS:
            raise ValueError(f"model {self.name!r}: data must be one of {DATA_KINDS}")
        unknown = set(self.kinds) - set(KINDS)
        if not self.kinds or unknown:
            raise ValueError(f"model {self.name!r}: kinds must be a non-empty subset of {KINDS}")

    @property
    def is_density(self) -> bool:
        return "density" in self.kinds

    def defaults(self) -> dict[str, Any]:
        return {k: s["default"] for k, s in self.options.items() if "default" in s}


MODELS: Registry[ModelEntry] = Registry("model", packages=("odeflows.models.entries",))


def register_model(entry: ModelEntry) -> ModelEntry:
    return MODELS.add(entry.name, entry, entry.data)


def get_model(name: str, data: str) -> ModelEntry:
    return MODELS.get(name, data)


def model_names() -> list[str]:
    return MODELS.names()


def with_defaults(options: Options, **defaults: Any) -> dict[str, dict[str, Any]]:
    """A copy of an options schema with other defaults (e.g. RNODE: FFJORD with λ = 0.01)."""
    out = {k: dict(v) for k, v in options.items()}
    for key, value in defaults.items():
        if key not in out:
            raise KeyError(f"{key!r} is not an option")
        out[key]["default"] = value
    return out


def data_kind(shape: Sequence[int]) -> str:
    return "images" if len(shape) == 3 else "vectors"


def build_model(cfg: dict[str, Any], shape: int | Sequence[int], out_dim: int = 1) -> nn.Module:
    """Instantiate the entry of a resolved run config (``model``, ``model_options``, ``solver``,
    ``eval_solver``) for inputs of ``shape`` (an int or ``(D,)`` for vectors, ``(C, H, W)`` for
    images)."""
    from odeflows.ode import Solver

    shape = (shape,) if isinstance(shape, int) else tuple(int(s) for s in shape)
    if len(shape) not in (1, 3):
        raise ValueError(f"inputs of shape {shape} are neither vectors nor (C, H, W) images")
    entry = get_model(cfg["model"], data_kind(shape))
    options = {**entry.defaults(), **cfg.get("model_options", {})}
    ctx = BuildContext(shape, out_dim, Solver.from_config(cfg["solver"]),
                       Solver.from_config(cfg.get("eval_solver") or cfg["solver"]),
                       cfg.get("data", {}))
    return entry.build(options, ctx)


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
