"""Maximum likelihood on vectors (2-D toy densities): loss = −mean log p(x) (+ RNODE's
regularisers, inside the model's loss); score = mean NLL in nats (with its standard error).
Evaluation also records the test NLL of the best single Gaussian (fitted in closed form to the
training split), and, as the eval options ask, the cost of each direction of the flow and its
round-trip error (claims 12-14); for a 2-D model the density on a grid and its total mass,
samples, and Hutchinson's estimator against the exact trace (claim 10) for continuous flows."""

from __future__ import annotations

from typing import Any

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

__all__ = ["DensityTask", "density_grid", "gaussian_fit"]


def density_grid(model: Any, points: int, limit: float, batch: int) -> dict[str, np.ndarray]:
    """log p on a points×points grid over [−limit, limit]² and the grid's total probability."""
    import torch

    axis = torch.linspace(-limit, limit, points)
    xx, yy = torch.meshgrid(axis, axis, indexing="xy")
    grid = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    with torch.no_grad():
        logp = torch.cat([model.log_prob(grid[i:i + batch]) for i in range(0, len(grid), batch)])
    cell = float(axis[1] - axis[0]) ** 2
    return {"axis": axis.numpy(), "logp": logp.reshape(points, points).numpy(),
            "mass": np.array(float(logp.exp().sum()) * cell)}


def gaussian_fit(x_train: np.ndarray, x_test: np.ndarray) -> dict[str, float]:
    """Test NLL (nats, mean and standard error) of the maximum-likelihood Gaussian of the
    training points — the best any single Gaussian (any linear flow) can do there — computed in
    closed form, independently of every model."""
    xtr, xte = x_train.astype(np.float64), x_test.astype(np.float64)
    mean = xtr.mean(0)
    cov = np.atleast_2d(np.cov(xtr, rowvar=False, bias=True))
    chol = np.linalg.cholesky(cov)
    white = np.linalg.solve(chol, (xte - mean).T)  # L⁻¹(x − μ), so ‖·‖² is the Mahalanobis term
    nll = 0.5 * (white ** 2).sum(0) + np.log(np.diag(chol)).sum() \
        + 0.5 * xte.shape[1] * np.log(2 * np.pi)
    return {"gaussian_fit_test_nll": float(nll.mean()),
            "gaussian_fit_test_se": float(nll.std(ddof=1) / np.sqrt(len(nll)))}


class DensityTask(Task):
    name = "density"
    drawer = Deferred("odeflows.figures.density:plot_density")
    eval_options = {
        **EVAL_BATCH,
        "grid_points": {"type": "integer", "minimum": 2, "default": 100},
        "grid_limit": {"type": "number", "exclusiveMinimum": 0, "default": 4.0},
        "samples": {"type": "integer", "minimum": 0, "default": 1000},
        "hutchinson_probes": {"type": "integer", "minimum": 2, "default": 1000},
        **FLOW_EVAL_OPTIONS,
    }
    metrics = ("best_val_loss", "test_loss", "test_nfe", "grid_mass", "train_wall_seconds",
               "num_parameters")
    labels = {"best_val_loss": "best val NLL (nats)", "test_loss": "test loss",
              "test_nfe": "test NFE", "grid_mass": "∫p on grid", "train_wall_seconds": "train s",
              "num_parameters": "params"}
    headlines = ("best_val_loss", "test_loss", "train_wall_seconds")

    def accepts(self, model, data) -> str | None:
        if not model.is_density:
            return "the model is not a density model"
        if data.data != "vectors" or model.data != "vectors":
            return "the data are not vectors"
        return None

    def loss(self, model, x, y, generator):
        return model.loss(x, generator)

    def score(self, model, x, y, batch_size, generator) -> dict[str, Any]:
        import torch

        xt = torch.from_numpy(x)
        device = device_of(model)
        total, squares, nfe, n_batches = 0.0, 0.0, 0, 0
        with torch.no_grad():
            for sl in batches(len(xt), batch_size):
                out, calls = counted(model, model.forward, xt[sl].to(device), generator)
                nll = -out["logp"].double()
                total += float(nll.sum())
                squares += float(nll.pow(2).sum())
                nfe += calls
                n_batches += 1
        n = len(xt)
        mean = total / n
        # standard error of the mean NLL over the split's points (the split's sampling noise)
        var = max(squares / n - mean ** 2, 0.0) * n / max(n - 1, 1)
        return {"loss": mean, "loss_se": (var / n) ** 0.5, "nfe": nfe / n_batches, "n": n}

    def evidence(self, model, data, cfg, generator, run) -> dict[str, Any]:
        import torch

        from odeflows.evidence.flows import flow_evidence

        ecfg = cfg["eval"]
        out: dict[str, Any] = gaussian_fit(data["x_train"], data["x_test"])
        x = torch.from_numpy(data["x_test"]).to(device_of(model))
        out.update(flow_evidence(model, x, ecfg, generator, run))
        if data["x_test"].shape[1] != 2:
            return out
        grid = density_grid(model, int(ecfg["grid_points"]), float(ecfg["grid_limit"]),
                            int(ecfg["batch_size"]))
        samples = model.sample(int(ecfg["samples"]), generator).numpy()
        run.save_arrays("density", samples=samples, **grid)
        out["grid_mass"] = float(grid["mass"])
        from odeflows.models import get_model

        if "divergence" in get_model(cfg["model"], "vectors").traits:  # claim 10
            from odeflows.evidence.estimators import hutchinson_check

            x = torch.from_numpy(data["x_test"][:64])
            out["hutchinson"] = hutchinson_check(model, x, int(ecfg["hutchinson_probes"]),
                                                 generator)
        return out

    def run_columns(self, evaluation: dict[str, Any]) -> dict[str, Any]:
        hut = evaluation.get("hutchinson") or {}
        return {f"hutchinson_{kind}_z": hut[kind]["z_pooled"]
                for kind in ("gaussian", "rademacher") if kind in hut}



register_task(DensityTask())
