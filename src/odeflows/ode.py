"""The only place torchdiffeq is called: solver options, adjoint switch and NFE counting."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torchdiffeq import odeint, odeint_adjoint

__all__ = ["Autonomous", "Counted", "CountedField", "Solver", "SolverFailure", "count_nfe",
           "reset_nfe", "solve"]

FIXED_GRID = {"rk4", "euler", "midpoint"}


class SolverFailure(RuntimeError):
    """The adaptive solver gave up (step-size underflow or too many steps)."""


@dataclass(frozen=True)
class Solver:
    """Solver settings. ``steps`` (fixed-grid solvers) splits the interval into that many equal
    steps; ``step_size`` is the torchdiffeq option of the same name."""

    method: str = "dopri5"
    rtol: float = 1e-5
    atol: float = 1e-5
    step_size: float | None = None
    steps: int | None = None
    adjoint: bool = False
    max_num_steps: int | None = None

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> Solver:
        known = {k: cfg[k] for k in cls.__dataclass_fields__ if k in cfg and cfg[k] is not None}
        return cls(**known)

    def options(self, t0: float, t1: float) -> dict[str, Any]:
        if self.method in FIXED_GRID:
            if self.steps:
                return {"step_size": abs(t1 - t0) / self.steps}
            if self.step_size:
                return {"step_size": self.step_size}
            return {}
        opts: dict[str, Any] = {}
        if self.max_num_steps:
            opts["max_num_steps"] = self.max_num_steps
        return opts


class Counted(nn.Module):
    """Wraps a network and counts its calls: the cost counter of every model (NFE for ODE
    right-hand sides, network passes for discrete flows).

    The counter is a plain int that callers reset per solve; forward and backward counts are
    read before and after ``loss.backward()`` (the adjoint's backward solve calls the same module).
    """

    def __init__(self, func: nn.Module):
        super().__init__()
        self.func = func
        self.nfe = 0

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        self.nfe += 1
        return self.func(*args, **kwargs)


class CountedField(Counted):
    """An ODE right-hand side ``f(t, state)`` whose evaluations are counted (NFE)."""

    def forward(self, t: torch.Tensor, state: Any) -> Any:
        self.nfe += 1
        return self.func(t, state)


class Autonomous(nn.Module):
    """``g(a)`` as a right-hand side ``f(t, a)``: AFFJORD's augmented field, integrated on its own
    to get the augmented state at the base time for sampling."""

    def __init__(self, g: nn.Module):
        super().__init__()
        self.g = g

    def forward(self, t: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.g(a)


def solve(
    func: CountedField,
    y0: torch.Tensor | Sequence[torch.Tensor],
    t: torch.Tensor,
    solver: Solver,
    adjoint_params: Sequence[torch.Tensor] | None = None,
) -> Any:
    """Integrate ``func`` from ``t[0]`` through ``t``; returns the states at every time in ``t``."""
    y0 = tuple(y0) if isinstance(y0, (list, tuple)) else y0
    # the step size only needs the values: detach so a learnable end time does not warn
    opts = solver.options(float(t[0].detach()), float(t[-1].detach()))
    kwargs: dict[str, Any] = dict(rtol=solver.rtol, atol=solver.atol, method=solver.method,
                                  options=opts or None)
    try:
        if solver.adjoint:
            if adjoint_params is not None:
                kwargs["adjoint_params"] = tuple(adjoint_params)
            return odeint_adjoint(func, y0, t, **kwargs)
        return odeint(func, y0, t, **kwargs)
    except AssertionError as err:  # torchdiffeq signals underflow / max steps this way
        msg = str(err)
        if "underflow" in msg or "max_num_steps" in msg:
            raise SolverFailure(msg) from err
        raise


def count_nfe(module: nn.Module) -> int:
    """Calls of every counted network inside ``module`` since the last :func:`reset_nfe`."""
    return sum(m.nfe for m in module.modules() if isinstance(m, Counted))


def reset_nfe(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, Counted):
            m.nfe = 0
