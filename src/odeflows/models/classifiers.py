"""ANODE's toy models (EmilienDupont/augmented-neural-odes semantics): ResNet, NODE, ANODE.

NODE and ANODE share one class: ANODE is NODE with ``augment_dim`` zero dimensions appended to
the input before the ODE block (ANODE §5). The output is a linear readout of the terminal state
(reference code), or with ``readout="project"`` its first ``out_dim`` coordinates: ANODE §3 asks
whether the flow itself maps x to g(x) — a linear readout could flip g1d's sign on its own, which
would hide exactly the limitation the experiment is about.
"""

from __future__ import annotations

import torch
from torch import nn

from odeflows.models import BuildContext
from odeflows.nn.layers import NONLINEARITIES
from odeflows.ode import CountedField, Solver, solve

__all__ = ["MLPDynamics", "ODENet", "Project", "ResNetMLP", "build_node", "build_resnet",
           "make_readout"]


class Project(nn.Module):
    def __init__(self, out_dim: int):
        super().__init__()
        self.out_dim = out_dim

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h[:, : self.out_dim]


def make_readout(kind: str, dim: int, out_dim: int) -> nn.Module:
    if kind == "linear":
        return nn.Linear(dim, out_dim)
    if kind == "project":
        return Project(out_dim)
    raise ValueError(f"unknown readout {kind!r}; allowed values: linear, project")


class ResNetMLP(nn.Module):
    """``blocks`` residual blocks x ← x + act(W₂ act(W₁x + b₁) + b₂) (the reference code's
    block; ``final_activation=False`` drops the outer act, without which the increments of a
    ReLU block are ≥ 0 and a 1-D ResNet could only move points upwards), then the readout."""

    def __init__(self, dim: int, out_dim: int, hidden: int = 32, blocks: int = 5,
                 nonlinearity: str = "relu", readout: str = "linear",
                 final_activation: bool = True):
        super().__init__()
        act = NONLINEARITIES[nonlinearity]
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, hidden), act(), nn.Linear(hidden, dim),
                          act() if final_activation else nn.Identity())
            for _ in range(blocks)
        )
        self.readout = make_readout(readout, dim, out_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = x + block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.features(x))


class MLPDynamics(nn.Module):
    """fc1 → act → fc2 → act → fc3 on [h; t] (time concatenated to the first layer's input)."""

    def __init__(self, dim: int, hidden: int, time_dependent: bool, nonlinearity: str):
        super().__init__()
        self.time_dependent = time_dependent
        act = NONLINEARITIES[nonlinearity]
        self.net = nn.Sequential(
            nn.Linear(dim + int(time_dependent), hidden), act(),
            nn.Linear(hidden, hidden), act(),
            nn.Linear(hidden, dim),
        )

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        if self.time_dependent:
            h = torch.cat([h, torch.ones_like(h[:, :1]) * t], dim=1)
        return self.net(h)


class ODENet(nn.Module):
    """Neural ODE block on [x; 0_p] over [0, T] followed by a linear readout."""

    def __init__(self, dim: int, out_dim: int, *, solver: Solver, eval_solver: Solver,
                 hidden: int = 32, augment_dim: int = 0, time_dependent: bool = True,
                 nonlinearity: str = "relu", t_end: float = 1.0, readout: str = "linear"):
        super().__init__()
        self.augment_dim, self.t_end = augment_dim, t_end
        self.solver, self.eval_solver = solver, eval_solver
        self.func = CountedField(MLPDynamics(dim + augment_dim, hidden, time_dependent,
                                             nonlinearity))
        self.readout = make_readout(readout, dim + augment_dim, out_dim)

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        if not self.augment_dim:
            return x
        return torch.cat([x, x.new_zeros(x.shape[0], self.augment_dim)], dim=1)

    def trajectory(self, x: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """Hidden states at ``times`` (len(times), B, d + p)."""
        solver = self.solver if self.training else self.eval_solver
        return solve(self.func, self._augment(x), times, solver)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trajectory(x, torch.tensor([0.0, self.t_end]))[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.features(x))


# -- builders of the entries declared in odeflows.models.entries.classifiers ---------------------
def build_resnet(o: dict, ctx: BuildContext) -> ResNetMLP:
    return ResNetMLP(ctx.shape[0], ctx.out_dim, hidden=o["hidden"], blocks=o["blocks"],
                     nonlinearity=o["nonlinearity"], readout=o["readout"],
                     final_activation=o["final_activation"])


def build_node(o: dict, ctx: BuildContext) -> ODENet:
    return ODENet(ctx.shape[0], ctx.out_dim, solver=ctx.solver, eval_solver=ctx.eval_solver,
                  hidden=o["hidden"], augment_dim=o.get("augment_dim", 0),
                  time_dependent=o["time_dependent"], nonlinearity=o["nonlinearity"],
                  readout=o["readout"])
