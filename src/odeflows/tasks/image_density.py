"""Flows on images: loss = mean bits/dim (+ λ_K·K + λ_J·J, RNODE); score = mean bits/dim.

Images arrive as uint8 tensors (B, C, H, W) so prepared data stay exact and small; the task
dequantises them into [0, 1]: every training batch with uniform noise, validation/test as
configured (``eval.dequantization``: uniform for FFJORD/AFFJORD, midpoint for RNODE). Evaluation
records both RNODE Table 2 numbers (clean and dequantised bits/dim), samples by reverse
integration and, as the eval options ask, the cost of each direction of the flow and its
round-trip error on clean test images (claims 12-13).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from odeflows.registry import Deferred
from odeflows.tasks import (
    EVAL_BATCH,
    FLOW_EVAL_OPTIONS,
    Task,
    batches,
    counted,
    device_of,
    register_task,
)

if TYPE_CHECKING:
    import torch

__all__ = ["ImageDensityTask", "bits_per_dim", "dequantize"]

DEQUANTIZATION = ("uniform", "midpoint")


def dequantize(x: torch.Tensor, bits: int, mode: str, generator: torch.Generator | None,
               device: torch.device) -> torch.Tensor:
    """uint8 pixels → values in [0, 1] on a 2^bits-level grid.

    ``uniform``: (k + u)/2^bits with u ~ U[0, 1) per pixel (FFJORD and AFFJORD, train and test;
    RNODE at training time, its "dirty" bpd). ``midpoint``: (k + ½)/2^bits (RNODE's test-time
    ``shift``, its "clean" bpd). For bits < 8 pixels are first integer-divided by 2^(8 − bits), as
    RNODE does for 5-bit CelebA-HQ.
    """
    import torch

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


class ImageDensityTask(Task):
    name = "image_density"
    drawer = Deferred("odeflows.figures.image_density:plot_image_density")
    eval_options = {
        **EVAL_BATCH,
        "dequantization": {"enum": list(DEQUANTIZATION), "default": "uniform"},
        "samples": {"type": "integer", "minimum": 0, "default": 0},
        **FLOW_EVAL_OPTIONS,
    }
    train_options = {"dequantization": {"enum": list(DEQUANTIZATION), "default": "uniform"}}
    metrics = ("best_val_loss", "test_bpd", "test_bpd_dequantized", "test_bpd_clean", "test_nfe",
               "nfe_train_mean", "jacobian_last_epoch", "kinetic_last_epoch",
               "train_wall_seconds", "train_hours", "num_parameters")
    labels = {"best_val_loss": "best val bits/dim", "test_bpd": "test bits/dim",
              "test_bpd_dequantized": "test bpd (dequantised)",
              "test_bpd_clean": "test bpd (clean)", "test_nfe": "test NFE",
              "nfe_train_mean": "train NFE/iter (f+b)",
              "jacobian_last_epoch": "∫‖J‖²_F/D (last epoch)",
              "kinetic_last_epoch": "∫‖f‖²/2D (last epoch)", "train_wall_seconds": "train s",
              "train_hours": "train hours (Σ step times)", "num_parameters": "params"}
    headlines = ("test_bpd", "test_nfe", "nfe_train_mean")

    def __init__(self, bits: int = 8, train_dequantization: str = "uniform",
                 eval_dequantization: str = "uniform"):
        for mode in (train_dequantization, eval_dequantization):
            if mode not in DEQUANTIZATION:
                raise ValueError(f"unknown dequantization {mode!r}; allowed values: "
                                 f"{', '.join(DEQUANTIZATION)}")
        self.bits = int(bits)
        self.train_dequantization = train_dequantization
        self.eval_dequantization = eval_dequantization

    def accepts(self, model, data) -> str | None:
        if not model.is_density:
            return "the model is not a density model"
        if data.data != "images" or model.data != "images":
            return "the data are not images"
        return None

    def configure(self, cfg: dict[str, Any]) -> ImageDensityTask:
        return ImageDensityTask(bits=int(cfg["data"]["bits"]),
                                train_dequantization=cfg["train"]["dequantization"],
                                eval_dequantization=cfg["eval"]["dequantization"])

    def loss(self, model, x, y, generator):
        flow = getattr(model, "module", model)  # DistributedDataParallel wraps the flow
        xin = dequantize(x, self.bits, self.train_dequantization, generator, device_of(model))
        out = model(xin, generator)
        bpd = bits_per_dim(out["logp"], xin[0].numel(), self.bits).mean()
        loss, stats = bpd, {"nll": bpd.item(), "bpd": bpd.item()}
        if "kinetic" in out:
            k, j = out["kinetic"].mean(), out["jacobian"].mean()
            loss = loss + flow.kinetic * k + flow.jacobian * j
            stats.update(kinetic=k.item(), jacobian=j.item())
        return loss, stats

    def score(self, model, x: np.ndarray, y, batch_size, generator,
              dequantization: str | None = None) -> dict[str, Any]:
        import torch

        mode = dequantization or self.eval_dequantization
        device = device_of(model)
        xt = torch.from_numpy(x)
        total, nfe, n_batches = 0.0, 0, 0
        with torch.no_grad():
            for sl in batches(len(xt), batch_size):
                xin = dequantize(xt[sl], self.bits, mode, generator, device)
                out, calls = counted(model, model, xin, generator)
                total += float(bits_per_dim(out["logp"], xin[0].numel(), self.bits).sum())
                nfe += calls
                n_batches += 1
        n = max(1, len(xt))
        return {"loss": total / n, "bpd": total / n, "nfe": nfe / max(1, n_batches),
                "n": len(xt), "dequantization": mode}

    def test_scores(self, model, data, cfg, generator) -> dict[str, Any]:
        bs = int(cfg["eval"]["batch_size"])
        test = self.score(model, data["x_test"], None, bs, generator)
        out = {f"test_{k}": v for k, v in test.items()}
        if math.isfinite(test["loss"]):
            # RNODE Table 2: bits/dim on clean (midpoint) and dirty (uniform noise) test images
            for mode, key in (("midpoint", "test_bpd_clean"), ("uniform", "test_bpd_dequantized")):
                out[key] = test["bpd"] if mode == test["dequantization"] else self.score(
                    model, data["x_test"], None, bs, generator, dequantization=mode)["bpd"]
        return out

    def evidence(self, model, data, cfg, generator, run) -> dict[str, Any]:
        import torch

        from odeflows.evidence.flows import flow_evidence

        ecfg = cfg["eval"]
        n = int(ecfg["samples"])
        if n:
            # reverse integration from the base (FFJORD/AFFJORD Fig. 7-8, RNODE samples)
            with torch.no_grad():
                imgs = model.sample(n, generator).clamp(0, 1)
            run.save_arrays("samples", images=(imgs.numpy() * 255).round().astype(np.uint8),
                            data=data["x_test"][:n])
        # costs and round trips on the clean (midpoint) test images, so that they do not depend
        # on dequantisation noise
        points = max(int(ecfg["cost_batch"]), int(ecfg["roundtrip_batch"]))
        x = dequantize(torch.from_numpy(data["x_test"][:points]), self.bits, "midpoint", None,
                       device_of(model))
        return flow_evidence(model, x, ecfg, generator, run)



register_task(ImageDensityTask())
