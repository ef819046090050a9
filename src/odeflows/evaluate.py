"""Evaluate a finished run on its test split; never retrains. Writes ``eval.json``: the test
scores of the best-validation weights and whatever evidence the run's task records (density
grids, Hutchinson checks, samples, trajectories — arrays go next to it in the run directory) and
the facts its dataset's generator knows in closed form (``data_<name>``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from odeflows import plugins, versions
from odeflows.data.prepared import load as load_data
from odeflows.data.prepared import load_meta
from odeflows.models import build_model
from odeflows.rundir import RunDir
from odeflows.tasks import task_for

__all__ = ["best_model", "evaluate"]

# copied from summary.json, so eval.json alone holds everything a table row needs
SUMMARY_KEYS = ("best_val_loss", "best_iteration", "train_wall_seconds", "iterations",
                "epochs_trained", "num_parameters", "config_hash")


def best_model(rd: RunDir) -> tuple[dict[str, Any], torch.nn.Module]:
    """A completed run's config and its best-validation weights (the papers' protocol), in eval
    mode on the CPU."""
    blob = rd.load_weights()
    if blob.get("status") != "completed":
        raise RuntimeError(f"run {rd.path} did not complete (status {blob.get('status')!r})")
    cfg = blob["config"]
    # a user's model is registered by its plugin module, which the weights cannot bring
    plugins.load(cfg.get("modules", []))
    model = build_model(cfg, blob.get("shape") or blob["dim"], blob["out_dim"])
    model.load_state_dict(blob.get("best_state") or blob["final_state"])
    return cfg, model.to("cpu").eval()


def evaluate(run_dir: str | Path, data_path: str | Path) -> dict[str, Any]:
    rd = RunDir(run_dir)
    summary = rd.summary()
    if summary is None:
        raise FileNotFoundError(f"{rd.file('summary.json')} is missing: train the run first")
    result: dict[str, Any] = {"status": summary["status"], "reason": summary.get("reason"),
                              **{k: summary.get(k) for k in SUMMARY_KEYS}}
    if summary["status"] != "completed":
        rd.write_evaluation(result)
        return result
    cfg, model = best_model(rd)
    result["code_version"] = versions.code_version("evaluate", cfg)["version"]
    torch.set_num_threads(int(cfg["train"].get("threads", 1)))
    data = load_data(data_path)
    gen = torch.Generator().manual_seed(cfg["seed"] + 20_011)
    task = task_for(cfg)
    result.update(task.test_scores(model, data, cfg, gen))
    if math.isfinite(result["test_loss"]):
        result.update(task.evidence(model, data, cfg, gen, rd))
        # what the dataset's generator knows in closed form (e.g. the true entropy), beside the
        # model's scores so that claims can compare them
        result.update({f"data_{k}": v
                       for k, v in (load_meta(data_path).get("facts") or {}).items()})
    else:
        result.update(status="failed", reason="non-finite test loss")
    rd.write_evaluation(result)
    return result
