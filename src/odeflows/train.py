"""The training loop: one readable loop shared by every model.

A run directory holds ``config.json`` (resolved config), ``record.json`` (provenance),
``metrics.csv`` (one row per iteration), ``checkpoint.pt`` (rolling, atomic; removed when the run
completes), ``model.pt`` (final and best-validation weights) and ``summary.json`` (status, best
validation score, reason of failure). A run killed at any point resumes from its last checkpoint
and ends with the same numbers as an uninterrupted run: model, optimiser, RNG streams, the current
epoch's batch order and the best-so-far state are all in the checkpoint, and metric rows written
after it are dropped on resume.

The same loop trains on CUDA when present (``train.device: auto``) and on several GPUs when
launched by ``torchrun`` (WORLD_SIZE > 1): DistributedDataParallel, ``batch_size`` per process
(RNODE's ImageNet64 / CelebA-HQ runs: 50 / 3 per GPU × 4 GPUs), every process takes its slice of
one shared batch order, validation is sharded and all-reduced, and only rank 0 writes files.
``train_wall_seconds`` is RNODE's training time: the sum of step times (batch fetch, evaluation and
checkpointing excluded).
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
import torch.distributed as dist
from tqdm import tqdm

from odeflows import provenance
from odeflows.config import config_hash
from odeflows.data.prepared import load as load_data
from odeflows.data.prepared import load_meta
from odeflows.models import build_model, num_parameters
from odeflows.ode import SolverFailure, count_nfe, reset_nfe
from odeflows.tasks import task_for

METRIC_FIELDS = ["iteration", "epoch", "loss", "nll", "bpd", "accuracy", "kinetic", "jacobian",
                 "nfe_forward", "nfe_backward", "step_time", "lr", "grad_norm", "val_loss",
                 "val_accuracy", "val_nfe", "end_time"]


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


def total_iterations(train_cfg: dict[str, Any], n_train: int, world: int = 1) -> tuple[int, int]:
    """(iterations, batches per epoch); ``epochs`` is converted with drop-last=False batching of
    the global batch (``batch_size`` per process × processes)."""
    per_epoch = max(1, math.ceil(n_train / (train_cfg["batch_size"] * world)))
    if train_cfg.get("iterations"):
        return int(train_cfg["iterations"]), per_epoch
    return int(train_cfg.get("epochs", 1)) * per_epoch, per_epoch


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto``: the process's CUDA device when one is present, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("train.device is 'cuda' but no CUDA device is available")
        return torch.device("cuda", local_rank)
    return torch.device(name)


def _distributed() -> tuple[int, int, int]:
    """(world size, rank, local rank) from torchrun's environment; (1, 0, 0) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))


def _reduce_scores(val: dict[str, Any], world: int, device: torch.device) -> dict[str, Any]:
    """Combine per-process validation scores on shards into the score of the whole split."""
    if world == 1:
        return val
    n = float(val.get("n", 0))
    keys = [k for k in ("loss", "accuracy", "nfe") if isinstance(val.get(k), (int, float))]
    buf = torch.tensor([n] + [float(val[k]) * n for k in keys], dtype=torch.float64,
                       device=device)
    dist.all_reduce(buf)
    total = max(float(buf[0]), 1.0)
    means = {k: float(v) / total for k, v in zip(keys, buf[1:], strict=True)}
    return {**val, "n": int(buf[0]), **means}


def _lr_at(tcfg: dict[str, Any], iteration: int) -> float:
    """FFJORD/RNODE/AFFJORD linear warm-up: lr·min((itr + 1)/warmup, 1)."""
    warmup = int(tcfg.get("warmup_iters", 0))
    return tcfg["lr"] * (min((iteration + 1) / warmup, 1.0) if warmup else 1.0)


def train(cfg: dict[str, Any], data_path: str | Path, run_dir: str | Path,
          progress: bool = True) -> dict[str, Any]:
    """Train (or resume) the run described by ``cfg``; returns its summary."""
    run_dir = Path(run_dir)
    world, rank, local_rank = _distributed()
    main = rank == 0
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
    tcfg = cfg["train"]
    torch.set_num_threads(int(tcfg.get("threads", 1)))
    device = resolve_device(tcfg.get("device", "auto"), local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    chash = config_hash(cfg)
    if main:
        provenance.write_json_atomic(run_dir / "config.json", cfg)

    seed_everything(cfg["seed"])
    data = load_data(data_path)
    meta = load_meta(data_path)
    x_train = torch.from_numpy(data["x_train"])
    y_train = torch.from_numpy(data["y_train"]) if "y_train" in data else None
    task = task_for(cfg)
    shape = tuple(x_train.shape[1:])
    out_dim = _output_dim(cfg, meta, y_train)
    model = build_model(cfg, shape, out_dim).to(device)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.Adam(model.parameters(), lr=tcfg["lr"],
                                 weight_decay=tcfg.get("weight_decay", 0.0))
    gen = torch.Generator().manual_seed(cfg["seed"] + 10_007)  # batches and probes
    # every process shares the batch order (gen); dequantisation noise and probes differ per rank
    noise_gen = gen if world == 1 else torch.Generator().manual_seed(
        cfg["seed"] + 10_007 + 7_919 * rank)
    iterations, per_epoch = total_iterations(tcfg, len(x_train), world)
    val_every = int(tcfg.get("val_every") or per_epoch)
    ckpt_every = int(tcfg.get("checkpoint_every", max(1, iterations // 10)))
    eval_bs = int(cfg["eval"].get("batch_size", 1000))
    max_grad_norm = tcfg.get("max_grad_norm")
    bs = int(tcfg["batch_size"])
    x_val = data["x_val"][rank::world] if world > 1 else data["x_val"]
    y_val = data.get("y_val")
    if y_val is not None and world > 1:
        y_val = y_val[rank::world]

    ckpt_path, metrics_path = run_dir / "checkpoint.pt", run_dir / "metrics.csv"
    state = {"iteration": 0, "best_val": math.inf, "best_iteration": None, "best_state": None,
             "perm": None, "wall": 0.0}
    resumed_from = None
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, weights_only=False, map_location=device)
        if ckpt.get("config_hash") == chash:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            gen.set_state(ckpt["generator"])
            torch.set_rng_state(ckpt["torch_rng"])
            state = ckpt["state"]
            resumed_from = state["iteration"]
            if noise_gen is not gen:  # rank-local streams restart from (seed, rank, iteration)
                noise_gen.manual_seed(cfg["seed"] + 10_007 + 7_919 * rank + resumed_from)
            if main:
                _truncate_metrics(metrics_path, resumed_from)
    if main and resumed_from is None and metrics_path.exists():
        metrics_path.unlink()

    record = {
        "run_dir": str(run_dir),
        "experiment": cfg["experiment"], "dataset": cfg["dataset"], "model": cfg["model"],
        "seed": cfg["seed"], "scale": cfg["scale"],
        "config_hash": chash,
        "git": provenance.git_state(),
        "data": {"path": str(data_path), **meta},
        "packages": provenance.package_versions(),
        "host": provenance.host_info(),
        "num_parameters": num_parameters(model),
        "resumed_from_iteration": resumed_from,
        "device": str(device), "world_size": world,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if device.type == "cuda":
        record["device_name"] = torch.cuda.get_device_name(device)
    if main:
        provenance.write_json_atomic(run_dir / "record.json", record)

    new_file = not metrics_path.exists()
    log = open(metrics_path if main else os.devnull, "a", newline="")
    writer = csv.DictWriter(log, METRIC_FIELDS)
    if new_file and main:
        writer.writeheader()

    def checkpoint() -> None:
        if not main:
            return
        _save_atomic({
            "config_hash": chash, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "generator": gen.get_state(), "torch_rng": torch.get_rng_state(), "state": state,
        }, ckpt_path)

    fault_at = int(os.environ.get("ODEFLOWS_FAULT_AT_ITER", "0"))
    status, reason = "completed", None
    bar = tqdm(total=iterations, initial=state["iteration"], disable=not (progress and main),
               desc=f"{cfg['model']}/{cfg['dataset']}/seed{cfg['seed']}", mininterval=2.0)
    try:
        while state["iteration"] < iterations:
            it = state["iteration"]
            pos = it % per_epoch
            if pos == 0 or state["perm"] is None:
                state["perm"] = torch.randperm(len(x_train), generator=gen)
            start = (pos * world + rank) * bs
            idx = state["perm"][start:start + bs]
            xb = x_train[idx]
            yb = y_train[idx] if y_train is not None else None
            if xb.dtype != torch.uint8:  # images stay uint8 until the task dequantises them
                xb = xb.to(device)
                yb = yb.to(device) if yb is not None else None

            model.train()
            lr = _lr_at(tcfg, it)
            for group in optimizer.param_groups:
                group["lr"] = lr
            _sync(device)
            t0 = time.perf_counter()
            reset_nfe(model)
            optimizer.zero_grad(set_to_none=True)
            loss, stats = task.loss(net, xb, yb, noise_gen)
            nfe_f = count_nfe(model)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss {float(loss)} at iteration {it + 1}")
            loss.backward()
            nfe_b = count_nfe(model) - nfe_f
            grad_norm = None
            if max_grad_norm is not None:
                grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(),
                                                                 float(max_grad_norm)))
            optimizer.step()
            _sync(device)
            step_time = time.perf_counter() - t0
            state["wall"] += step_time
            state["iteration"] = it = it + 1

            loss_value = loss.item()
            row = {"iteration": it, "epoch": (it - 1) // per_epoch, "loss": loss_value,
                   "nfe_forward": nfe_f, "nfe_backward": nfe_b,
                   "step_time": round(step_time, 6), "lr": lr, "grad_norm": grad_norm, **stats}
            if hasattr(model, "end_time"):
                row["end_time"] = float(model.end_time)
            if it % val_every == 0 or it == iterations:
                model.eval()
                val = _reduce_scores(task.score(model, x_val, y_val, eval_bs, noise_gen), world,
                                     device)
                row.update(val_loss=val["loss"], val_nfe=val.get("nfe"),
                           val_accuracy=val.get("accuracy"))
                if not math.isfinite(val["loss"]):
                    raise FloatingPointError(f"non-finite validation loss at iteration {it}")
                if val["loss"] < state["best_val"]:
                    state.update(best_val=val["loss"], best_iteration=it,
                                 best_state={k: v.detach().to("cpu", copy=True)
                                             for k, v in model.state_dict().items()})
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
        "epochs_trained": round(state["iteration"] / per_epoch, 3),
        "config_hash": chash, "num_parameters": num_parameters(model),
        "resumed_from_iteration": resumed_from, "device": str(device), "world_size": world,
    }
    if main:
        _save_atomic({"config": cfg, "config_hash": chash, "status": status,
                      "final_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                      "best_state": state["best_state"], "shape": list(shape),
                      "dim": int(np.prod(shape)), "out_dim": out_dim}, run_dir / "model.pt")
        provenance.write_json_atomic(run_dir / "summary.json", summary)
        ckpt_path.unlink(missing_ok=True)
    if world > 1:
        dist.barrier()
    return summary


def _sync(device: torch.device) -> None:
    """Step times must include queued GPU work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _output_dim(cfg: dict[str, Any], meta: dict[str, Any], y: torch.Tensor | None) -> int:
    if cfg["task"] == "classification":
        if meta.get("classes"):
            return int(meta["classes"])
        if y is None:
            raise ValueError("a classification dataset needs labels (y_train)")
        return int(y.max()) + 1
    return y.shape[1] if y is not None and y.dim() > 1 else 1
