"""What a user imports: load a finished run directory without Snakemake.

>>> from odeflows.api import load_run
>>> run = load_run("results/laptop/runs/affjord_toy/hash/affjord/seed0")
>>> run.log_prob(x); run.sample(1000); run.nfe
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from odeflows import provenance
from odeflows.models import build_model
from odeflows.ode import count_nfe, reset_nfe


@dataclass
class Run:
    """A trained model with its configuration, record and evaluation."""

    path: Path
    config: dict[str, Any]
    model: nn.Module
    record: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    nfe: int = 0  # function evaluations of the last log_prob / sample / predict call

    def _counted(self, fn, *args):
        reset_nfe(self.model)
        out = fn(*args)
        self.nfe = count_nfe(self.model)
        return out

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) in nats (density models only), with the evaluation solver."""
        if not hasattr(self.model, "log_prob"):
            raise TypeError(f"model {self.config['model']!r} is not a density model")
        x = torch.as_tensor(x, dtype=torch.float32, device=self.device)
        with torch.no_grad():
            return self._counted(self.model.log_prob, x)

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """n samples by reverse integration from the base distribution."""
        if not hasattr(self.model, "sample"):
            raise TypeError(f"model {self.config['model']!r} cannot sample")
        return self._counted(self.model.sample, n, torch.Generator().manual_seed(seed))

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(x, dtype=torch.float32, device=self.device)
        with torch.no_grad():
            return self._counted(self.model, x)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def load_run(path: str | Path, which: str = "best", device: str | torch.device = "cpu") -> Run:
    """Load ``<run>/model.pt``: ``which="best"`` (best validation, the papers' protocol) or
    ``"final"`` weights, onto ``device``."""
    path = Path(path)
    model_file = path / "model.pt"
    if not model_file.exists():
        raise FileNotFoundError(f"{model_file} not found: is {path} a finished run directory?")
    blob = torch.load(model_file, weights_only=False, map_location="cpu")
    if blob.get("status") != "completed":
        raise RuntimeError(f"run {path} did not complete (status {blob.get('status')!r})")
    best = which == "best" and blob.get("best_state")
    state = blob["best_state"] if best else blob["final_state"]
    model = build_model(blob["config"], blob.get("shape") or blob["dim"], blob["out_dim"])
    model.load_state_dict(state)
    model.to(device).eval()

    def maybe(name: str) -> dict[str, Any]:
        f = path / name
        return provenance.read_json(f) if f.exists() else {}

    return Run(path, blob["config"], model, maybe("record.json"), maybe("eval.json"))
