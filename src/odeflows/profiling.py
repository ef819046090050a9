"""Memory and time of one training step against the number of solver steps, with the adjoint
method and with backpropagation through the solver (the Neural ODE note's §2.2 claim).

Memory is measured as the peak of tensors held for the backward pass, tracked exactly through
``torch.autograd.graph.saved_tensors_hooks`` (shared storages counted once). That is the part of
memory that backpropagation through the solver grows with the number of steps and the adjoint does
not; on CUDA the allocator's peak is recorded as well.
"""

from __future__ import annotations

import csv
import time
import weakref
from pathlib import Path
from typing import Any

import torch

from odeflows import provenance
from odeflows.config import config_hash
from odeflows.data.prepared import load as load_data
from odeflows.data.prepared import load_meta
from odeflows.models import CLASSIFIERS, build_model
from odeflows.ode import count_nfe, reset_nfe
from odeflows.tasks import make_task
from odeflows.train import seed_everything

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
    """One forward+backward of a fresh, seeded model with rk4 at ``steps`` steps."""
    cfg = {**cfg, "solver": {**cfg["solver"], "steps": steps, "adjoint": adjoint}}
    seed_everything(cfg["seed"])
    x = torch.from_numpy(data["x_train"][: cfg["train"]["batch_size"]])
    y = data.get("y_train")
    # classifiers regress the labels; flows fit the density of the same points
    y = torch.from_numpy(y[: len(x)]) if y is not None and cfg["model"] in CLASSIFIERS else None
    task = make_task("regression" if y is not None else "density")
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
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(int(cfg["train"].get("threads", 1)))
    provenance.write_json_atomic(run_dir / "config.json", cfg)
    chash = config_hash(cfg)
    provenance.write_json_atomic(run_dir / "record.json", {
        "run_dir": str(run_dir), "experiment": cfg["experiment"], "dataset": cfg["dataset"],
        "model": cfg["model"], "seed": cfg["seed"], "scale": cfg["scale"], "config_hash": chash,
        "git": provenance.git_state(), "data": {"path": str(data_path), **load_meta(data_path)},
        "packages": provenance.package_versions(), "host": provenance.host_info(),
    })
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
    with open(run_dir / "profile.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    summary = {"status": "completed", "reason": None, "config_hash": chash,
               "train_wall_seconds": time.perf_counter() - t_start, "rows": len(rows)}
    provenance.write_json_atomic(run_dir / "summary.json", summary)
    return summary
