"""ANODE's toy predictors on vectors (implementation: :mod:`odeflows.models.classifiers`)."""

from __future__ import annotations

from odeflows.models import ModelEntry, register_model
from odeflows.nn.names import NONLINEARITIES
from odeflows.registry import Deferred

IMPLEMENTATION = "odeflows.models.classifiers"

common = {
    "hidden": {"type": "integer", "minimum": 1, "default": 32},
    "nonlinearity": {"enum": list(NONLINEARITIES), "default": "relu"},
    "readout": {"enum": ["linear", "project"], "default": "linear",
                "description": "project: the output is the first coordinates of the flow"},
}
node = {**common, "time_dependent": {"type": "boolean", "default": True}}
anode = {**node, "augment_dim": {"type": "integer", "minimum": 1, "default": 5,
                                 "description": "p zero dimensions appended (ANODE §5)"}}
resnet = {**common, "blocks": {"type": "integer", "minimum": 1, "default": 5},
          "final_activation": {"type": "boolean", "default": True}}

predictor = frozenset({"classifier", "regressor"})
build_resnet = Deferred(f"{IMPLEMENTATION}:build_resnet")
build_node = Deferred(f"{IMPLEMENTATION}:build_node")
register_model(ModelEntry("resnet", "vectors", predictor, build_resnet, resnet, label="ResNet",
                          color="0.45", module=IMPLEMENTATION, declared_in=__name__,
                          description="discrete residual MLP (ANODE's baseline)"))
register_model(ModelEntry("node", "vectors", predictor, build_node, node, label="NODE",
                          color="tab:blue", module=IMPLEMENTATION, declared_in=__name__,
                          description="Neural ODE block + readout"))
register_model(ModelEntry("anode", "vectors", predictor, build_node, anode, label="ANODE",
                          color="tab:orange", module=IMPLEMENTATION, declared_in=__name__,
                          description="NODE on [x; 0_p] (augmented)"))
