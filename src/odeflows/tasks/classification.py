"""ANODE's image classification: cross-entropy on logits; images scaled to [0, 1] exactly as
torchvision's ToTensor (no normalisation, no augmentation: ANODE's loaders)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from odeflows.registry import Deferred
from odeflows.tasks import Task, batches, counted, device_of, no_grad, register_task
from odeflows.tasks.regression import has_ode

if TYPE_CHECKING:
    import torch

__all__ = ["ClassificationTask"]


class ClassificationTask(Task):
    name = "classification"
    drawer = Deferred("odeflows.figures.classification:plot_classification")
    supervised = True
    metrics = ("test_accuracy_pct", "test_loss", "test_nfe", "nfe_first_epoch", "nfe_last_epoch",
               "train_wall_seconds", "num_parameters")
    labels = {"test_accuracy_pct": "test acc. %", "test_loss": "test loss",
              "test_nfe": "test NFE", "nfe_first_epoch": "NFE (first epoch)",
              "nfe_last_epoch": "NFE (last epoch)", "train_wall_seconds": "train s",
              "num_parameters": "params"}
    headlines = ("test_accuracy_pct", "test_nfe")

    def accepts(self, model, data) -> str | None:
        if "classifier" not in model.kinds:
            return "the model is not a classifier"
        if data.targets != "classes":
            return "the dataset has no class labels"
        return None

    def output_dim(self, meta: dict[str, Any], y: torch.Tensor | None) -> int:
        if meta.get("classes"):
            return int(meta["classes"])
        if y is None:
            raise ValueError("a classification dataset needs labels (y_train)")
        return int(y.max()) + 1

    @staticmethod
    def inputs(x: torch.Tensor, device: torch.device) -> torch.Tensor:
        return x.to(device).float().div_(255.0)

    def loss(self, model, x, y, generator):
        from torch.nn import functional as F

        device = device_of(model)
        logits = model(self.inputs(x, device))
        target = y.to(device)
        loss = F.cross_entropy(logits, target)
        acc = (logits.argmax(1) == target).float().mean()
        return loss, {"accuracy": acc.item()}

    @no_grad
    def score(self, model, x: np.ndarray, y, batch_size, generator) -> dict[str, Any]:
        import torch
        from torch.nn import functional as F

        device = device_of(model)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()
        total, correct, nfe, n_batches = 0.0, 0, 0, 0
        for sl in batches(len(xt), batch_size):
            logits, calls = counted(model, model, self.inputs(xt[sl], device))
            logits = logits.cpu()
            nfe += calls
            n_batches += 1
            total += float(F.cross_entropy(logits, yt[sl], reduction="sum"))
            correct += int((logits.argmax(1) == yt[sl]).sum())
        n = max(1, len(xt))
        return {"loss": total / n, "accuracy": correct / n,
                "nfe": nfe / max(1, n_batches) if has_ode(model) else None, "n": len(xt)}



register_task(ClassificationTask())
