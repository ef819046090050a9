"""FFJORD, RNODE, AFFJORD and AFFJORD + RNODE on vectors (implementation:
:mod:`odeflows.models.cnf`)."""

from __future__ import annotations

from odeflows.models import ModelEntry, register_model, with_defaults
from odeflows.nn.names import NONLINEARITIES, TIME_LAYERS
from odeflows.registry import Deferred

IMPLEMENTATION = "odeflows.models.cnf"

flow = {
    "t_data": {"type": "number", "default": 0.0, "description": "time of the data end"},
    "t_base": {"type": "number", "default": 0.5, "description": "time of the base end"},
    "learnable_T": {"type": "boolean", "default": False},
    "base_std": {"type": "number", "exclusiveMinimum": 0, "default": 1.0},
    "divergence": {"enum": ["exact", "hutchinson"], "default": "exact"},
    "probe": {"enum": ["gaussian", "rademacher"], "default": "gaussian"},
    "analytic_trace": {"type": "boolean", "default": True},
    "kinetic": {"type": "number", "minimum": 0, "default": 0.0,
                "description": "λ_K of RNODE's kinetic energy"},
    "jacobian": {"type": "number", "minimum": 0, "default": 0.0,
                 "description": "λ_J of RNODE's Jacobian Frobenius norm"},
    "fused": {"type": "boolean", "default": True,
              "description": "fast fused kernel where the field supports it"},
    "width": {"type": "integer", "minimum": 1, "default": 64},
    "hyper_hidden": {"type": "integer", "minimum": 1, "default": 32},
}
ffjord = {
    **flow,
    "field": {"enum": [*TIME_LAYERS, "hyper_t"], "default": "concatsquash"},
    "hidden_dims": {"type": "array", "items": {"type": "integer", "minimum": 1},
                    "minItems": 1, "default": [64, 64, 64]},
    "nonlinearity": {"enum": list(NONLINEARITIES), "default": "tanh"},
}
affjord = {**flow,
           "aug_dim": {"type": "integer", "minimum": 1, "default": 2},
           "aug_hidden": {"type": "integer", "minimum": 1, "default": 3}}
# RNODE §6: λ_K = λ_J = 0.01
rnode = {"kinetic": 0.01, "jacobian": 0.01}

density = frozenset({"density"})
build_ffjord = Deferred(f"{IMPLEMENTATION}:build_ffjord")
build_affjord = Deferred(f"{IMPLEMENTATION}:build_affjord")
for name, build, options, label, color, extra in (
        ("ffjord", build_ffjord, ffjord, "FFJORD", "tab:blue", {}),
        ("rnode", build_ffjord, ffjord, "RNODE", "tab:green", rnode),
        ("affjord", build_affjord, affjord, "AFFJORD", "tab:red", {}),
        ("affjord_rnode", build_affjord, affjord, "AFFJORD + RNODE", "tab:purple", rnode)):
    register_model(ModelEntry(name, "vectors", density, build,
                              with_defaults(options, **extra), samples=True,
                              traits=frozenset({"divergence"}), label=label, color=color,
                              module=IMPLEMENTATION, declared_in=__name__,
                              description="continuous normalizing flow on vectors"))
