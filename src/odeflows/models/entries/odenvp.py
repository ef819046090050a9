"""The multiscale image flows FFJORD, RNODE, AFFJORD and AFFJORD + RNODE (implementation:
:mod:`odeflows.models.odenvp`)."""

from __future__ import annotations

from odeflows.models import ModelEntry, register_model, with_defaults
from odeflows.nn.names import DIVERGENCES, IMAGE_LAYERS, NONLINEARITIES
from odeflows.registry import Deferred

IMPLEMENTATION = "odeflows.models.odenvp"

ffjord = {
    "layer": {"enum": list(IMAGE_LAYERS), "default": "concat"},
    "hidden_dims": {"type": "array", "items": {"type": "integer", "minimum": 1},
                    "minItems": 1, "default": [64, 64, 64]},
    "num_blocks": {"type": "integer", "minimum": 1, "default": 1},
    "alpha": {"type": "number", "minimum": 0, "exclusiveMaximum": 0.5, "default": 1e-6,
              "description": "logit transform logit(α + (1 − 2α) x)"},
    "T": {"type": "number", "exclusiveMinimum": 0, "default": 1.0},
    "nonlinearity": {"enum": list(NONLINEARITIES), "default": "softplus"},
    "divergence": {"enum": list(DIVERGENCES), "default": "hutchinson"},
    "probe": {"enum": ["rademacher", "gaussian"], "default": "rademacher"},
    "kinetic": {"type": "number", "minimum": 0, "default": 0.0},
    "jacobian": {"type": "number", "minimum": 0, "default": 0.0},
    "zero_last": {"type": "boolean", "default": False,
                  "description": "last conv starts at zero (RNODE)"},
    "hyper_in": {"type": "integer", "minimum": 1, "default": 10},
    "track_regularisers": {"type": "boolean", "default": False,
                           "description": "integrate K and J even with zero weights"},
    "fused": {"type": "boolean", "default": True,
              "description": "fused Hutchinson kernel (odeflows.nn.fused_conv) for blocks "
                             "without RNODE's regularisers"},
}
affjord = {**ffjord, "aug_hidden": {"type": "integer", "minimum": 1, "default": 20}}
# RNODE §6: λ_K = λ_J = 0.01, one Gaussian probe shared with the Jacobian term, zero-init
rnode = {"kinetic": 0.01, "jacobian": 0.01, "probe": "gaussian", "zero_last": True}

density = frozenset({"density"})
reference = Deferred(f"{IMPLEMENTATION}:reference_count")
for name, augmented, options, label, color, extra in (
        ("ffjord", False, ffjord, "FFJORD", "tab:blue", {}),
        ("rnode", False, ffjord, "RNODE", "tab:green", rnode),
        ("affjord", True, affjord, "AFFJORD", "tab:red", {}),
        ("affjord_rnode", True, affjord, "AFFJORD + RNODE", "tab:purple", rnode)):
    build = Deferred(f"{IMPLEMENTATION}:build", augmented)
    register_model(ModelEntry(name, "images", density, build,
                              with_defaults(options, **extra), samples=True,
                              reference_count=reference, label=label, color=color,
                              module=IMPLEMENTATION, declared_in=__name__,
                              description="multiscale continuous normalizing flow on images"))
