"""The primer's discrete flows — linear (LU), NICE, RealNVP, MAF, IAF, NSF — on vectors and images
(implementation: :mod:`odeflows.models.discrete_flows`, on zuko's transforms)."""

from __future__ import annotations

from typing import Any

from odeflows.models import ModelEntry, register_model
from odeflows.nn.names import NONLINEARITIES
from odeflows.registry import Deferred

__all__ = ["FAMILIES", "OPTION_SCHEMAS"]

IMPLEMENTATION = "odeflows.models.discrete_flows"

FAMILIES = ("linear", "nice", "realnvp", "maf", "iaf", "nsf")

# -- options: JSON-schema fragments with defaults -------------------------------------------------
_COMMON: dict[str, dict[str, Any]] = {
    "base_std": {"type": "number", "exclusiveMinimum": 0, "default": 1.0,
                 "description": "standard deviation of the N(0, σ²I) base"},
    "alpha": {"type": "number", "minimum": 0, "exclusiveMaximum": 0.5, "default": 1.0e-6,
              "description": "images only (ignored for vectors): logit(α + (1 − 2α)x) "
                             "pre-processing, as the multiscale CNFs"},
}
_NETWORK: dict[str, dict[str, Any]] = {
    "transforms": {"type": "integer", "minimum": 1, "default": 4,
                   "description": "number of coupling / autoregressive transforms"},
    "hidden_dims": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1,
                    "default": [64, 64],
                    "description": "hidden widths of each transform's conditioner network"},
    "nonlinearity": {"type": "string", "enum": list(NONLINEARITIES), "default": "relu",
                     "description": "activation of the conditioner networks (zuko: ReLU)"},
}
OPTION_SCHEMAS: dict[str, dict[str, dict[str, Any]]] = {
    "linear": {
        "transforms": {"type": "integer", "minimum": 1, "default": 1,
                       "description": "stacked affine layers (their composition is affine)"},
        **_COMMON,
    },
    "nice": {**_NETWORK, **_COMMON,
             "scaling": {"type": "boolean", "default": True,
                         "description": "NICE's diagonal scaling layer on the latent side; "
                                        "without it the flow is volume-preserving"}},
    "realnvp": {**_NETWORK, **_COMMON},
    "maf": {**_NETWORK, **_COMMON},
    "iaf": {**_NETWORK, **_COMMON},
    "nsf": {**_NETWORK, **_COMMON,
            "bins": {"type": "integer", "minimum": 2, "default": 8,
                     "description": "spline bins K"},
            "bound": {"type": "number", "exclusiveMinimum": 0, "default": 5.0,
                      "description": "splines act on [−B, B]; identity outside"},
            "conditioner": {"type": "string", "enum": ["autoregressive", "coupling"],
                            "default": "autoregressive",
                            "description": "masked autoregressive (zuko NSF, sampling D passes "
                                           "per transform) or coupling (one pass each way)"}},
}

LABELS = {"linear": "linear (LU)", "nice": "NICE (additive coupling)",
          "realnvp": "RealNVP (affine coupling)", "maf": "MAF", "iaf": "IAF",
          "nsf": "neural spline flow"}
COLORS = {"linear": "0.45", "nice": "tab:olive", "realnvp": "tab:cyan", "maf": "tab:brown",
          "iaf": "tab:pink", "nsf": "tab:purple"}

for family in FAMILIES:
    for data in ("vectors", "images"):
        options = dict(OPTION_SCHEMAS[family])
        if data == "vectors":
            options.pop("alpha")  # the logit pre-processing exists for images only
        register_model(ModelEntry(
            family, data, frozenset({"density"}), Deferred(f"{IMPLEMENTATION}:build", family),
            options, samples=True, label=LABELS[family], color=COLORS[family],
            module=IMPLEMENTATION, declared_in=__name__,
            description=f"{LABELS[family]} discrete flow (zuko), primer §3.3-3.5"))
