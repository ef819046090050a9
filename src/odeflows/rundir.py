"""The run directory: the one place that knows its layout and file formats.

``results/<scale>/runs/<experiment>/<dataset>/<model>/seed<k>/`` holds

- ``config.json``   the resolved configuration
- ``record.json``   provenance: seed, config hash, code version, git, data hash, packages, host
- ``metrics.csv``   one row per training iteration
- ``checkpoint.pt`` rolling training state (atomic; removed when the run completes)
- ``model.pt``      final and best-validation weights
- ``summary.json``  status, best validation score, reason of failure
- ``eval.json``     scores on the test split
- ``<name>.npz``    arrays figures need (``density``, ``trajectories``, ``samples``)
- ``profile.csv``   memory/time measurements (memory-profile runs)

Training, evaluation, tables, figures, the audit and :func:`odeflows.api.load_run` all go
through :class:`RunDir`.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from odeflows import provenance

__all__ = ["MetricsLog", "RunDir", "RunSpec"]

RUNS = "results/{scale}/runs"
#: the run directory of a (scale, experiment, dataset, model, seed), as a format pattern
PATTERN = RUNS + "/{experiment}/{dataset}/{model}/seed{seed}"
#: files whose content the table provenance records (MD5, as DVC does)
HASHED_FILES = ("eval.json", "summary.json", "model.pt", "metrics.csv", "profile.csv")

COMPLETED, FAILED, MISSING = "completed", "failed", "missing"


@dataclass(frozen=True, order=True)
class RunSpec:
    """Coordinates of one run."""

    scale: str
    experiment: str
    dataset: str
    model: str
    seed: int

    @property
    def path(self) -> str:
        return PATTERN.format(scale=self.scale, experiment=self.experiment, dataset=self.dataset,
                              model=self.model, seed=self.seed)


class MetricsLog:
    """Appends one CSV row per iteration; rows after a checkpoint are dropped on resume."""

    def __init__(self, fh: TextIO, fields: Sequence[str], header: bool):
        self._fh = fh
        self._writer = csv.DictWriter(fh, list(fields))
        if header:
            self._writer.writeheader()

    def write(self, row: dict[str, Any]) -> None:
        self._writer.writerow(row)
        self._fh.flush()


class RunDir:
    """One run's directory."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def of(cls, spec: RunSpec) -> RunDir:
        return cls(spec.path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def spec_parts(self) -> tuple[str, str, str, int]:
        """(experiment, dataset, model, seed) read off the path."""
        experiment, dataset, model, seed_dir = self.path.parts[-4:]
        return experiment, dataset, model, int(seed_dir.removeprefix("seed"))

    # -- JSON documents -----------------------------------------------------------------------
    def _write(self, name: str, obj: Any) -> None:
        provenance.write_json_atomic(self.file(name), obj)

    def _read(self, name: str) -> Any | None:
        f = self.file(name)
        if not f.exists():
            return None
        try:
            return provenance.read_json(f)
        except (OSError, json.JSONDecodeError):
            return None

    def write_config(self, cfg: dict[str, Any]) -> None:
        self._write("config.json", cfg)

    def config(self) -> dict[str, Any] | None:
        return self._read("config.json")

    def write_record(self, record: dict[str, Any]) -> None:
        self._write("record.json", record)

    def record(self) -> dict[str, Any]:
        return self._read("record.json") or {}

    def write_summary(self, summary: dict[str, Any]) -> None:
        self._write("summary.json", summary)

    def summary(self) -> dict[str, Any] | None:
        return self._read("summary.json")

    def write_evaluation(self, result: dict[str, Any]) -> None:
        self._write("eval.json", result)

    def evaluation(self) -> dict[str, Any] | None:
        return self._read("eval.json")

    @property
    def status(self) -> str:
        """``completed``, ``failed`` or ``missing`` (not evaluated yet, or unreadable)."""
        ev = self.evaluation()
        if ev is None:
            return MISSING
        return COMPLETED if ev.get("status") == COMPLETED else FAILED

    # -- training log ---------------------------------------------------------------------------
    @contextmanager
    def metrics_log(self, fields: Sequence[str], resume_from: int | None,
                    enabled: bool = True) -> Iterator[MetricsLog]:
        """The per-iteration log: fresh for a new run, truncated to the checkpoint's iteration
        when resuming (later rows are recomputed). ``enabled=False`` (non-main DDP processes)
        writes nothing."""
        path = self.file("metrics.csv")
        if not enabled:
            with open(os.devnull, "w") as fh:
                yield MetricsLog(fh, fields, header=False)
            return
        if resume_from is None:
            path.unlink(missing_ok=True)
        elif path.exists():
            # rewritten whole and renamed: a kill mid-rewrite must not lose the rows kept
            with open(path, newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["iteration"]) <= resume_from]
            kept = io.StringIO()
            writer = csv.DictWriter(kept, list(fields))
            writer.writeheader()
            writer.writerows(rows)
            provenance.write_text_atomic(path, kept.getvalue())
        header = not path.exists()
        with open(path, "a", newline="") as fh:
            yield MetricsLog(fh, fields, header)

    def metrics(self) -> Any | None:
        """``metrics.csv`` as a pandas DataFrame, or None."""
        return _read_csv(self.file("metrics.csv"))

    # -- checkpoints and weights ------------------------------------------------------------------
    def save_checkpoint(self, state: dict[str, Any]) -> None:
        _save_torch(state, self.file("checkpoint.pt"))

    def load_checkpoint(self, map_location: Any = "cpu") -> dict[str, Any] | None:
        f = self.file("checkpoint.pt")
        if not f.exists():
            return None
        import torch

        return torch.load(f, weights_only=False, map_location=map_location)

    def remove_checkpoint(self) -> None:
        self.file("checkpoint.pt").unlink(missing_ok=True)
        provenance.remove_stale_temporaries(self.file("checkpoint.pt"))

    def save_weights(self, blob: dict[str, Any]) -> None:
        _save_torch(blob, self.file("model.pt"))

    def load_weights(self) -> dict[str, Any]:
        f = self.file("model.pt")
        if not f.exists():
            raise FileNotFoundError(f"{f} not found: is {self.path} a finished run directory?")
        import torch

        return torch.load(f, weights_only=False, map_location="cpu")

    # -- arrays for figures, profiles -------------------------------------------------------------
    def save_arrays(self, name: str, **arrays: np.ndarray) -> None:
        np.savez(self.file(f"{name}.npz"), **arrays)

    def arrays(self, name: str, keys: Sequence[str] | None = None) -> dict[str, np.ndarray] | None:
        """``<name>.npz`` (only ``keys`` if given), or None when absent or unreadable."""
        f = self.file(f"{name}.npz")
        if not f.exists():
            return None
        try:
            with np.load(f) as data:
                return {k: data[k] for k in (keys or data.files) if k in data.files}
        except (OSError, ValueError):
            return None

    def has(self, name: str) -> bool:
        return self.file(name).exists()

    def write_profile(self, rows: list[dict[str, Any]], fields: Sequence[str]) -> None:
        with open(self.file("profile.csv"), "w", newline="") as fh:
            writer = csv.DictWriter(fh, list(fields))
            writer.writeheader()
            writer.writerows(rows)

    def profile(self) -> Any | None:
        return _read_csv(self.file("profile.csv"))

    # -- provenance ----------------------------------------------------------------------------
    def file_hashes(self) -> dict[str, str]:
        """MD5 of the result files present (what DVC records for them)."""
        return {name: provenance.md5_file(self.file(name))
                for name in HASHED_FILES if self.file(name).exists()}


def _save_torch(obj: Any, path: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = provenance.temporary_path(path)
    torch.save(obj, tmp)
    os.replace(tmp, path)
    provenance.remove_stale_temporaries(path)


def _read_csv(path: Path) -> Any | None:
    if not path.exists():
        return None
    import pandas as pd

    try:
        return pd.read_csv(path)
    except (OSError, ValueError, pd.errors.EmptyDataError):
        return None
