"""Vector fields f(t, x) of the flows and their Jacobian structure.

Every field is called as ``field(x, cond)`` and returns dx/dt for a batch ``x`` of shape (B, D);
``cond`` is the time t for FFJORD fields and the augmented state a for AFFJORD's main field.
Fields that know their Jacobian in closed form implement ``jacobian(x, cond)`` → (f, ∂f/∂x)
and ``trace(x, cond)`` → (f, tr ∂f/∂x); the CNF uses it as the fast exact path and the
autograd trace as the ground truth it is tested against.
"""

from __future__ import annotations

import torch
from torch import nn

from odeflows.nn.layers import LAYERS, NONLINEARITIES, activation_derivative

__all__ = ["AugmentedDynamics", "AugmentedHyperField", "HyperUnits", "MLPField", "TimeHyperField"]


class MLPField(nn.Module):
    """FFJORD ``ODEnet`` on vectors: time-conditioned layers with a nonlinearity between them."""

    def __init__(self, dim: int, hidden_dims: list[int], layer: str = "concatsquash",
                 nonlinearity: str = "tanh"):
        super().__init__()
        dims = [dim, *hidden_dims, dim]
        pairs = zip(dims[:-1], dims[1:], strict=True)
        self.layers = nn.ModuleList(LAYERS[layer](a, b) for a, b in pairs)
        self.nonlinearity = nonlinearity
        self.act = NONLINEARITIES[nonlinearity]()

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(t, x)
            if i < len(self.layers) - 1:
                x = self.act(x)
        return x

    def jacobian(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Output and ∂f/∂x (B, D, D) by pushing the D input tangents through the layers
        alongside the forward pass (forward mode), so the exact trace needs no per-dimension
        backward pass and training no double backward through it."""
        tangent: torch.Tensor | None = None  # ∂h/∂x; (out, D) until it becomes batch-dependent
        h = x
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            pre = layer(t, h)
            weight, scale = layer.x_jacobian(t)
            tangent = weight if tangent is None else torch.matmul(weight, tangent)
            if scale is not None:
                tangent = tangent * scale.unsqueeze(-1)
            if i < last:
                h = self.act(pre)
                tangent = tangent * activation_derivative(self.nonlinearity, pre, h).unsqueeze(-1)
            else:
                h = pre
        if tangent.dim() == 2:  # a single linear layer: the Jacobian is the same for every sample
            tangent = tangent.expand(x.shape[0], *tangent.shape)
        return h, tangent

    def trace(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f, jac = self.jacobian(x, t)
        return f, jac.diagonal(dim1=1, dim2=2).sum(1)


class HyperUnits(nn.Module):
    """A one-hidden-layer field whose weights come from a hypernet of a conditioning vector c:

        f(u) = (1/W) Σ_i [u_i ⊙ σ(g_i)] tanh(w_iᵀ u + b_i),   (w, u, g, b) = H(c)

    with H: c → tanh → tanh → linear (torchdiffeq ``examples/cnf.py``; AFFJORD §4.1 feeds the
    augmented state instead of t). Only the first ``out_dim`` output components are returned.
    """

    def __init__(self, in_dim: int, out_dim: int, cond_dim: int, width: int = 64,
                 hidden: int = 32):
        super().__init__()
        self.in_dim, self.out_dim, self.width = in_dim, out_dim, width
        self.hyper = nn.Sequential(
            nn.Linear(cond_dim, hidden), nn.Tanh(),
            nn.Linear(hidden, hidden), nn.Tanh(),
            nn.Linear(hidden, 3 * width * in_dim + width),
        )

    def params(self, cond: torch.Tensor) -> tuple[torch.Tensor, ...]:
        p = self.hyper(cond.reshape(1, -1)).reshape(-1)
        n = self.width * self.in_dim
        w = p[:n].reshape(self.width, self.in_dim)
        u = p[n:2 * n].reshape(self.width, self.in_dim)
        g = p[2 * n:3 * n].reshape(self.width, self.in_dim)
        b = p[3 * n:]
        return w, u * torch.sigmoid(g), b

    def forward_with_jacobian(self, u_in: torch.Tensor, cond: torch.Tensor, jac: bool):
        w, ug, b = self.params(cond)
        h = torch.tanh(u_in @ w.T + b)  # (B, W)
        out = (h @ ug[:, : self.out_dim]) / self.width
        if not jac:
            return out, None
        # d out_j / d u_k = (1/W) Σ_i ug_ij (1 - h_i²) w_ik, over the first out_dim inputs
        dh = (1 - h * h) / self.width
        J = torch.einsum("bi,ij,ik->bjk", dh, ug[:, : self.out_dim], w[:, : self.out_dim])
        return out, J

    def forward_with_trace(self, u_in: torch.Tensor, cond: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """Output and tr(∂out/∂u) over the first out_dim inputs: (1/W) Σ_i (1 − h_i²) c_i with
        c_i = Σ_k ug_ik w_ik — one matrix-vector product instead of the whole Jacobian."""
        w, ug, b = self.params(cond)
        h = torch.tanh(u_in @ w.T + b)
        out = (h @ ug[:, : self.out_dim]) / self.width
        c = (ug[:, : self.out_dim] * w[:, : self.out_dim]).sum(1) / self.width
        return out, (1 - h * h) @ c


class TimeHyperField(nn.Module):
    """The torchdiffeq ``cnf.py`` field used as AFFJORD's FFJORD baseline: weights = H(t)."""

    def __init__(self, dim: int, width: int = 64, hidden: int = 32):
        super().__init__()
        self.units = HyperUnits(dim, dim, 1, width, hidden)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.units.forward_with_jacobian(x, t.reshape(1).to(x), jac=False)[0]

    def jacobian(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.units.forward_with_jacobian(x, t.reshape(1).to(x), jac=True)

    def trace(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.units.forward_with_trace(x, t.reshape(1).to(x))


class AugmentedHyperField(nn.Module):
    """AFFJORD toy main field f(x, a): weights from a hypernet of the (shared) augmented state a,
    applied to [x; a]; returns the x components."""

    def __init__(self, dim: int, aug_dim: int, width: int = 64, hidden: int = 32):
        super().__init__()
        self.dim = dim
        self.units = HyperUnits(dim + aug_dim, dim, aug_dim, width, hidden)

    def _inputs(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, a.expand(x.shape[0], -1)], dim=-1)

    def forward(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.units.forward_with_jacobian(self._inputs(x, a), a, jac=False)[0]

    def jacobian(self, x: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Output and ∂f/∂x (B, D, D) — the block the log-density needs."""
        return self.units.forward_with_jacobian(self._inputs(x, a), a, jac=True)

    def trace(self, x: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.units.forward_with_trace(self._inputs(x, a), a)


class AugmentedDynamics(nn.Module):
    """AFFJORD's autonomous field of the augmented state: g(a) = W₂ ELU(W₁ a + b₁) + b₂."""

    def __init__(self, aug_dim: int, hidden: int = 3):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(aug_dim, hidden), nn.ELU(), nn.Linear(hidden, aug_dim))

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.net(a)
