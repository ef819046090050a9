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

from odeflows.config import experiment_ids, load_datasets, load_experiment, plan
from odeflows.data import get_generator
from odeflows.models import BuildContext, build_model, get_model, num_parameters
from odeflows.ode import Solver
from odeflows.tables import paper_facts, reference_numbers

__all__ = ["paper_config_counts", "to_markdown", "write_parameter_table"]

EXTRA_WORDS = {
    "end_time": "an untrained end time T per CNF",
    "aug_unused_1x1_conv": "an unused 1×1 conv per CNF",
    "unused_mixers": "unused mixer Linears in every hyper conv",
    "discarded_outputs": "last-conv outputs for the augmented channels it then discards",
}


def _paper_vs_code(experiment: str, model: str, dataset: str) -> str:
    """Why the paper's printed count differs from the reference code's (paper_numbers.yaml)."""
    notes = paper_facts().get("parameter_notes", [])
    for want_dataset in (dataset, None):
        for n in notes:
            if (n["experiment"], n["model"], n.get("dataset")) == (experiment, model,
                                                                   want_dataset):
                return n["note"]
    return ""


def paper_config_counts(config_dir: str | Path = "config",
                        experiments: list[str] | None = None) -> pd.DataFrame:
    """One row per (experiment, dataset, model) of the paper scale's image runs, over the given
    experiments (default all) that have paper-scale settings, whose model a reference
    implementation builds or a paper counts."""
    ref = reference_numbers()
    ref = ref[ref["metric"] == "num_parameters"]
    ids = [e for e in (experiments or experiment_ids(config_dir))
           if _has_scale(e, "paper", config_dir)]
    p = plan({"scale": "paper", "experiments": ids, "config_dir": str(config_dir)})
    datasets = load_datasets(config_dir)
    reference_code = {e: load_experiment(e, config_dir).get("reference_implementation")
                      for e in ids}
    rows: list[dict[str, Any]] = []
    for spec in p.runs:
        cfg = p.configs[spec]
        if spec.seed != 0 or cfg["data"]["kind"] != "images":
            continue
        gen = get_generator(cfg["data"]["generator"])
        size = datasets[spec.dataset].get("params", {}).get("image_size")
        shape = (gen.shape[0], size, size) if size else tuple(gen.shape)
        entry = get_model(cfg["model"], "images")
        sel = ref[(ref["experiment"] == spec.experiment) & (ref["dataset"] == spec.dataset)
                  & (ref["model"] == spec.model)]
        if "baseline" in entry.traits or (entry.reference_count is None and sel.empty):
            # nothing to hold it against (e.g. the primer's discrete flows): no row, and no
            # build (a large masked autoregressive flow takes seconds to build)
            continue
        with torch.device("meta"):
            net = build_model(cfg, shape, gen.classes)
        ours = num_parameters(net)
        paper = int(sel["value"].iloc[0]) if len(sel) else None
        code, extras = None, {}
        if entry.reference_count is not None:
            options = {**entry.defaults(), **cfg["model_options"]}
            ctx = BuildContext(shape, gen.classes, Solver.from_config(cfg["solver"]),
                               Solver.from_config(cfg["eval_solver"]))
            implementation = reference_code[spec.experiment] or cfg["model"]
            counted = entry.reference_count(options, ctx, implementation)
            if counted is not None:
                code, extras = counted.total, dict(counted.extras)
        notes = []
        if code is not None and code != ours:
            notes.append("the reference code also builds " + ", ".join(
                f"{EXTRA_WORDS.get(k, k)} ({v:,})" for k, v in extras.items() if v))
        if paper is not None and code is not None and paper != code:
            notes.append(_paper_vs_code(spec.experiment, spec.model, spec.dataset)
                         or "UNEXPLAINED difference between paper and code")
        rows.append({
            "experiment": spec.experiment, "dataset": spec.dataset, "model": spec.model,
            "shape": "x".join(map(str, shape)), "ours": ours, "reference_code": code,
            "paper": paper, "difference": None if paper is None else ours - paper,
            "paper_source": sel["source"].iloc[0] if len(sel) else "",
            "note": "; ".join(notes),
        })
    return pd.DataFrame(rows)


def _has_scale(experiment: str, scale: str, config_dir: str | Path) -> bool:
    from odeflows.config import ConfigError, scale_entry

    try:
        scale_entry(load_experiment(experiment, config_dir), scale, config_dir)
    except ConfigError:
        return False
    return True


def to_markdown(table: pd.DataFrame) -> str:
    head = ["# Parameter counts of the paper configurations", "",
            "**ours**: trainable parameters of the model the `paper` scale builds (counted from "
            "the model, built on the meta device). **reference code**: the count of the "
            "reference implementation's model, from its layer shapes. **paper**: the number "
            "printed in the paper (reference data, never produced here). Every difference is "
            "explained.", ""]

    def num(v: Any, sign: bool = False) -> str:
        return "" if v is None or pd.isna(v) else (f"{int(v):+,}" if sign else f"{int(v):,}")

    view = pd.DataFrame({
        "experiment": table["experiment"], "dataset": table["dataset"], "model": table["model"],
        "input": table["shape"], "ours": table["ours"].map(num),
        "reference code": table["reference_code"].map(num), "paper": table["paper"].map(num),
        "ours − paper": table["difference"].map(lambda v: num(v, sign=True)),
        "why": table["note"],
    })
    text = "\n".join(head) + "\n" + view.to_markdown(index=False, tablefmt="pipe",
                                                     disable_numparse=True) + "\n"
    sources = sorted({s for s in table["paper_source"] if s})
    if sources:
        text += "\nSources of paper numbers:\n" + "".join(f"- {s}\n" for s in sources)
    return text


def write_parameter_table(out_dir: str | Path, config_dir: str | Path = "config",
                          experiments: list[str] | None = None) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = paper_config_counts(config_dir, experiments)
    csv, md = out_dir / "parameters.csv", out_dir / "parameters.md"
    table.to_csv(csv, index=False)
    md.write_text(to_markdown(table))
    return [csv, md]
