"""Evaluate a finished run on its test split; never retrains. Writes ``eval.json`` and, for 2-D
data, arrays the figures need (``density.npz`` / ``trajectories.npz``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from odeflows import provenance
from odeflows.api import load_run
from odeflows.checks import hutchinson_check
from odeflows.data.prepared import load as load_data
from odeflows.models.cnf import ToyCNF
from odeflows.tasks import task_for


def density_grid(model: ToyCNF, points: int, limit: float, batch: int) -> dict[str, np.ndarray]:
    """log p on a points×points grid over [−limit, limit]² and the grid's total probability."""
    axis = torch.linspace(-limit, limit, points)
    xx, yy = torch.meshgrid(axis, axis, indexing="xy")
    grid = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    with torch.no_grad():
        logp = torch.cat([model.log_prob(grid[i:i + batch]) for i in range(0, len(grid), batch)])
    cell = float(axis[1] - axis[0]) ** 2
    return {"axis": axis.numpy(), "logp": logp.reshape(points, points).numpy(),
            "mass": np.array(float(logp.exp().sum()) * cell)}


def evaluate(run_dir: str | Path, data_path: str | Path) -> dict[str, Any]:
    run_dir = Path(run_dir)
    summary = provenance.read_json(run_dir / "summary.json")
    result: dict[str, Any] = {"status": summary["status"], "reason": summary.get("reason"),
                              "best_val_loss": summary.get("best_val_loss"),
                              "best_iteration": summary.get("best_iteration"),
                              "train_wall_seconds": summary.get("train_wall_seconds"),
                              "iterations": summary.get("iterations"),
                              "epochs_trained": summary.get("epochs_trained"),
                              "num_parameters": summary.get("num_parameters"),
                              "config_hash": summary.get("config_hash")}
    if summary["status"] != "completed":
        provenance.write_json_atomic(run_dir / "eval.json", result)
        return result
    run = load_run(run_dir, which="best")
    cfg, model = run.config, run.model
    torch.set_num_threads(int(cfg["train"].get("threads", 1)))
    data = load_data(data_path)
    gen = torch.Generator().manual_seed(cfg["seed"] + 20_011)
    ecfg = cfg["eval"]
    task = task_for(cfg)
    bs = int(ecfg.get("batch_size", 1000))
    test = task.score(model, data["x_test"], data.get("y_test"), bs, gen)
    result.update({f"test_{k}": v for k, v in test.items()})
    if cfg["task"] == "image_density" and math.isfinite(test["loss"]):
        # RNODE Table 2: bits/dim on clean (midpoint) and dirty (uniform noise) test images
        for mode, key in (("midpoint", "test_bpd_clean"), ("uniform", "test_bpd_dequantized")):
            same = mode == test["dequantization"]
            result[key] = test["bpd"] if same else task.score(
                model, data["x_test"], None, bs, gen, dequantization=mode)["bpd"]
    if not math.isfinite(test["loss"]):
        result.update(status="failed", reason="non-finite test loss")

    completed = result["status"] == "completed"
    if cfg["task"] == "density" and data["x_test"].shape[1] == 2 and completed:
        grid = density_grid(model, int(ecfg.get("grid_points", 100)),
                            float(ecfg.get("grid_limit", 4.0)), int(ecfg.get("batch_size", 1000)))
        samples = model.sample(int(ecfg.get("samples", 1000)), gen).numpy()
        np.savez(run_dir / "density.npz", samples=samples, **grid)
        result["grid_mass"] = float(grid["mass"])
        x = torch.from_numpy(data["x_test"][:64])
        result["hutchinson"] = hutchinson_check(model, x, int(ecfg.get("hutchinson_probes", 1000)),
                                                gen)
    if cfg["task"] == "image_density" and completed and int(ecfg.get("samples", 0)):
        # reverse integration from the base (FFJORD/AFFJORD Fig. 7-8, RNODE samples)
        with torch.no_grad():
            imgs = model.sample(int(ecfg["samples"]), gen).clamp(0, 1)
        np.savez(run_dir / "samples.npz", images=(imgs.numpy() * 255).round().astype(np.uint8),
                 data=data["x_test"][: int(ecfg["samples"])])
    if cfg["task"] == "regression" and result["status"] == "completed":
        times = torch.linspace(0.0, 1.0, int(ecfg.get("trajectory_points", 21)))
        x = torch.from_numpy(data["x_test"][:200])
        with torch.no_grad():
            if hasattr(model, "trajectory"):
                traj = model.trajectory(x, times).numpy()
            else:  # ResNet: hidden state after each block
                states, h = [x], x
                for block in model.blocks:
                    h = h + block(h)
                    states.append(h)
                traj, times = torch.stack(states).numpy(), torch.arange(len(states)).float()
            np.savez(run_dir / "trajectories.npz", times=times.numpy(), states=traj,
                     x=x.numpy(), y=data["y_test"][:200],
                     output=model(x).numpy())
    provenance.write_json_atomic(run_dir / "eval.json", result)
    return result
