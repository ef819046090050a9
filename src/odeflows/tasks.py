"""What a model is trained to do: the loss of a batch and the score of a held-out split."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from odeflows.ode import CountedField, count_nfe, reset_nfe


def has_ode(model: nn.Module) -> bool:
    return any(isinstance(m, CountedField) for m in model.modules())


def _batches(n: int, batch_size: int):
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


class RegressionTask:
    """ANODE toy regression: Huber (SmoothL1) loss on ±1 targets; accuracy = sign agreement."""

    supervised = True

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None,
             generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        loss = F.smooth_l1_loss(model(x), y)
        return loss, {}

    @torch.no_grad()
    def score(self, model: nn.Module, x: np.ndarray, y: np.ndarray | None, batch_size: int,
              generator: torch.Generator) -> dict[str, float]:
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        total, correct, nfe, batches = 0.0, 0, 0, 0
        for sl in _batches(len(xt), batch_size):
            reset_nfe(model)
            pred = model(xt[sl])
            nfe += count_nfe(model)
            batches += 1
            total += float(F.smooth_l1_loss(pred, yt[sl], reduction="sum"))
            correct += int((torch.sign(pred) == torch.sign(yt[sl])).sum())
        return {"loss": total / yt.numel(), "accuracy": correct / yt.numel(),
                "nfe": nfe / batches if has_ode(model) else None}


class DensityTask:
    """Maximum likelihood: loss = −mean log p(x) (+ regularisers); score = mean NLL in nats."""

    supervised = False

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None,
             generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        return model.loss(x, generator)

    def score(self, model: nn.Module, x: np.ndarray, y: np.ndarray | None, batch_size: int,
              generator: torch.Generator) -> dict[str, float]:
        xt = torch.from_numpy(x)
        total, nfe, batches = 0.0, 0, 0
        with torch.no_grad():
            for sl in _batches(len(xt), batch_size):
                reset_nfe(model)
                total += float(-model.forward(xt[sl], generator)["logp"].sum())
                nfe += count_nfe(model)
                batches += 1
        return {"loss": total / len(xt), "nfe": nfe / batches}


def make_task(kind: str) -> Any:
    if kind == "regression":
        return RegressionTask()
    if kind == "density":
        return DensityTask()
    raise ValueError(f"unknown task {kind!r}; allowed values: regression, density")
