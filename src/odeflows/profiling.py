"""Memory and time of one training step against the number of solver steps, with the adjoint
method and with backpropagation through the solver (the Neural ODE note's §2.2 claim).

Memory is measured as the peak of tensors held for the backward pass, tracked exactly through
``torch.autograd.graph.saved_tensors_hooks`` (shared storages counted once). That is the part of
memory that backpropagation through the solver grows with the number of steps and the adjoint does
not; on CUDA the allocator's peak is recorded as well.
"""

from __future__ import annotations

import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from odeflows import versions
from odeflows.data import get_generator
from odeflows.data.prepared import load as load_data
from odeflows.models import build_model, get_model
from odeflows.ode import count_nfe, reset_nfe
from odeflows.rundir import RunDir
from odeflows.tasks import select_task
from odeflows.train import run_record, seed_everything

__all__ = ["SavedTensorMeter", "evaluate_profile", "measure_step", "profile", "profile_markdown",
           "summarise_profile"]

FIELDS = ["mode", "steps", "repeat", "peak_saved_bytes", "seconds", "nfe_forward",
          "nfe_backward", "loss", "cuda_peak_bytes"]


class SavedTensorMeter:
    """Live and peak bytes of tensors saved for backward."""

    def __init__(self) -> None:
        self.live: dict[int, list[int]] = {}
        self.total = 0
        self.peak = 0

    def _release(self, key: int) -> None:
        entry = self.live.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.total -= entry[0]
            del self.live[key]

    def pack(self, t: torch.Tensor) -> Any:
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key in self.live:
            self.live[key][1] += 1
        else:
            self.live[key] = [storage.nbytes(), 1]
            self.total += storage.nbytes()
            self.peak = max(self.peak, self.total)
        handle = _Handle(t.detach())  # detached: no reference cycle through grad_fn
        weakref.finalize(handle, self._release, key)
        return handle

    @staticmethod
    def unpack(handle: Any) -> torch.Tensor:
        return handle.tensor


class _Handle:
    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor


def measure_step(cfg: dict[str, Any], data: dict[str, Any], steps: int, adjoint: bool
                 ) -> dict[str, Any]:
    """One forward+backward of a fresh, seeded model with rk4 at ``steps`` steps, on the loss of
    the task the model would train with on this dataset."""
    cfg = {**cfg, "solver": {**cfg["solver"], "steps": steps, "adjoint": adjoint}}
    seed_everything(cfg["seed"])
    x = torch.from_numpy(data["x_train"][: cfg["train"]["batch_size"]])
    entry = get_model(cfg["model"], cfg["data"]["kind"])
    task = select_task(entry, get_generator(cfg["data"]["generator"]))
    y = data.get("y_train")
    y = torch.from_numpy(y[: len(x)]) if y is not None and task.supervised else None
    model = build_model(cfg, x.shape[1], 1)
    model.train()
    gen = torch.Generator().manual_seed(cfg["seed"])
    meter = SavedTensorMeter()
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    reset_nfe(model)
    t0 = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(meter.pack, meter.unpack):
        loss, _ = task.loss(model, x, y, gen)
        nfe_f = count_nfe(model)
        loss.backward()
    seconds = time.perf_counter() - t0
    return {"steps": steps, "peak_saved_bytes": meter.peak, "seconds": seconds,
            "nfe_forward": nfe_f, "nfe_backward": count_nfe(model) - nfe_f,
            "loss": float(loss),
            "cuda_peak_bytes": torch.cuda.max_memory_allocated() if cuda else None}


def profile(cfg: dict[str, Any], data_path: str | Path, run_dir: str | Path) -> dict[str, Any]:
    run = RunDir(run_dir)
    run.path.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(int(cfg["train"].get("threads", 1)))
    run.write_config(cfg)
    record = run_record(cfg, data_path, run_dir=run.path)
    run.write_record(record)
    data = load_data(data_path)
    pcfg = cfg["profile"]
    rows = []
    t_start = time.perf_counter()
    # one untimed step first: the first call pays for lazy initialisation (kernels, allocator)
    measure_step(cfg, data, int(pcfg["steps"][0]), adjoint=True)
    for mode in ("direct", "adjoint"):
        for steps in pcfg["steps"]:
            for rep in range(int(pcfg.get("repeats", 1))):
                row = measure_step(cfg, data, int(steps), adjoint=mode == "adjoint")
                rows.append({"mode": mode, "repeat": rep, **row})
    run.write_profile(rows, FIELDS)
    summary = {"status": "completed", "reason": None, "config_hash": record["config_hash"],
               "code_version": record["code_version"],
               "train_wall_seconds": time.perf_counter() - t_start, "rows": len(rows)}
    run.write_summary(summary)
    return summary


def evaluate_profile(run_dir: str | Path) -> dict[str, Any]:
    """Summarise a profile: growth of peak saved memory with solver steps."""
    run = RunDir(run_dir)
    prof = run.profile()
    result: dict[str, Any] = {"status": "completed", "reason": None,
                              "code_version": versions.code_version("evaluate", run.config())}
    for mode, grp in prof.groupby("mode"):
        by_steps = grp.groupby("steps")[["peak_saved_bytes", "seconds"]].mean()
        steps = by_steps.index.to_numpy(dtype=float)
        mem = by_steps["peak_saved_bytes"].to_numpy(dtype=float)
        slope = float(np.polyfit(steps, mem, 1)[0]) if len(steps) > 1 else float("nan")
        result[f"{mode}_memory_growth_ratio"] = float(mem[-1] / mem[0])
        result[f"{mode}_bytes_per_step"] = slope
        result[f"{mode}_steps_min"], result[f"{mode}_steps_max"] = int(steps[0]), int(steps[-1])
        result[f"{mode}_seconds_at_max_steps"] = float(by_steps["seconds"].iloc[-1])
    run.write_evaluation(result)
    return result


def summarise_profile(run_dirs: list[str]) -> pd.DataFrame:
    frames = []
    for d in run_dirs:
        run = RunDir(d)
        prof = run.profile()
        if prof is not None:
            _, _, model, seed = run.spec_parts
            prof["model"], prof["seed"] = model, seed
            prof["run_dir"] = d
            frames.append(prof)
    if not frames:
        return pd.DataFrame()
    prof = pd.concat(frames)
    g = prof.groupby(["model", "mode", "steps"])
    return g.agg(peak_saved_bytes_mean=("peak_saved_bytes", "mean"),
                 peak_saved_bytes_std=("peak_saved_bytes", "std"),
                 seconds_mean=("seconds", "mean"), seconds_std=("seconds", "std"),
                 nfe_forward=("nfe_forward", "mean"), nfe_backward=("nfe_backward", "mean"),
                 measurements=("seconds", "size")).reset_index()


def profile_markdown(table: pd.DataFrame, title: str) -> str:
    from odeflows.tables import format_cell

    lines = [f"# {title}", "",
             "Peak memory of tensors saved for backward (MiB) and seconds per training step, "
             "mean ± std over seeds and repeats.", ""]
    if table.empty:
        return "\n".join(lines + ["No completed profiles."]) + "\n"
    mib = 2.0 ** 20
    view = pd.DataFrame({
        "model": table["model"], "mode": table["mode"], "solver steps": table["steps"],
        "NFE fwd": table["nfe_forward"].map("{:.0f}".format),
        "NFE bwd": table["nfe_backward"].map("{:.0f}".format),
        "peak saved MiB": [format_cell(m / mib, s / mib, int(n)) for m, s, n in zip(
            table["peak_saved_bytes_mean"], table["peak_saved_bytes_std"],
            table["measurements"], strict=True)],
        "seconds": [format_cell(m, s, int(n)) for m, s, n in zip(
            table["seconds_mean"], table["seconds_std"], table["measurements"], strict=True)],
    })
    return "\n".join(lines) + "\n" + view.to_markdown(index=False, tablefmt="pipe") + "\n"
