"""Parameter counts of the paper configurations, ours beside the papers' (AFFJORD Table 2, RNODE
Table 2, ANODE App. F.2.2), with the reason for every difference.

Models are built from the ``paper`` scale's resolved run configs on PyTorch's ``meta`` device (no
memory, no data), so the table is exact for the architecture the paper scale trains, whatever
scale this workflow runs at.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import torch

from odeflows.aggregate import reference_numbers
from odeflows.config import (
    IMAGE_EXPERIMENTS,
    RunSpec,
    load_datasets,
    load_experiment,
    resolve_run,
)
from odeflows.data.images import DATASETS
from odeflows.models import build_model, num_parameters

# Why our count differs from the printed one, keyed by (experiment, model) or (experiment,
# model, dataset). Every non-zero difference in the table must have an entry here.
NOTES: dict[tuple[str, ...], str] = {}


def _note(experiment: str, model: str, dataset: str) -> str:
    return NOTES.get((experiment, model, dataset)) or NOTES.get((experiment, model), "")


def paper_config_counts(config_dir: str | Path = "config") -> pd.DataFrame:
    """One row per (experiment, dataset, model) of the paper scale's image runs."""
    datasets = load_datasets(config_dir)
    ref = reference_numbers()
    ref = ref[ref["metric"] == "num_parameters"]
    rows: list[dict[str, Any]] = []
    for exp_id in IMAGE_EXPERIMENTS:
        exp = load_experiment(exp_id, config_dir)
        sc = exp["scales"]["paper"]
        for ds in sc.get("datasets", exp["datasets"]):
            if datasets[ds].get("family") != "images":
                continue
            info = DATASETS[datasets[ds]["source"]]
            size = datasets[ds].get("image_size")
            shape = (info.shape[0], size, size) if size else info.shape
            for model in sc.get("models", exp["models"]):
                cfg = resolve_run(RunSpec("paper", exp_id, ds, model, 0), config_dir)
                with torch.device("meta"):
                    net = build_model(cfg, shape, info.classes)
                ours = num_parameters(net)
                sel = ref[(ref["experiment"] == exp_id) & (ref["dataset"] == ds)
                          & (ref["model"] == model)]
                paper = int(sel["value"].iloc[0]) if len(sel) else None
                rows.append({
                    "experiment": exp_id, "dataset": ds, "model": model,
                    "shape": "x".join(map(str, shape)), "ours": ours, "paper": paper,
                    "difference": None if paper is None else ours - paper,
                    "paper_source": sel["source"].iloc[0] if len(sel) else "",
                    "note": _note(exp_id, model, ds),
                })
    return pd.DataFrame(rows)


def to_markdown(table: pd.DataFrame) -> str:
    lines = ["# Parameter counts of the paper configurations", "",
             "**ours**: trainable parameters of the model the `paper` scale builds (counted from "
             "the model, built on the meta device). **paper**: the number printed in the paper "
             "(reference data, never produced here). Every difference is explained.", "",
             "| experiment | dataset | model | input | ours | paper | ours − paper | why |",
             "|---|---|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        paper = "" if pd.isna(r["paper"]) else f"{int(r['paper']):,}"
        diff = "" if pd.isna(r["difference"]) else f"{int(r['difference']):+,}"
        lines.append(f"| {r['experiment']} | {r['dataset']} | {r['model']} | {r['shape']} | "
                     f"{int(r['ours']):,} | {paper} | {diff} | {r['note']} |")
    sources = sorted({s for s in table["paper_source"] if s})
    if sources:
        lines += ["", "Sources of paper numbers:"] + [f"- {s}" for s in sources]
    return "\n".join(lines) + "\n"


def write_parameter_table(out_dir: str | Path, config_dir: str | Path = "config") -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = paper_config_counts(config_dir)
    csv, md = out_dir / "parameters.csv", out_dir / "parameters.md"
    table.to_csv(csv, index=False)
    md.write_text(to_markdown(table))
    return [csv, md]
