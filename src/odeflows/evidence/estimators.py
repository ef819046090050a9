"""Divergence estimators checked against the exact trace on a trained model: the evidence for
claims about them (claim 10: Hutchinson's estimator is unbiased)."""

from __future__ import annotations

import math
from typing import Any

import torch

from odeflows.models.cnf import ToyCNF
from odeflows.nn import divergence as div_

__all__ = ["hutchinson_check"]


def hutchinson_check(model: ToyCNF, x: torch.Tensor, probes: int,
                     generator: torch.Generator) -> dict[str, Any]:
    """Compare ``probes`` Hutchinson estimates of tr(∂f/∂x) with the exact trace, per point.

    Returns, per probe kind, the pooled z-score Σ(mean_k − exact)/√Σ se² (≈ N(0,1) if unbiased),
    the mean relative bias and the largest per-point |z|.
    """
    field = model.dynamics.field
    cond = model.aug_init if model.aug_dim else torch.tensor(model.t_data)
    xg = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        f = field(xg, cond)
        exact, _ = div_.exact_autograd(f, xg, create_graph=False)
        out: dict[str, Any] = {"points": int(x.shape[0]), "probes": probes}
        for kind in ("gaussian", "rademacher"):
            est = torch.stack([
                div_.hutchinson(f, xg, div_.sample_probe(xg, kind, generator), False)[0]
                for _ in range(probes)
            ])  # (probes, B)
            mean, se = est.mean(0), est.std(0) / math.sqrt(probes)
            err = mean - exact
            z_pooled = float(err.sum() / se.pow(2).sum().sqrt().clamp_min(1e-30))
            out[kind] = {
                "z_pooled": z_pooled,
                "max_abs_z": float((err.abs() / se.clamp_min(1e-30)).max()),
                "mean_abs_exact": float(exact.abs().mean()),
                "mean_bias": float(err.mean()),
                "mean_se": float(se.mean()),
            }
    return out
