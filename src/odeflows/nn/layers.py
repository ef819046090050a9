"""Time-conditioned linear layers of FFJORD (lib/layers/diffeq_layers/basic.py semantics)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ConcatLinear", "ConcatSquashLinear", "LAYERS", "NONLINEARITIES",
           "activation_derivative"]

NONLINEARITIES = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "softplus": nn.Softplus,
    "elu": nn.ELU,
}


def activation_derivative(name: str, pre: torch.Tensor, post: torch.Tensor) -> torch.Tensor:
    """d act(z)/dz at the pre-activation ``pre`` (``post`` = act(pre), reused where cheaper)."""
    if name == "tanh":
        return 1 - post * post
    if name == "softplus":
        return torch.sigmoid(pre)
    if name == "relu":
        return (pre > 0).to(pre.dtype)
    if name == "elu":
        return torch.where(pre > 0, torch.ones_like(pre), post + 1)
    raise ValueError(f"unknown nonlinearity {name!r}; allowed values: {', '.join(NONLINEARITIES)}")


class ConcatLinear(nn.Module):
    """W [x; t] + b: time enters as one extra input feature."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.linear = nn.Linear(dim_in + 1, dim_out)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        tt = torch.ones_like(x[..., :1]) * t
        return self.linear(torch.cat([x, tt], dim=-1))

    def x_jacobian(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """∂out/∂x = diag(scale) · W: (W, scale or None)."""
        return self.linear.weight[:, :-1], None


class ConcatSquashLinear(nn.Module):
    """(W x + b) · σ(a t + c) + d t  (d has no bias)."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)
        self.hyper_gate = nn.Linear(1, dim_out)
        self.hyper_bias = nn.Linear(1, dim_out, bias=False)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        tt = t.reshape(1, 1).to(x)
        return self.linear(x) * torch.sigmoid(self.hyper_gate(tt)) + self.hyper_bias(tt)

    def x_jacobian(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        tt = t.reshape(1, 1).to(self.linear.weight)
        return self.linear.weight, torch.sigmoid(self.hyper_gate(tt)).reshape(-1)


LAYERS = {"concat": ConcatLinear, "concatsquash": ConcatSquashLinear}
