"""Aggregate run directories into tables: a long per-run file, a per-experiment summary (mean ±
std over successful seeds, failed seeds counted, paper numbers beside ours) and a provenance
sidecar that names, for every row of the summary, the runs and record fields behind it."""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from odeflows import provenance
from odeflows.config import load_experiment, run_matrix

# metrics summarised per (dataset, model), by task
METRICS = {
    "regression": ["test_loss", "test_accuracy", "test_nfe", "nfe_first_epoch", "nfe_last_epoch",
                   "train_wall_seconds", "num_parameters"],
    "density": ["best_val_loss", "test_loss", "test_nfe", "grid_mass", "train_wall_seconds",
                "num_parameters"],
    "classification": ["test_accuracy_pct", "test_loss", "test_nfe", "nfe_first_epoch",
                       "nfe_last_epoch", "train_wall_seconds", "num_parameters"],
    "image_density": ["best_val_loss", "test_bpd", "test_bpd_dequantized", "test_bpd_clean",
                      "test_nfe", "nfe_train_mean", "jacobian_last_epoch", "kinetic_last_epoch",
                      "train_wall_seconds", "train_hours", "num_parameters"],
}
# wording that depends on the task (image flows: losses are bits/dim)
TASK_LABELS = {"image_density": {"best_val_loss": "best val bits/dim"},
               "density+images": {"best_val_loss": "best val NLL (nats) / bits/dim (images)"}}
# an experiment over toy and image datasets (affjord_rnode) reports both kinds of metric
METRICS["density+images"] = METRICS["density"] + [
    m for m in METRICS["image_density"] if m not in METRICS["density"]]
LABELS = {
    "best_val_loss": "best val NLL (nats)", "test_loss": "test loss", "test_accuracy": "test acc.",
    "test_nfe": "test NFE", "nfe_first_epoch": "NFE (first epoch)",
    "nfe_last_epoch": "NFE (last epoch)", "grid_mass": "∫p on grid",
    "train_wall_seconds": "train s", "num_parameters": "params",
    "test_accuracy_pct": "test acc. %", "test_bpd": "test bits/dim",
    "test_bpd_dequantized": "test bpd (dequantised)", "test_bpd_clean": "test bpd (clean)",
    "nfe_train_mean": "train NFE/iter (f+b)", "jacobian_last_epoch": "∫‖J‖²_F/D (last epoch)",
    "kinetic_last_epoch": "∫‖f‖²/2D (last epoch)", "train_hours": "train hours (Σ step times)",
}


def reference_numbers(path: str | Path | None = None) -> pd.DataFrame:
    if path is None:
        text = resources.files("odeflows").joinpath("reference", "paper_numbers.yaml").read_text()
    else:
        text = Path(path).read_text()
    return pd.DataFrame(yaml.safe_load(text))


def _epoch_stats(metrics_csv: Path) -> dict[str, float | None]:
    """Per-run statistics of the training log: mean forward NFE per iteration in the first and
    last epoch (ANODE Fig. 8), mean forward+backward NFE per iteration (AFFJORD Fig. 9), and the
    last epoch's mean regulariser integrals (RNODE Fig. 5)."""
    out: dict[str, float | None] = dict.fromkeys(
        ("nfe_first_epoch", "nfe_last_epoch", "nfe_train_mean", "jacobian_last_epoch",
         "kinetic_last_epoch"))
    if not metrics_csv.exists():
        return out
    m = pd.read_csv(metrics_csv)
    if m.empty or "nfe_forward" not in m:
        return out
    per_epoch = m.groupby("epoch")
    nfe = per_epoch["nfe_forward"].mean()
    if not nfe.any():  # a model without an ODE block (ResNet)
        return out
    out["nfe_first_epoch"], out["nfe_last_epoch"] = float(nfe.iloc[0]), float(nfe.iloc[-1])
    out["nfe_train_mean"] = float((m["nfe_forward"] + m["nfe_backward"]).mean())
    for col in ("jacobian", "kinetic"):
        if col in m and m[col].notna().any():
            out[f"{col}_last_epoch"] = float(per_epoch[col].mean().iloc[-1])
    return out


def _run_record(run_dir: Path, hash_files: bool = True) -> dict[str, Any]:
    rec_path = run_dir / "record.json"
    rec = provenance.read_json(rec_path) if rec_path.exists() else {}
    files = {}
    for name in ("eval.json", "summary.json", "model.pt", "metrics.csv", "profile.csv"):
        f = run_dir / name
        if hash_files and f.exists():
            files[name] = provenance.md5_file(f)
    return {
        "run_dir": str(run_dir),
        "seed": rec.get("seed"),
        "config_hash": rec.get("config_hash"),
        "git_commit": rec.get("git", {}).get("commit"),
        "git_dirty": rec.get("git", {}).get("dirty"),
        "data_sha256": rec.get("data", {}).get("sha256"),
        "device": rec.get("host", {}).get("device"),
        "packages": rec.get("packages", {}),
        "file_md5": files,
    }


def evaluate_profile(run_dir: str | Path) -> dict[str, Any]:
    """Summarise a node_adjoint profile: growth of peak saved memory with solver steps."""
    run_dir = Path(run_dir)
    prof = pd.read_csv(run_dir / "profile.csv")
    result: dict[str, Any] = {"status": "completed", "reason": None}
    for mode, grp in prof.groupby("mode"):
        by_steps = grp.groupby("steps")[["peak_saved_bytes", "seconds"]].mean()
        steps = by_steps.index.to_numpy(dtype=float)
        mem = by_steps["peak_saved_bytes"].to_numpy(dtype=float)
        slope = float(np.polyfit(steps, mem, 1)[0]) if len(steps) > 1 else float("nan")
        result[f"{mode}_memory_growth_ratio"] = float(mem[-1] / mem[0])
        result[f"{mode}_bytes_per_step"] = slope
        result[f"{mode}_steps_min"], result[f"{mode}_steps_max"] = int(steps[0]), int(steps[-1])
        result[f"{mode}_seconds_at_max_steps"] = float(by_steps["seconds"].iloc[-1])
    provenance.write_json_atomic(run_dir / "eval.json", result)
    return result


def collect_runs(scale: str, experiment: str, config_dir: str | Path = "config") -> pd.DataFrame:
    """One row per run of the matrix; runs without eval.json have status 'missing'."""
    specs = run_matrix({"scale": scale, "experiments": [experiment], "config_dir": str(config_dir)})
    return run_rows([Path(s.path) for s in specs])


def run_rows(run_dirs: list[Path]) -> pd.DataFrame:
    """The per-seed table of the given run directories (…/<experiment>/<dataset>/<model>/seedK),
    read from their eval.json, metrics.csv and record.json only."""
    rows = []
    for run_dir in run_dirs:
        experiment, dataset, model, seed_dir = run_dir.parts[-4:]
        ev_path = run_dir / "eval.json"
        ev = provenance.read_json(ev_path) if ev_path.exists() else {"status": "missing"}
        row: dict[str, Any] = {"experiment": experiment, "dataset": dataset, "model": model,
                               "seed": int(seed_dir.removeprefix("seed")),
                               "run_dir": str(run_dir),
                               "status": ev.get("status"), "reason": ev.get("reason")}
        for key, value in ev.items():
            if isinstance(value, (int, float, str, type(None))) and key not in row:
                row[key] = value
        hut = ev.get("hutchinson") or {}
        for kind in ("gaussian", "rademacher"):
            if kind in hut:
                row[f"hutchinson_{kind}_z"] = hut[kind]["z_pooled"]
        row.update(_epoch_stats(run_dir / "metrics.csv"))
        if isinstance(row.get("train_wall_seconds"), (int, float)):
            row["train_hours"] = row["train_wall_seconds"] / 3600
        if isinstance(row.get("test_accuracy"), (int, float)):
            row["test_accuracy_pct"] = 100 * row["test_accuracy"]
        rec = _run_record(run_dir, hash_files=False)  # file hashes go to the sidecar only
        row.update(config_hash=rec["config_hash"], git_commit=rec["git_commit"],
                   git_dirty=rec["git_dirty"], data_sha256=rec["data_sha256"],
                   device=rec["device"])
        rows.append(row)
    return pd.DataFrame(rows)


def _fmt(mean: float, std: float, n: int, integer: bool = False) -> str:
    if n == 0 or mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "x"
    if integer:
        return f"{mean:.0f}"
    scale = max(abs(mean), 1e-12)
    digits = 4 if scale < 10 else (2 if scale < 1000 else 0)
    if n == 1 or std is None or math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def summarise(runs: pd.DataFrame, task: str, ref: pd.DataFrame) -> pd.DataFrame:
    metrics = [m for m in METRICS[task] if m in runs.columns]
    out = []
    for (dataset, model), grp in runs.groupby(["dataset", "model"], sort=False):
        ok = grp[grp["status"] == "completed"]
        row: dict[str, Any] = {"dataset": dataset, "model": model, "seeds_ok": len(ok),
                               "seeds_failed": int((grp["status"] == "failed").sum()),
                               "seeds_missing": int((grp["status"] == "missing").sum())}
        for m in metrics:
            vals = pd.to_numeric(ok[m], errors="coerce").dropna()
            row[f"{m}_mean"] = float(vals.mean()) if len(vals) else float("nan")
            row[f"{m}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else float("nan")
            row[f"{m}_n"] = len(vals)
        exp = grp["experiment"].iloc[0]
        sel = ref[(ref["experiment"] == exp) & (ref["model"] == model)
                  & (ref["dataset"] == dataset)] if len(ref) else ref
        for _, r in sel.iterrows():
            row[f"paper_{r['metric']}"] = r["value"]
            if "std" in r and not pd.isna(r.get("std")):
                row[f"paper_{r['metric']}_std"] = r["std"]
            row[f"paper_{r['metric']}_source"] = r["source"]
        out.append(row)
    return pd.DataFrame(out)


def training_curves(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean training and validation loss per iteration over completed seeds, one column per
    (dataset, model) series — the file ``dvc plots`` draws."""
    frames = []
    for (dataset, model), grp in runs[runs["status"] == "completed"].groupby(["dataset", "model"]):
        logs = [pd.read_csv(Path(d) / "metrics.csv", usecols=["iteration", "loss", "val_loss"])
                for d in grp["run_dir"] if (Path(d) / "metrics.csv").exists()]
        if not logs:
            continue
        mean = pd.concat(logs).groupby("iteration").mean()
        mean.columns = [f"{dataset}/{model}/{c}" for c in mean.columns]
        frames.append(mean)
    return pd.concat(frames, axis=1).reset_index() if frames else pd.DataFrame({"iteration": []})


def summarise_profile(run_dirs: list[str]) -> pd.DataFrame:
    frames = []
    for d in run_dirs:
        f = Path(d) / "profile.csv"
        if f.exists():
            prof = pd.read_csv(f)
            parts = Path(d).parts
            prof["model"], prof["seed"] = parts[-2], int(parts[-1].removeprefix("seed"))
            prof["run_dir"] = d
            frames.append(prof)
    if not frames:
        return pd.DataFrame()
    prof = pd.concat(frames)
    g = prof.groupby(["model", "mode", "steps"])
    table = g.agg(peak_saved_bytes_mean=("peak_saved_bytes", "mean"),
                  peak_saved_bytes_std=("peak_saved_bytes", "std"),
                  seconds_mean=("seconds", "mean"), seconds_std=("seconds", "std"),
                  nfe_forward=("nfe_forward", "mean"), nfe_backward=("nfe_backward", "mean"),
                  measurements=("seconds", "size")).reset_index()
    return table


def to_markdown(table: pd.DataFrame, task: str, title: str) -> str:
    lines = [f"# {title}", ""]
    if task == "memory_profile":
        lines += ["Peak memory of tensors saved for backward (MiB) and seconds per training step, "
                  "mean ± std over seeds and repeats.", "",
                  "| model | mode | solver steps | NFE fwd | NFE bwd | peak saved MiB | seconds |",
                  "|---|---|---|---|---|---|---|"]
        for _, r in table.iterrows():
            n = int(r["measurements"])
            mem = _fmt(r["peak_saved_bytes_mean"] / 2**20, r["peak_saved_bytes_std"] / 2**20, n)
            lines.append(f"| {r['model']} | {r['mode']} | {r['steps']} | {r['nfe_forward']:.0f} | "
                         f"{r['nfe_backward']:.0f} | {mem} | "
                         f"{_fmt(r['seconds_mean'], r['seconds_std'], n)} |")
        return "\n".join(lines) + "\n"
    metrics = [m for m in METRICS[task] if f"{m}_mean" in table.columns]
    paper_cols = sorted(c for c in table.columns if c.startswith("paper_")
                        and not c.endswith("_source") and not c.endswith("_std"))
    lines += ["**ours**: mean ± std over successful seeds (ok / failed seeds; a row with no "
              "successful seed shows x). **paper**: the papers' own numbers (reference data, "
              "sources below), never produced by this workflow.", ""]
    labels = {**LABELS, **TASK_LABELS.get(task, {})}
    header = ["dataset", "model", "seeds ok/failed"] + [f"ours: {labels[m]}" for m in metrics]
    header += [f"paper: {c.removeprefix('paper_')}" for c in paper_cols]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    sources = set()
    for _, r in table.iterrows():
        cells = [r["dataset"], r["model"], f"{r['seeds_ok']}/{r['seeds_failed']}"]
        for m in metrics:
            n = int(r[f"{m}_n"])
            # "–": not applicable (e.g. NFE of a ResNet); "x": no successful seed
            cells.append("–" if n == 0 and r["seeds_ok"] > 0 else
                         _fmt(r[f"{m}_mean"], r[f"{m}_std"], n, integer=m == "num_parameters"))
        for c in paper_cols:
            v = r.get(c)
            cells.append("" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:g}")
            src = r.get(f"{c}_source")
            if isinstance(src, str):
                sources.add(f"{c.removeprefix('paper_')}: {src}")
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    if sources:
        lines += ["", "Sources of paper numbers:"] + [f"- {s}" for s in sorted(sources)]
    return "\n".join(lines) + "\n"


def aggregate(scale: str, experiment: str, out_dir: str | Path, config_dir: str | Path = "config",
              reference: str | Path | None = None) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    exp = load_experiment(experiment, config_dir)
    task = exp["task"]
    runs = collect_runs(scale, experiment, config_dir)
    if task == "density" and "test_bpd" in runs.columns:
        task = "density+images"
    ref = reference_numbers(reference)
    if task == "memory_profile":
        table = summarise_profile(list(runs["run_dir"]))
        keys = ["model"]
    else:
        table = summarise(runs, task, ref)
        keys = ["dataset", "model"]
    paths = {"csv": out_dir / f"{experiment}.csv", "md": out_dir / f"{experiment}.md",
             "runs": out_dir / f"{experiment}_runs.csv",
             "prov": out_dir / f"{experiment}.provenance.json",
             "curves": out_dir / f"{experiment}_curves.csv"}
    runs.to_csv(paths["runs"], index=False)
    if task == "memory_profile":
        table.to_csv(paths["curves"], index=False)  # memory and time against solver steps
    else:
        training_curves(runs).to_csv(paths["curves"], index=False)
    table.to_csv(paths["csv"], index=False)
    paths["md"].write_text(to_markdown(table, task, f"{experiment} ({scale}): {exp['title']}"))

    prov_rows = []
    for _, r in table.iterrows():
        sel = runs
        for k in keys:
            sel = sel[sel[k] == r[k]]
        prov_rows.append({
            "key": {k: r[k] for k in keys},
            "columns": [c for c in table.columns if c not in keys],
            "runs": [_run_record(Path(d)) | {"status": s}
                     for d, s in zip(sel["run_dir"], sel["status"], strict=True)],
        })
    provenance.write_json_atomic(paths["prov"], {
        "table": str(paths["csv"]), "experiment": experiment, "scale": scale, "task": task,
        "keys": keys, "per_seed_file": str(paths["runs"]),
        "protocol": "mean ± std (ddof=1) over runs with status 'completed'; density models are "
                    "scored at their best-validation checkpoint (AFFJORD/FFJORD protocol)",
        "rows": prov_rows,
    })
    return list(paths.values())
