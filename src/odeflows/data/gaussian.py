"""A Gaussian N(μ, Σ) with known parameters: the one distribution a linear flow can fit exactly
(flow primer §3.3: x = Az + b is N(b, AAᵀ)), so a density model's test NLL can be held against
the closed-form entropy H = ½ log det(2πe Σ) (claim 14)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from odeflows.data import register_sampler

__all__ = ["entropy", "gaussian"]


def _moments(mean: Sequence[float], cov: Sequence[Sequence[float]]
             ) -> tuple[np.ndarray, np.ndarray]:
    mu = np.asarray(mean, dtype=np.float64)
    sigma = np.asarray(cov, dtype=np.float64)
    if sigma.shape != (len(mu), len(mu)):
        raise ValueError(f"cov must be {len(mu)}×{len(mu)} for a mean of length {len(mu)}, "
                         f"got shape {sigma.shape}")
    if not np.allclose(sigma, sigma.T):
        raise ValueError("cov must be symmetric")
    if np.linalg.eigvalsh(sigma).min() <= 0:
        raise ValueError("cov must be positive definite")
    return mu, sigma


def entropy(mean: Sequence[float], cov: Sequence[Sequence[float]]) -> float:
    """Differential entropy of N(mean, cov) in nats: ½ log det(2πe Σ)."""
    _, sigma = _moments(mean, cov)
    _, logdet = np.linalg.slogdet(2 * math.pi * math.e * sigma)
    return 0.5 * float(logdet)


def _facts(mean: Sequence[float], cov: Sequence[Sequence[float]]) -> dict[str, float]:
    return {"entropy": entropy(mean, cov)}


@register_sampler(
    "gaussian",
    params={"mean": {"type": "array", "items": {"type": "number"}, "minItems": 1},
            "cov": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}},
    description="a Gaussian N(mean, cov) with known entropy", facts=_facts)
def gaussian(n: int, rng: np.random.Generator, mean: Sequence[float] = (0.0, 0.0),
             cov: Sequence[Sequence[float]] = ((1.0, 0.0), (0.0, 1.0))) -> np.ndarray:
    """``n`` draws μ + L ε with L Lᵀ = Σ (Cholesky) and ε ~ N(0, I) from ``rng``."""
    mu, sigma = _moments(mean, cov)
    eps = rng.standard_normal((n, len(mu)))
    return (mu + eps @ np.linalg.cholesky(sigma).T).astype(np.float32)
