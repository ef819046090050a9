"""The training loop: one readable loop shared by every model.

A run directory holds ``config.json`` (resolved config), ``record.json`` (provenance),
``metrics.csv`` (one row per iteration), ``checkpoint.pt`` (rolling, atomic; removed when the run
completes), ``model.pt`` (final and best-validation weights) and ``summary.json`` (status, best
validation score, reason of failure). A run killed at any point resumes from its last checkpoint
and ends with the same numbers as an uninterrupted run: model, optimiser, RNG streams, the current
epoch's batch order and the best-so-far state are all in the checkpoint, and metric rows written
after it are dropped on resume.
"""

from __future__ import annotations

import csv
import math
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from odeflows import provenance
from odeflows.config import config_hash
from odeflows.data.prepared import load as load_data
from odeflows.data.prepared import load_meta
from odeflows.models import build_model, num_parameters
from odeflows.ode import SolverFailure, count_nfe, reset_nfe
from odeflows.tasks import make_task

METRIC_FIELDS = ["iteration", "epoch", "loss", "nll", "kinetic", "jacobian", "nfe_forward",
                 "nfe_backward", "step_time", "val_loss", "val_accuracy", "val_nfe", "end_time"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _save_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _truncate_metrics(path: Path, last_iteration: int) -> None:
    """Keep only rows up to the checkpoint's iteration (later rows will be recomputed)."""
    if not path.exists():
        return
    with open(path, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if int(r["iteration"]) <= last_iteration]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, METRIC_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def total_iterations(train_cfg: dict[str, Any], n_train: int) -> tuple[int, int]:
    """(iterations, batches per epoch); ``epochs`` is converted with drop-last=False batching."""
    per_epoch = max(1, math.ceil(n_train / train_cfg["batch_size"]))
    if "iterations" in train_cfg:
        return int(train_cfg["iterations"]), per_epoch
    return int(train_cfg.get("epochs", 1)) * per_epoch, per_epoch


def train(cfg: dict[str, Any], data_path: str | Path, run_dir: str | Path,
          progress: bool = True) -> dict[str, Any]:
    """Train (or resume) the run described by ``cfg``; returns its summary."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    tcfg = cfg["train"]
    torch.set_num_threads(int(tcfg.get("threads", 1)))
    chash = config_hash(cfg)
    provenance.write_json_atomic(run_dir / "config.json", cfg)

    seed_everything(cfg["seed"])
    data = load_data(data_path)
    x_train = torch.from_numpy(data["x_train"])
    y_train = torch.from_numpy(data["y_train"]) if "y_train" in data else None
    out_dim = y_train.shape[1] if y_train is not None else 1
    task = make_task(cfg["task"])
    model = build_model(cfg, x_train.shape[1], out_dim)
    optimizer = torch.optim.Adam(model.parameters(), lr=tcfg["lr"],
                                 weight_decay=tcfg.get("weight_decay", 0.0))
    gen = torch.Generator().manual_seed(cfg["seed"] + 10_007)  # batches and probes
    iterations, per_epoch = total_iterations(tcfg, len(x_train))
    val_every = int(tcfg.get("val_every", per_epoch))
    ckpt_every = int(tcfg.get("checkpoint_every", max(1, iterations // 10)))
    eval_bs = int(cfg["eval"].get("batch_size", 1000))

    ckpt_path, metrics_path = run_dir / "checkpoint.pt", run_dir / "metrics.csv"
    state = {"iteration": 0, "best_val": math.inf, "best_iteration": None, "best_state": None,
             "perm": None, "wall": 0.0}
    resumed_from = None
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, weights_only=False)
        if ckpt.get("config_hash") == chash:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            gen.set_state(ckpt["generator"])
            torch.set_rng_state(ckpt["torch_rng"])
            state = ckpt["state"]
            resumed_from = state["iteration"]
            _truncate_metrics(metrics_path, resumed_from)
    if resumed_from is None and metrics_path.exists():
        metrics_path.unlink()

    record = {
        "run_dir": str(run_dir),
        "experiment": cfg["experiment"], "dataset": cfg["dataset"], "model": cfg["model"],
        "seed": cfg["seed"], "scale": cfg["scale"],
        "config_hash": chash,
        "git": provenance.git_state(),
        "data": {"path": str(data_path), **load_meta(data_path)},
        "packages": provenance.package_versions(),
        "host": provenance.host_info(),
        "num_parameters": num_parameters(model),
        "resumed_from_iteration": resumed_from,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    provenance.write_json_atomic(run_dir / "record.json", record)

    new_file = not metrics_path.exists()
    log = open(metrics_path, "a", newline="")
    writer = csv.DictWriter(log, METRIC_FIELDS)
    if new_file:
        writer.writeheader()

    def checkpoint() -> None:
        _save_atomic({
            "config_hash": chash, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "generator": gen.get_state(), "torch_rng": torch.get_rng_state(), "state": state,
        }, ckpt_path)

    fault_at = int(os.environ.get("ODEFLOWS_FAULT_AT_ITER", "0"))
    status, reason = "completed", None
    bar = tqdm(total=iterations, initial=state["iteration"], disable=not progress,
               desc=f"{cfg['model']}/{cfg['dataset']}/seed{cfg['seed']}", mininterval=2.0)
    try:
        while state["iteration"] < iterations:
            it = state["iteration"]
            pos = it % per_epoch
            if pos == 0 or state["perm"] is None:
                state["perm"] = torch.randperm(len(x_train), generator=gen)
            idx = state["perm"][pos * tcfg["batch_size"]:(pos + 1) * tcfg["batch_size"]]
            xb = x_train[idx]
            yb = y_train[idx] if y_train is not None else None

            model.train()
            t0 = time.perf_counter()
            reset_nfe(model)
            optimizer.zero_grad(set_to_none=True)
            loss, stats = task.loss(model, xb, yb, gen)
            nfe_f = count_nfe(model)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss {float(loss)} at iteration {it + 1}")
            loss.backward()
            nfe_b = count_nfe(model) - nfe_f
            optimizer.step()
            step_time = time.perf_counter() - t0
            state["wall"] += step_time
            state["iteration"] = it = it + 1

            loss_value = loss.item()
            row = {"iteration": it, "epoch": (it - 1) // per_epoch, "loss": loss_value,
                   "nfe_forward": nfe_f, "nfe_backward": nfe_b,
                   "step_time": round(step_time, 6), **stats}
            if hasattr(model, "end_time"):
                row["end_time"] = float(model.end_time)
            if it % val_every == 0 or it == iterations:
                model.eval()
                val = task.score(model, data["x_val"], data.get("y_val"), eval_bs, gen)
                row.update(val_loss=val["loss"], val_nfe=val.get("nfe"),
                           val_accuracy=val.get("accuracy"))
                if not math.isfinite(val["loss"]):
                    raise FloatingPointError(f"non-finite validation loss at iteration {it}")
                if val["loss"] < state["best_val"]:
                    state.update(best_val=val["loss"], best_iteration=it,
                                 best_state={k: v.clone() for k, v in model.state_dict().items()})
            writer.writerow(row)
            log.flush()
            if it % ckpt_every == 0 and it < iterations:
                checkpoint()
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}", nfe=nfe_f + nfe_b, refresh=False)
            if fault_at and it == fault_at:  # test hook: a real kill -9, nothing is flushed
                os.kill(os.getpid(), signal.SIGKILL)
    except (FloatingPointError, SolverFailure) as err:
        status, reason = "failed", f"{type(err).__name__}: {err}"
    finally:
        bar.close()
        log.close()

    summary = {
        "status": status, "reason": reason, "iterations": state["iteration"],
        "iterations_planned": iterations, "best_val_loss": state["best_val"]
        if math.isfinite(state["best_val"]) else None,
        "best_iteration": state["best_iteration"], "train_wall_seconds": state["wall"],
        "config_hash": chash, "num_parameters": num_parameters(model),
        "resumed_from_iteration": resumed_from,
    }
    _save_atomic({"config": cfg, "config_hash": chash, "status": status,
                  "final_state": model.state_dict(), "best_state": state["best_state"],
                  "dim": x_train.shape[1], "out_dim": out_dim}, run_dir / "model.pt")
    provenance.write_json_atomic(run_dir / "summary.json", summary)
    ckpt_path.unlink(missing_ok=True)
    return summary
