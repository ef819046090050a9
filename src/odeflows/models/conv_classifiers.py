"""ANODE's image classifiers (EmilienDupont/augmented-neural-odes ``conv_models.py`` semantics).

A convolutional NODE (``augment_channels=0``) or ANODE (p zero channels appended to the image)
integrated over [0, T] straight on the pixels (no feature extractor in front: the ANODE authors
kept it out on purpose, issue #8, so the flow itself has to do the work), followed by a linear
readout of the flattened terminal state. The field is conv 1×1 → act → conv 3×3 → act → conv 1×1
with, in the time-dependent version, a constant-t channel prepended before every conv (App. F.1.2).

``parameter_count`` is analytic, so the parameter-matched configurations of App. F.2.2 can be
checked without building a model; ``PAPER_CONFIGS`` holds them with the reference code's counts
and the paper's printed ones, which differ (see ``PARAMETER_COUNT_NOTE``).
"""

from __future__ import annotations

import torch
from torch import nn

from odeflows.models import BuildContext, ReferenceCount
from odeflows.nn.layers import NONLINEARITIES
from odeflows.ode import CountedField, Solver, solve

__all__ = ["ConvODEFunc", "ConvODENet", "TimeConv2d", "build", "parameter_count",
           "reference_count", "reference_solver"]


def reference_solver(adjoint: bool = True) -> Solver:
    """The reference ODEBlock's solver: dopri5, rtol = atol = 1e-3, at most 1000 steps; the image
    experiments (config_img.json) train with the adjoint."""
    return Solver(method="dopri5", rtol=1e-3, atol=1e-3, max_num_steps=1000, adjoint=adjoint)


class TimeConv2d(nn.Module):
    """A conv whose input gets a constant channel equal to t in front (reference ``Conv2dTime``:
    t first, then the state, so weights are laid out like the reference's)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int,
                 time_dependent: bool):
        super().__init__()
        self.time_dependent = time_dependent
        self.conv = nn.Conv2d(in_channels + int(time_dependent), out_channels,
                              kernel_size=kernel_size, padding=padding)

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        if self.time_dependent:
            # multiply rather than fill with float(t): keeps t a graph tensor, as the adjoint's
            # vector-Jacobian product with respect to t expects
            h = torch.cat([torch.ones_like(h[:, :1]) * t, h], dim=1)
        return self.conv(h)


class ConvODEFunc(nn.Module):
    """dh/dt on (B, c+p, H, W): 1×1 (c+p → F), 3×3 pad 1 (F → F), 1×1 (F → c+p), act between."""

    def __init__(self, channels: int, filters: int, time_dependent: bool = True,
                 nonlinearity: str = "relu"):
        super().__init__()
        self.conv1 = TimeConv2d(channels, filters, 1, 0, time_dependent)
        self.conv2 = TimeConv2d(filters, filters, 3, 1, time_dependent)
        self.conv3 = TimeConv2d(filters, channels, 1, 0, time_dependent)
        # not in-place (the reference's ReLU is): saves nothing worth the aliasing risk under
        # autograd and the adjoint's re-evaluations
        self.act = NONLINEARITIES[nonlinearity]()

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        h = self.act(self.conv1(t, h))
        h = self.act(self.conv2(t, h))
        return self.conv3(t, h)


class ConvODENet(nn.Module):
    """Conv NODE (augment_channels=0) / ANODE (p zero channels appended) image classifier."""

    def __init__(self, shape: tuple[int, int, int], num_classes: int, *, solver: Solver,
                 eval_solver: Solver, filters: int, augment_channels: int = 0,
                 time_dependent: bool = True, nonlinearity: str = "relu", T: float = 1.0):
        super().__init__()
        self.shape = tuple(shape)
        self.augment_channels, self.T = augment_channels, T
        self.solver, self.eval_solver = solver, eval_solver
        c, height, width = self.shape
        self.func = CountedField(ConvODEFunc(c + augment_channels, filters, time_dependent,
                                             nonlinearity))
        self.readout = nn.Linear((c + augment_channels) * height * width, num_classes)

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.shape:
            # the readout is sized for one image shape; fail here rather than deep in the solver
            raise ValueError(f"expected input (B, {', '.join(map(str, self.shape))}), "
                             f"got {tuple(x.shape)}")
        if not self.augment_channels:
            return x
        b, _, height, width = x.shape
        return torch.cat([x, x.new_zeros(b, self.augment_channels, height, width)], dim=1)

    def trajectory(self, x: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """Hidden states at ``times``: (len(times), B, c + p, H, W)."""
        solver = self.solver if self.training else self.eval_solver
        return solve(self.func, self._augment(x), times.to(x), solver)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Terminal state h(T), (B, c + p, H, W)."""
        return self.trajectory(x, torch.tensor([0.0, self.T]))[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.features(x).flatten(1))


def _conv_count(c_in: int, c_out: int, kernel: int, time_dependent: bool) -> int:
    # weight (c_in [+1 time channel]) · c_out · k² plus c_out biases
    return (c_in + int(time_dependent)) * c_out * kernel * kernel + c_out


def parameter_count(shape: tuple[int, int, int], num_classes: int, filters: int,
                    augment_channels: int, time_dependent: bool = True) -> int:
    """ConvODENet's parameter count from the layer shapes alone (no instantiation)."""
    c, height, width = shape
    ch = c + augment_channels
    field = (_conv_count(ch, filters, 1, time_dependent)
             + _conv_count(filters, filters, 3, time_dependent)
             + _conv_count(filters, ch, 1, time_dependent))
    return field + ch * height * width * num_classes + num_classes


# -- builders of the entries declared in odeflows.models.entries.conv_classifiers ----------------
def build(o: dict, ctx: BuildContext) -> ConvODENet:
    return ConvODENet(ctx.shape, ctx.out_dim, solver=ctx.solver, eval_solver=ctx.eval_solver,
                      filters=int(o["filters"]), augment_channels=int(o.get("augment_channels", 0)),
                      time_dependent=o["time_dependent"], nonlinearity=o["nonlinearity"])


def reference_count(o: dict, ctx: BuildContext, implementation: str) -> ReferenceCount:
    # ANODE's code builds exactly this model
    return ReferenceCount(parameter_count(ctx.shape, ctx.out_dim, int(o["filters"]),
                                          int(o.get("augment_channels", 0)),
                                          o["time_dependent"]))
