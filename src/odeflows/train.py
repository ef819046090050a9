"""The training loop: one readable loop shared by every model (:func:`train`).

A run killed at any point resumes from its last checkpoint and ends with the same numbers as an
uninterrupted run: model, optimiser, RNG streams, the current epoch's batch order and the
best-so-far state are all in the checkpoint, and metric rows written after it are dropped on
resume. The same loop trains on CUDA when present (``train.device: auto``) and on several GPUs
when launched by ``torchrun`` (WORLD_SIZE > 1): DistributedDataParallel, ``batch_size`` per
process, every process takes its slice of one shared batch order, validation is sharded and
all-reduced, and only rank 0 writes files. ``train_wall_seconds`` is RNODE's training time: the
sum of step times (batch fetch, validation and checkpointing excluded).
"""

from __future__ import annotations

import math
import os
import random
import signal
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from odeflows import provenance, versions
from odeflows.data.prepared import load as load_data
from odeflows.data.prepared import load_meta
from odeflows.models import build_model, get_model, num_parameters
from odeflows.ode import SolverFailure, count_nfe, reset_nfe
from odeflows.provenance import config_hash
from odeflows.rundir import RunDir
from odeflows.tasks import Task, task_for

__all__ = ["Data", "Process", "Schedule", "State", "Streams", "checkpoint", "finish",
           "fit_closed_form", "resolve_device", "resume", "run_record", "seed_everything", "step",
           "total_iterations", "train", "validate"]

METRIC_FIELDS = ["iteration", "epoch", "loss", "nll", "bpd", "accuracy", "kinetic", "jacobian",
                 "nfe_forward", "nfe_backward", "step_time", "lr", "grad_norm", "val_loss",
                 "val_accuracy", "val_nfe", "end_time"]


def train(cfg: dict[str, Any], data_path: str | Path, run_dir: str | Path,
          progress: bool = True) -> dict[str, Any]:
    """Train (or resume) the run described by ``cfg``; returns its summary."""
    run, proc = RunDir(run_dir), Process.start(cfg)
    seed_everything(cfg["seed"])
    data = Data.load(data_path, proc)
    task = task_for(cfg)
    out_dim = task.output_dim(data.meta, data.y_train)
    model = build_model(cfg, data.shape, out_dim).to(proc.device)
    fit = get_model(cfg["model"], cfg["data"]["kind"]).fit  # a closed-form model: no optimiser
    net = model if fit else proc.wrap(model)
    optimizer = None if fit else torch.optim.Adam(model.parameters(), lr=cfg["train"]["lr"],
                                                  weight_decay=cfg["train"]["weight_decay"])
    plan = Schedule.of(cfg, len(data.x_train), proc.world, closed_form=fit is not None)
    streams = Streams(cfg["seed"], proc.rank)
    state = State()
    resumed_from = resume(run, cfg, model, optimizer, streams, state, proc)
    if proc.main:
        run.path.mkdir(parents=True, exist_ok=True)
        run.write_config(cfg)
        run.write_record(run_record(cfg, data_path, model, proc, resumed_from, run.path))

    status, reason = "completed", None
    bar = tqdm(total=plan.iterations, initial=state.iteration, mininterval=2.0,
               disable=not (progress and proc.main),
               desc=f"{cfg['model']}/{cfg['dataset']}/seed{cfg['seed']}")
    with run.metrics_log(METRIC_FIELDS, resumed_from, enabled=proc.main) as log:
        try:
            if fit is not None:
                log.write(fit_closed_form(fit, model, task, data, cfg, streams.noise, state,
                                          proc))
            while state.iteration < plan.iterations:
                xb, yb = data.batch(state, plan, streams.order, proc)
                row = step(net, model, task, optimizer, xb, yb, streams.noise, state, plan, proc)
                it = state.iteration
                if plan.validates_at(it):
                    row.update(validate(model, task, data, cfg, streams.noise, state, proc))
                log.write(row)
                if plan.checkpoints_at(it) and proc.main:
                    run.save_checkpoint(checkpoint(cfg, model, optimizer, streams, state))
                bar.update(1)
                bar.set_postfix(loss=f"{row['loss']:.4f}",
                                nfe=row["nfe_forward"] + row["nfe_backward"], refresh=False)
                if plan.fault_at == it:  # test hook: a real kill -9, nothing is flushed
                    os.kill(os.getpid(), signal.SIGKILL)
        except (FloatingPointError, SolverFailure) as err:
            status, reason = "failed", f"{type(err).__name__}: {err}"
        finally:
            bar.close()
    summary = finish(run, cfg, model, data.shape, out_dim, state, plan, proc, status, reason,
                     resumed_from)
    proc.barrier()
    return summary


# -- one iteration -----------------------------------------------------------------------------
def step(net: torch.nn.Module, model: torch.nn.Module, task: Task,
         optimizer: torch.optim.Optimizer, xb: torch.Tensor, yb: torch.Tensor | None,
         noise: torch.Generator, state: State, plan: Schedule, proc: Process) -> dict[str, Any]:
    """One optimiser step; returns its metrics row."""
    it = state.iteration
    model.train()
    lr = plan.lr_at(it)
    for group in optimizer.param_groups:
        group["lr"] = lr
    proc.sync()
    t0 = time.perf_counter()
    reset_nfe(model)
    optimizer.zero_grad(set_to_none=True)
    loss, stats = task.loss(net, xb, yb, noise)
    nfe_f = count_nfe(model)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite loss {float(loss)} at iteration {it + 1}")
    loss.backward()
    nfe_b = count_nfe(model) - nfe_f
    grad_norm = None
    if plan.max_grad_norm is not None:
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), plan.max_grad_norm))
    optimizer.step()
    proc.sync()
    step_time = time.perf_counter() - t0
    state.wall += step_time
    state.iteration = it + 1
    row = {"iteration": it + 1, "epoch": it // plan.per_epoch, "loss": loss.item(),
           "nfe_forward": nfe_f, "nfe_backward": nfe_b, "step_time": round(step_time, 6),
           "lr": lr, "grad_norm": grad_norm, **stats}
    if hasattr(model, "end_time"):
        row["end_time"] = float(model.end_time)
    return row


def fit_closed_form(fit: Any, model: torch.nn.Module, task: Task, data: Data,
                    cfg: dict[str, Any], noise: torch.Generator, state: State, proc: Process
                    ) -> dict[str, Any]:
    """A model its entry fits in closed form (a baseline): fit once, score validation once."""
    t0 = time.perf_counter()
    fit(model, data.x_train)
    state.wall += time.perf_counter() - t0
    return {"iteration": 0, "epoch": 0, "loss": float("nan"), "nfe_forward": 0,
            "nfe_backward": 0, "step_time": round(state.wall, 6),
            **validate(model, task, data, cfg, noise, state, proc)}


def validate(model: torch.nn.Module, task: Task, data: Data, cfg: dict[str, Any],
             noise: torch.Generator, state: State, proc: Process) -> dict[str, Any]:
    """Score the validation split; keep the best weights (the papers' protocol)."""
    model.eval()
    val = proc.reduce(task.score(model, data.x_val, data.y_val, int(cfg["eval"]["batch_size"]),
                                 noise))
    if not math.isfinite(val["loss"]):
        raise FloatingPointError(f"non-finite validation loss at iteration {state.iteration}")
    if val["loss"] < state.best_val:
        state.best_val, state.best_iteration = val["loss"], state.iteration
        state.best_state = {k: v.detach().to("cpu", copy=True)
                            for k, v in model.state_dict().items()}
    return {"val_loss": val["loss"], "val_nfe": val.get("nfe"),
            "val_accuracy": val.get("accuracy")}


# -- state, schedule, data, processes -------------------------------------------------------------
@dataclass
class State:
    """What a checkpoint restores besides weights and RNG streams."""

    iteration: int = 0
    best_val: float = math.inf
    best_iteration: int | None = None
    best_state: dict[str, torch.Tensor] | None = None
    perm: torch.Tensor | None = None  # the current epoch's batch order
    wall: float = 0.0


@dataclass(frozen=True)
class Schedule:
    batch_size: int  # per process
    iterations: int
    per_epoch: int
    val_every: int
    checkpoint_every: int
    lr: float
    warmup: int
    max_grad_norm: float | None
    fault_at: int | None

    @classmethod
    def of(cls, cfg: dict[str, Any], n_train: int, world: int = 1,
           closed_form: bool = False) -> Schedule:
        tcfg = cfg["train"]
        iterations, per_epoch = total_iterations(tcfg, n_train, world)
        if closed_form:
            iterations = 0
        fault = int(os.environ.get("ODEFLOWS_FAULT_AT_ITER", "0")) or None
        return cls(int(tcfg["batch_size"]), iterations, per_epoch,
                   int(tcfg.get("val_every") or per_epoch),
                   int(tcfg.get("checkpoint_every") or max(1, iterations // 10)),
                   float(tcfg["lr"]), int(tcfg.get("warmup_iters") or 0),
                   None if tcfg.get("max_grad_norm") is None else float(tcfg["max_grad_norm"]),
                   fault)

    def lr_at(self, iteration: int) -> float:
        """FFJORD/RNODE/AFFJORD linear warm-up: lr·min((itr + 1)/warmup, 1)."""
        return self.lr * (min((iteration + 1) / self.warmup, 1.0) if self.warmup else 1.0)

    def validates_at(self, it: int) -> bool:
        return it % self.val_every == 0 or it == self.iterations

    def checkpoints_at(self, it: int) -> bool:
        return it % self.checkpoint_every == 0 and it < self.iterations


def total_iterations(train_cfg: dict[str, Any], n_train: int, world: int = 1) -> tuple[int, int]:
    """(iterations, batches per epoch); ``epochs`` is converted with drop-last=False batching of
    the global batch (``batch_size`` per process × processes)."""
    per_epoch = max(1, math.ceil(n_train / (train_cfg["batch_size"] * world)))
    if train_cfg.get("iterations"):
        return int(train_cfg["iterations"]), per_epoch
    return int(train_cfg.get("epochs") or 1) * per_epoch, per_epoch


class Streams:
    """Random streams: ``order`` draws batch orders (shared by every process) and probes;
    ``noise`` dequantisation noise and probes (per process under DDP)."""

    def __init__(self, seed: int, rank: int = 0):
        self.seed, self.rank = seed, rank
        self.order = torch.Generator().manual_seed(seed + 10_007)
        self.noise = self.order if rank == 0 else torch.Generator().manual_seed(
            seed + 10_007 + 7_919 * rank)

    def restart_noise(self, iteration: int) -> None:
        """Rank-local streams restart from (seed, rank, iteration) after a resume."""
        if self.noise is not self.order:
            self.noise.manual_seed(self.seed + 10_007 + 7_919 * self.rank + iteration)


@dataclass
class Data:
    x_train: torch.Tensor
    y_train: torch.Tensor | None
    x_val: np.ndarray
    y_val: np.ndarray | None
    meta: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path, proc: Process) -> Data:
        arrays = load_data(path)
        shard = slice(proc.rank, None, proc.world)  # validation is sharded across processes
        y_val = arrays.get("y_val")
        return cls(torch.from_numpy(arrays["x_train"]),
                   torch.from_numpy(arrays["y_train"]) if "y_train" in arrays else None,
                   arrays["x_val"][shard], None if y_val is None else y_val[shard],
                   load_meta(path))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def batch(self, state: State, plan: Schedule, order: torch.Generator, proc: Process
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
        pos = state.iteration % plan.per_epoch
        if pos == 0 or state.perm is None:
            state.perm = torch.randperm(len(self.x_train), generator=order)
        start = (pos * proc.world + proc.rank) * plan.batch_size
        idx = state.perm[start:start + plan.batch_size]
        xb = self.x_train[idx]
        yb = self.y_train[idx] if self.y_train is not None else None
        if xb.dtype != torch.uint8:  # images stay uint8 until the task dequantises them
            xb = xb.to(proc.device)
            yb = yb.to(proc.device) if yb is not None else None
        return xb, yb


@dataclass
class Process:
    """This process's place in a (possibly distributed) run and its device."""

    world: int
    rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def start(cls, cfg: dict[str, Any]) -> Process:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
        torch.set_num_threads(int(cfg["train"].get("threads", 1)))
        device = resolve_device(cfg["train"].get("device", "auto"), local)
        if world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(world, rank, device)

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        if self.world == 1:
            return model
        return torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def sync(self) -> None:
        """Step times must include queued GPU work."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def reduce(self, val: dict[str, Any]) -> dict[str, Any]:
        """Combine per-process validation scores on shards into the score of the whole split."""
        if self.world == 1:
            return val
        n = float(val.get("n", 0))
        keys = [k for k in ("loss", "accuracy", "nfe") if isinstance(val.get(k), (int, float))]
        buf = torch.tensor([n] + [float(val[k]) * n for k in keys], dtype=torch.float64,
                           device=self.device)
        dist.all_reduce(buf)
        total = max(float(buf[0]), 1.0)
        means = {k: float(v) / total for k, v in zip(keys, buf[1:], strict=True)}
        return {**val, "n": int(buf[0]), **means}

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto``: the process's CUDA device when one is present, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("train.device is 'cuda' but no CUDA device is available")
        return torch.device("cuda", local_rank)
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# -- checkpoints, records, the end of a run ------------------------------------------------------
def checkpoint(cfg: dict[str, Any], model: torch.nn.Module,
               optimizer: torch.optim.Optimizer | None, streams: Streams, state: State
               ) -> dict[str, Any]:
    return {"config_hash": config_hash(cfg), "model": model.state_dict(),
            "optimizer": optimizer.state_dict() if optimizer else None,
            "generator": streams.order.get_state(),
            "torch_rng": torch.get_rng_state(),
            "state": {f.name: getattr(state, f.name) for f in fields(state)}}


def resume(run: RunDir, cfg: dict[str, Any], model: torch.nn.Module,
           optimizer: torch.optim.Optimizer | None, streams: Streams, state: State,
           proc: Process) -> int | None:
    """Restore a checkpoint of the same configuration; returns its iteration (None: fresh)."""
    ckpt = run.load_checkpoint(map_location=proc.device)
    if ckpt is None or ckpt.get("config_hash") != config_hash(cfg):
        return None
    model.load_state_dict(ckpt["model"])
    if optimizer is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
    streams.order.set_state(ckpt["generator"])
    torch.set_rng_state(ckpt["torch_rng"])
    for key, value in ckpt["state"].items():
        setattr(state, key, value)
    streams.restart_noise(state.iteration)
    return state.iteration


def run_record(cfg: dict[str, Any], data_path: str | Path, model: torch.nn.Module | None = None,
               proc: Process | None = None, resumed_from: int | None = None,
               run_dir: str | Path | None = None) -> dict[str, Any]:
    """Provenance of a run: seed, config hash, code version, git, data hash, packages, host."""
    code = versions.code_version("train", cfg)
    record = {
        "run_dir": str(run_dir) if run_dir is not None else None,
        "experiment": cfg["experiment"], "dataset": cfg["dataset"], "model": cfg["model"],
        "seed": cfg["seed"], "scale": cfg["scale"], "config_hash": config_hash(cfg),
        "code_version": code["version"], "code_modules": code["modules"],
        "git": provenance.git_state(),
        "data": {"path": str(data_path), **load_meta(data_path)},
        "packages": provenance.package_versions(), "host": provenance.host_info(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if model is not None:
        record["num_parameters"] = num_parameters(model)
    if proc is not None:
        record.update(resumed_from_iteration=resumed_from, device=str(proc.device),
                      world_size=proc.world)
        if proc.device.type == "cuda":
            record["device_name"] = torch.cuda.get_device_name(proc.device)
    return record


def finish(run: RunDir, cfg: dict[str, Any], model: torch.nn.Module, shape: tuple[int, ...],
           out_dim: int, state: State, plan: Schedule, proc: Process, status: str,
           reason: str | None, resumed_from: int | None) -> dict[str, Any]:
    """Write the weights (final and best-validation) and the summary; drop the checkpoint."""
    summary = {
        "status": status, "reason": reason, "iterations": state.iteration,
        "iterations_planned": plan.iterations,
        "best_val_loss": state.best_val if math.isfinite(state.best_val) else None,
        "best_iteration": state.best_iteration, "train_wall_seconds": state.wall,
        "epochs_trained": round(state.iteration / plan.per_epoch, 3),
        "config_hash": config_hash(cfg),
        "code_version": versions.code_version("train", cfg)["version"],
        "num_parameters": num_parameters(model), "resumed_from_iteration": resumed_from,
        "device": str(proc.device), "world_size": proc.world,
    }
    if proc.main:
        run.save_weights({"config": cfg, "config_hash": summary["config_hash"], "status": status,
                          "final_state": {k: v.detach().cpu()
                                          for k, v in model.state_dict().items()},
                          "best_state": state.best_state, "shape": list(shape),
                          "dim": int(np.prod(shape)), "out_dim": out_dim})
        run.write_summary(summary)
        run.remove_checkpoint()
    return summary
