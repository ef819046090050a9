"""The registry of figures an experiment may name (``figures:`` in its file).

Configuration (a declaration layer) checks an experiment's figure names against it before
anything runs, so it lives apart from the figure code: the modules of
:mod:`odeflows.figures.named` (and a user's own modules) add their drawing functions here when
they are imported, which :meth:`Registry.discover` does when a name is first looked up.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from odeflows.registry import Registry

__all__ = ["Draw", "FIGURES", "get_figure", "register_figure"]

Draw = Callable[[Any, Path], list[Path]]

FIGURES: Registry[Draw] = Registry("figure", packages=("odeflows.figures.named",))


def register_figure(name: str) -> Callable[[Draw], Draw]:
    """Register the decorated ``draw(exp, out_dir)`` under ``name``."""
    def wrap(fn: Draw) -> Draw:
        FIGURES.add(name, fn)
        return fn
    return wrap


def get_figure(name: str) -> Draw:
    return FIGURES.get(name)
