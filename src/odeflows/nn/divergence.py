"""Divergence tr(∂f/∂x) and the Jacobian Frobenius norm, exact or by Hutchinson's estimator.

``exact_autograd`` (one vector-Jacobian product per dimension) is the straightforward ground truth;
fields with a closed-form Jacobian give the same numbers faster; Hutchinson's estimator
eᵀ(∂f/∂x)e uses a probe e that the caller fixes for a whole solve (FFJORD; fixing it per
evaluation instead makes adaptive solvers take tiny steps, torchdiffeq issue #120).
"""

from __future__ import annotations

import torch

__all__ = ["exact_autograd", "from_jacobian", "hutchinson", "sample_probe"]


def exact_autograd(f: torch.Tensor, x: torch.Tensor, create_graph: bool
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact trace and squared Frobenius norm of ∂f/∂x, per sample: ((B,), (B,))."""
    div = torch.zeros(f.shape[0], dtype=f.dtype, device=f.device)
    frob = torch.zeros_like(div)
    for i in range(f.shape[1]):
        row = torch.autograd.grad(f[:, i].sum(), x, create_graph=create_graph, retain_graph=True)[0]
        div = div + row[:, i]
        frob = frob + row.pow(2).sum(1)
    return div, frob


def from_jacobian(jac: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Trace and squared Frobenius norm of a batch of Jacobians (B, D, D)."""
    return jac.diagonal(dim1=1, dim2=2).sum(1), jac.pow(2).sum((1, 2))


def hutchinson(f: torch.Tensor, x: torch.Tensor, probe: torch.Tensor, create_graph: bool
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Unbiased estimates of tr(J) (eᵀJe) and ‖J‖²_F (‖eᵀJ‖², for E[eeᵀ] = I), sharing one vjp
    as RNODE does."""
    vjp = torch.autograd.grad(f, x, probe, create_graph=create_graph, retain_graph=True)[0]
    flat_v, flat_e = vjp.flatten(1), probe.flatten(1)
    return (flat_v * flat_e).sum(1), flat_v.pow(2).sum(1)


def sample_probe(like: torch.Tensor, kind: str, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
    """A probe shaped like ``like``. Drawn on the generator's device and moved, so a CPU
    generator (the run's seeded stream) also serves CUDA models."""
    gen_device = generator.device if generator is not None else like.device
    if kind == "gaussian":
        e = torch.randn(like.shape, generator=generator, dtype=like.dtype, device=gen_device)
    elif kind == "rademacher":
        bits = torch.randint(0, 2, like.shape, generator=generator, device=gen_device)
        e = bits.to(like.dtype) * 2 - 1
    else:
        raise ValueError(f"unknown probe {kind!r}; allowed values: gaussian, rademacher")
    return e.to(like.device)
