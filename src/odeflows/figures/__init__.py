"""Figures an experiment names (``figures:`` in its file), drawn besides its tasks' own.

A figure is a registered function ``draw(exp, out_dir) -> list[Path]`` of an
:class:`odeflows.plots.Experiment` view that reads run directories and tables only, like every
figure. Its module must not import matplotlib at import time: configuration checks the names an
experiment uses against this registry before anything runs, and should stay light. Built-in
figures live in this package's modules; a user's module registers more with
:func:`register_figure` and is named under ``modules:``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from odeflows.registry import Registry

Draw = Callable[[Any, Path], list[Path]]

FIGURES: Registry[Draw] = Registry("figure", packages=("odeflows.figures",))


def register_figure(name: str) -> Callable[[Draw], Draw]:
    """Register the decorated ``draw(exp, out_dir)`` under ``name``."""
    def wrap(fn: Draw) -> Draw:
        FIGURES.add(name, fn)
        return fn
    return wrap


def get_figure(name: str) -> Draw:
    return FIGURES.get(name)


# the built-in figures, imported here so that they are part of the plot stage's code version
from odeflows.figures import flows as _flows  # noqa: E402,F401
