"""What a model is trained to do: the loss of a batch and the score of a held-out split.

Images arrive as uint8 tensors (B, C, H, W); the task turns them into model inputs (dequantised
values in [0, 1] for flows, ToTensor-style [0, 1] values for classifiers) so prepared data stays
exact and small.
"""

from __future__ import annotations

import math
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


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


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
        device = _device(model)
        total, correct, nfe, batches = 0.0, 0, 0, 0
        for sl in _batches(len(xt), batch_size):
            reset_nfe(model)
            pred = model(xt[sl].to(device)).cpu()
            nfe += count_nfe(model)
            batches += 1
            total += float(F.smooth_l1_loss(pred, yt[sl], reduction="sum"))
            correct += int((torch.sign(pred) == torch.sign(yt[sl])).sum())
        return {"loss": total / yt.numel(), "accuracy": correct / yt.numel(),
                "nfe": nfe / batches if has_ode(model) else None, "n": len(xt)}


class ClassificationTask:
    """ANODE image classification: cross-entropy on logits; images scaled to [0, 1] exactly as
    torchvision's ToTensor (no normalisation, no augmentation: ANODE's loaders)."""

    supervised = True

    @staticmethod
    def inputs(x: torch.Tensor, device: torch.device) -> torch.Tensor:
        return x.to(device).float().div_(255.0)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None,
             generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        device = _device(model)
        logits = model(self.inputs(x, device))
        target = y.to(device)
        loss = F.cross_entropy(logits, target)
        acc = (logits.argmax(1) == target).float().mean()
        return loss, {"accuracy": acc.item()}

    @torch.no_grad()
    def score(self, model: nn.Module, x: np.ndarray, y: np.ndarray | None, batch_size: int,
              generator: torch.Generator) -> dict[str, float]:
        device = _device(model)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()
        total, correct, nfe, batches = 0.0, 0, 0, 0
        for sl in _batches(len(xt), batch_size):
            reset_nfe(model)
            logits = model(self.inputs(xt[sl], device)).cpu()
            nfe += count_nfe(model)
            batches += 1
            total += float(F.cross_entropy(logits, yt[sl], reduction="sum"))
            correct += int((logits.argmax(1) == yt[sl]).sum())
        n = max(1, len(xt))
        return {"loss": total / n, "accuracy": correct / n,
                "nfe": nfe / max(1, batches) if has_ode(model) else None, "n": len(xt)}


class DensityTask:
    """Maximum likelihood: loss = −mean log p(x) (+ regularisers); score = mean NLL in nats."""

    supervised = False

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None,
             generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        return model.loss(x, generator)

    def score(self, model: nn.Module, x: np.ndarray, y: np.ndarray | None, batch_size: int,
              generator: torch.Generator) -> dict[str, float]:
        xt = torch.from_numpy(x)
        device = _device(model)
        total, nfe, batches = 0.0, 0, 0
        with torch.no_grad():
            for sl in _batches(len(xt), batch_size):
                reset_nfe(model)
                total += float(-model.forward(xt[sl].to(device), generator)["logp"].sum())
                nfe += count_nfe(model)
                batches += 1
        return {"loss": total / len(xt), "nfe": nfe / batches, "n": len(xt)}


DEQUANTIZATION = ("uniform", "midpoint")


def dequantize(x: torch.Tensor, bits: int, mode: str, generator: torch.Generator | None,
               device: torch.device) -> torch.Tensor:
    """uint8 pixels → values in [0, 1] on a 2^bits-level grid.

    ``uniform``: (k + u)/2^bits with u ~ U[0, 1) per pixel (FFJORD and AFFJORD, train and test;
    RNODE at training time, its "dirty" bpd). ``midpoint``: (k + ½)/2^bits (RNODE's test-time
    ``shift``, its "clean" bpd). For bits < 8 pixels are first integer-divided by 2^(8 − bits), as
    RNODE does for 5-bit CelebA-HQ.
    """
    k = x.to(torch.int64)
    if bits < 8:
        k = torch.div(k, 2 ** (8 - bits), rounding_mode="floor")
    k = k.to(device=device, dtype=torch.float32)
    if mode == "uniform":
        # drawn on the generator's device (CPU) so a run's noise does not depend on the accelerator
        noise = torch.rand(k.shape, generator=generator).to(device)
    elif mode == "midpoint":
        noise = torch.full_like(k, 0.5)
    else:
        raise ValueError(f"unknown dequantization {mode!r}; allowed values: "
                         f"{', '.join(DEQUANTIZATION)}")
    return (k + noise) / 2 ** bits


def bits_per_dim(logp: torch.Tensor, dims: int, bits: int) -> torch.Tensor:
    """Per-sample bits/dim of the discrete image from log p(x) of x ∈ [0, 1]^D (nats).

    The density on the 2^bits-level integer scale is p(x)/2^(bits·D), so
    bpd = −(log p(x)/D − bits·log 2)/log 2 — FFJORD's ``compute_bits_per_dim`` (−log 256 term)
    and RNODE's (−log 2^nbits), with the logit log-det already inside log p(x).
    """
    return -(logp / dims - bits * math.log(2.0)) / math.log(2.0)


class ImageDensityTask:
    """Flows on images: loss = mean bits/dim (+ λ_K·K + λ_J·J, RNODE); score = mean bits/dim.

    ``train_dequantization`` is applied to every training batch; ``eval_dequantization`` to
    validation/test (uniform: FFJORD/AFFJORD; midpoint: RNODE).
    """

    supervised = False

    def __init__(self, bits: int = 8, train_dequantization: str = "uniform",
                 eval_dequantization: str = "uniform"):
        for mode in (train_dequantization, eval_dequantization):
            if mode not in DEQUANTIZATION:
                raise ValueError(f"unknown dequantization {mode!r}; allowed values: "
                                 f"{', '.join(DEQUANTIZATION)}")
        self.bits = int(bits)
        self.train_dequantization, self.eval_dequantization = (train_dequantization,
                                                               eval_dequantization)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None,
             generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        flow = getattr(model, "module", model)  # DistributedDataParallel wraps the flow
        xin = dequantize(x, self.bits, self.train_dequantization, generator, _device(model))
        out = model(xin, generator)
        bpd = bits_per_dim(out["logp"], xin[0].numel(), self.bits).mean()
        loss, stats = bpd, {"nll": bpd.item(), "bpd": bpd.item()}
        if "kinetic" in out:
            k, j = out["kinetic"].mean(), out["jacobian"].mean()
            loss = loss + flow.kinetic * k + flow.jacobian * j
            stats.update(kinetic=k.item(), jacobian=j.item())
        return loss, stats

    def score(self, model: nn.Module, x: np.ndarray, y: np.ndarray | None, batch_size: int,
              generator: torch.Generator, dequantization: str | None = None
              ) -> dict[str, float]:
        mode = dequantization or self.eval_dequantization
        device = _device(model)
        xt = torch.from_numpy(x)
        total, nfe, batches = 0.0, 0, 0
        with torch.no_grad():
            for sl in _batches(len(xt), batch_size):
                reset_nfe(model)
                xin = dequantize(xt[sl], self.bits, mode, generator, device)
                logp = model(xin, generator)["logp"]
                total += float(bits_per_dim(logp, xin[0].numel(), self.bits).sum())
                nfe += count_nfe(model)
                batches += 1
        n = max(1, len(xt))
        return {"loss": total / n, "bpd": total / n, "nfe": nfe / max(1, batches),
                "n": len(xt), "dequantization": mode}


def make_task(kind: str, **options: Any) -> Any:
    """``options`` (images only): bits, train_dequantization, eval_dequantization."""
    if kind == "regression":
        return RegressionTask()
    if kind == "density":
        return DensityTask()
    if kind == "classification":
        return ClassificationTask()
    if kind == "image_density":
        return ImageDensityTask(**options)
    raise ValueError(f"unknown task {kind!r}; allowed values: regression, density, "
                     "classification, image_density")


def task_for(cfg: dict[str, Any]) -> Any:
    """The task of a resolved run config (image flows read bits and dequantisation from it)."""
    if cfg["task"] != "image_density":
        return make_task(cfg["task"])
    data, ev = cfg.get("data", {}), cfg.get("eval", {})
    return make_task("image_density", bits=int(data.get("bits", 8)),
                     train_dequantization=cfg["train"].get("dequantization", "uniform"),
                     eval_dequantization=ev.get("dequantization", "uniform"))
