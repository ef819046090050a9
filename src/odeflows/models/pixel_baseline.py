"""An independent per-pixel histogram: the baseline every image density model must beat.

Each pixel i gets its own categorical distribution P_i over the 2^bits levels of the data,
estimated in closed form from the training images with add-``smoothing`` (Laplace) counts. As a
density on the dequantised cube [0, 1]^D it is constant inside each level's bin, so
p(x) = Π_i P_i(k_i) · 2^bits and its bits/dim (:func:`odeflows.tasks.image_density.bits_per_dim`)
is exactly the categorical's −Σ log2 P_i(k_i) / D — the same convention as the flows'. It
ignores every dependence between pixels: a model that does not beat it has learnt no structure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from odeflows.models import BuildContext

__all__ = ["PixelHistogram", "build", "fit"]


class PixelHistogram(nn.Module):
    """Per-pixel categorical P_i(k), k ∈ {0, …, 2^bits − 1}, of images (C, H, W) in [0, 1]."""

    def __init__(self, shape: Sequence[int], bits: int = 8, smoothing: float = 1.0):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        self.dim = math.prod(self.shape)
        self.bits, self.levels, self.smoothing = int(bits), 2 ** int(bits), float(smoothing)
        # uniform until fitted; a buffer, so it is saved with the weights
        self.register_buffer("log_probs",
                             torch.full((self.dim, self.levels), -math.log(self.levels)))

    @torch.no_grad()
    def fit(self, images: torch.Tensor) -> None:
        """Closed-form maximum a posteriori fit to uint8 training images (N, C, H, W)."""
        k = images.to(torch.int64).flatten(1)
        if self.bits < 8:
            k = torch.div(k, 2 ** (8 - self.bits), rounding_mode="floor")
        counts = torch.full((self.dim, self.levels), self.smoothing, dtype=torch.float64)
        counts.scatter_add_(1, k.T.contiguous(), torch.ones(k.T.shape, dtype=torch.float64))
        self.log_probs.copy_((counts / counts.sum(1, keepdim=True)).log().to(self.log_probs))

    def _levels(self, x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(1) * self.levels).floor().clamp(0, self.levels - 1).long()

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None
                ) -> dict[str, torch.Tensor]:
        """log p(x) in nats of dequantised images x ∈ [0, 1]^(C,H,W)."""
        k = self._levels(x)
        logp = self.log_probs.gather(1, k.T).sum(0) + self.dim * self.bits * math.log(2.0)
        return {"z": x.flatten(1), "logp": logp}

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)["logp"]

    def loss(self, x: torch.Tensor, generator: torch.Generator | None = None
             ) -> tuple[torch.Tensor, dict[str, float]]:
        nll = -self.forward(x)["logp"].mean()
        return nll, {"nll": nll.item()}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images, each pixel drawn from its own histogram, at the centre of its bin."""
        probs = self.log_probs.exp().cpu()
        k = torch.multinomial(probs, n, replacement=True, generator=generator)  # (D, n)
        x = (k.T.to(self.log_probs.dtype) + 0.5) / self.levels
        return x.reshape(n, *self.shape).to(self.log_probs.device)


# -- builder of the entry declared in odeflows.models.entries.pixel_baseline -----------------------
def build(o: dict[str, Any], ctx: BuildContext) -> PixelHistogram:
    return PixelHistogram(ctx.shape, bits=int(ctx.data.get("bits", 8)),
                          smoothing=float(o["smoothing"]))


def fit(model: PixelHistogram, x: Any) -> None:
    model.fit(x)
