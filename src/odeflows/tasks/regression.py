"""ANODE's toy regression: Huber (SmoothL1) loss on ±1 targets; accuracy = sign agreement."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from odeflows.registry import Deferred
from odeflows.tasks import EVAL_BATCH, Task, batches, counted, device_of, no_grad, register_task

if TYPE_CHECKING:
    from torch import nn

__all__ = ["RegressionTask", "has_ode"]


def has_ode(model: nn.Module) -> bool:
    from odeflows.ode import CountedField

    return any(isinstance(m, CountedField) for m in model.modules())


class RegressionTask(Task):
    name = "regression"
    drawer = Deferred("odeflows.figures.regression:plot_regression")
    supervised = True
    eval_options = {**EVAL_BATCH,
                    "trajectory_points": {"type": "integer", "minimum": 2, "default": 21}}
    metrics = ("test_loss", "test_accuracy", "test_nfe", "nfe_first_epoch", "nfe_last_epoch",
               "train_wall_seconds", "num_parameters")
    labels = {"test_loss": "test loss", "test_accuracy": "test acc.", "test_nfe": "test NFE",
              "nfe_first_epoch": "NFE (first epoch)", "nfe_last_epoch": "NFE (last epoch)",
              "train_wall_seconds": "train s", "num_parameters": "params"}
    headlines = ("test_accuracy", "test_loss", "test_nfe")

    def accepts(self, model, data) -> str | None:
        if "regressor" not in model.kinds:
            return "the model is not a regressor"
        if data.targets != "regression":
            return "the dataset has no regression targets"
        return None

    def loss(self, model, x, y, generator):
        from torch.nn import functional as F

        return F.smooth_l1_loss(model(x), y), {}

    @no_grad
    def score(self, model, x, y, batch_size, generator) -> dict[str, Any]:
        import torch
        from torch.nn import functional as F

        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        device = device_of(model)
        total, correct, nfe, n_batches = 0.0, 0, 0, 0
        for sl in batches(len(xt), batch_size):
            pred, calls = counted(model, model, xt[sl].to(device))
            pred = pred.cpu()
            nfe += calls
            n_batches += 1
            total += float(F.smooth_l1_loss(pred, yt[sl], reduction="sum"))
            correct += int((torch.sign(pred) == torch.sign(yt[sl])).sum())
        return {"loss": total / yt.numel(), "accuracy": correct / yt.numel(),
                "nfe": nfe / n_batches if has_ode(model) else None, "n": len(xt)}

    @no_grad
    def evidence(self, model, data, cfg, generator, run) -> dict[str, Any]:
        """Hidden-state trajectories of 200 test points (ANODE Fig. 3, 5, 7)."""
        import torch

        times = torch.linspace(0.0, 1.0, int(cfg["eval"]["trajectory_points"]))
        x = torch.from_numpy(data["x_test"][:200])
        if hasattr(model, "trajectory"):
            traj = model.trajectory(x, times).numpy()
        else:  # a discrete model: the hidden state after each block
            states, h = [x], x
            for block in model.blocks:
                h = h + block(h)
                states.append(h)
            traj, times = torch.stack(states).numpy(), torch.arange(len(states)).float()
        run.save_arrays("trajectories", times=times.numpy(), states=traj, x=x.numpy(),
                        y=data["y_test"][:200], output=model(x).numpy())
        return {}



register_task(RegressionTask())
