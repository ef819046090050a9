"""Time-conditioned linear layers of FFJORD (lib/layers/diffeq_layers/basic.py semantics)."""

from __future__ import annotations

import torch
from torch import nn

NONLINEARITIES = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "softplus": nn.Softplus,
    "elu": nn.ELU,
}


class ConcatLinear(nn.Module):
    """W [x; t] + b: time enters as one extra input feature."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.linear = nn.Linear(dim_in + 1, dim_out)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        tt = torch.ones_like(x[..., :1]) * t
        return self.linear(torch.cat([x, tt], dim=-1))


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


LAYERS = {"concat": ConcatLinear, "concatsquash": ConcatSquashLinear}


def zero_last_layer(module: nn.Module) -> None:
    """RNODE's ``zero_last``: zero the weights (not the bias) of the last linear map."""
    last = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if last:
        nn.init.zeros_(last[-1].weight)
