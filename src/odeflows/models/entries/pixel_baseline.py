"""The independent per-pixel histogram every image flow should beat (implementation:
:mod:`odeflows.models.pixel_baseline`)."""

from __future__ import annotations

from odeflows.models import ModelEntry, register_model
from odeflows.registry import Deferred

IMPLEMENTATION = "odeflows.models.pixel_baseline"

register_model(ModelEntry(
    "pixel_histogram", "images", frozenset({"density"}), Deferred(f"{IMPLEMENTATION}:build"),
    {"smoothing": {"type": "number", "exclusiveMinimum": 0, "default": 1.0,
                   "description": "add-α counts per level (1: Laplace)"}},
    samples=True, fit=Deferred(f"{IMPLEMENTATION}:fit"), traits=frozenset({"baseline"}),
    label="per-pixel histogram", color="0.55", module=IMPLEMENTATION, declared_in=__name__,
    description="independent per-pixel categorical baseline, fitted in closed form"))
