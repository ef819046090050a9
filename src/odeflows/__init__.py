"""odeflows: regenerate the reported numbers of FFJORD, AFFJORD, RNODE, ANODE and the adjoint
method from one workflow. Users load finished runs with :func:`odeflows.api.load_run`."""

from __future__ import annotations

import sys
import types
from typing import Any

__version__ = "0.1.0"


def _without_scipy_solvers() -> None:
    """torchdiffeq imports ``scipy.integrate`` (1–2 s per process, ~40 % of a short job's start)
    only for its ``scipy_solver`` method, which odeflows never offers (see ``Solver``): give that
    one import a stand-in so every training and evaluation process starts faster."""
    name = "torchdiffeq._impl.scipy_wrapper"
    if name in sys.modules or "torchdiffeq" in sys.modules:
        return
    stub = types.ModuleType(name)

    class ScipyWrapperODESolver:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise NotImplementedError("odeflows loads torchdiffeq without its scipy solvers")

    stub.ScipyWrapperODESolver = ScipyWrapperODESolver  # type: ignore[attr-defined]
    sys.modules[name] = stub


# here, before any submodule can import torchdiffeq (odeflows.ode, odeflows.nn.lean_dopri5)
_without_scipy_solvers()
