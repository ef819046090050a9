"""ANODE's convolutional classifiers on images (implementation:
:mod:`odeflows.models.conv_classifiers`)."""

from __future__ import annotations

from odeflows.models import ModelEntry, register_model
from odeflows.nn.names import NONLINEARITIES
from odeflows.registry import Deferred

IMPLEMENTATION = "odeflows.models.conv_classifiers"

node = {
    "filters": {"type": "integer", "minimum": 1,
                "description": "F of the parameter-matched pairs (ANODE App. F.2.2)"},
    "time_dependent": {"type": "boolean", "default": True},
    "nonlinearity": {"enum": list(NONLINEARITIES), "default": "relu"},
}
anode = {**node, "augment_channels": {"type": "integer", "minimum": 1, "default": 5}}

predictor = frozenset({"classifier", "regressor"})
build = Deferred(f"{IMPLEMENTATION}:build")
reference = Deferred(f"{IMPLEMENTATION}:reference_count")
register_model(ModelEntry("node", "images", predictor, build, node, reference_count=reference,
                          label="NODE", color="tab:blue", module=IMPLEMENTATION,
                          declared_in=__name__,
                          description="conv Neural ODE classifier (time channel per conv)"))
register_model(ModelEntry("anode", "images", predictor, build, anode, reference_count=reference,
                          label="ANODE", color="tab:orange", module=IMPLEMENTATION,
                          declared_in=__name__,
                          description="conv NODE with p zero channels appended"))
