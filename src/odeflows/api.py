"""What a user imports: load a finished run directory without Snakemake.

>>> from odeflows.api import load_run
>>> run = load_run("results/laptop/runs/affjord_toy/hash/affjord/seed0")
>>> run.log_prob(x); run.sample(1000); run.nfe
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from odeflows.models import build_model, data_kind, get_model
from odeflows.ode import count_nfe, reset_nfe
from odeflows.rundir import RunDir

__all__ = ["Run", "load_run"]


@dataclass
class Run:
    """A trained model with its configuration, record and evaluation."""

    path: Path
    config: dict[str, Any]
    model: nn.Module
    record: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    nfe: int = 0  # network passes (NFE) of the last log_prob / sample / predict call

    def _counted(self, fn: Callable[..., Any], *args: Any) -> Any:
        reset_nfe(self.model)
        out = fn(*args)
        self.nfe = count_nfe(self.model)
        return out

    @property
    def entry(self) -> Any:
        """The model's registry entry (what it is, what it accepts)."""
        shape = self.record.get("data", {}).get("shape")
        kind = self.config.get("data", {}).get("kind") or data_kind(shape or [0])
        return get_model(self.config["model"], kind)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) in nats (density models only), with the evaluation solver."""
        if not self.entry.is_density:
            raise TypeError(f"model {self.config['model']!r} is not a density model")
        x = torch.as_tensor(x, dtype=torch.float32, device=self.device)
        with torch.no_grad():
            return self._counted(self.model.log_prob, x)

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """n samples (by reverse integration for continuous flows)."""
        if not self.entry.samples:
            raise TypeError(f"model {self.config['model']!r} cannot sample")
        return self._counted(self.model.sample, n, torch.Generator().manual_seed(seed))

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(x, dtype=torch.float32, device=self.device)
        with torch.no_grad():
            return self._counted(self.model, x)

    @property
    def device(self) -> torch.device:
        from odeflows.tasks import device_of

        return device_of(self.model)


def load_run(path: str | Path, which: str = "best", device: str | torch.device = "cpu") -> Run:
    """Load a finished run: ``which="best"`` (best validation, the papers' protocol) or
    ``"final"`` weights, onto ``device``."""
    rd = RunDir(path)
    blob = rd.load_weights()
    if blob.get("status") != "completed":
        raise RuntimeError(f"run {path} did not complete (status {blob.get('status')!r})")
    best = which == "best" and blob.get("best_state")
    state = blob["best_state"] if best else blob["final_state"]
    cfg = blob["config"]
    from odeflows import plugins

    plugins.load(cfg.get("modules", []))
    model = build_model(cfg, blob.get("shape") or blob["dim"], blob["out_dim"])
    model.load_state_dict(state)
    model.to(device).eval()
    return Run(rd.path, cfg, model, rd.record(), rd.evaluation() or {})
