"""The tables of an experiment, built from its run directories: a long per-run file, a
per-experiment summary (mean ± std over successful seeds, failed seeds counted, paper numbers
beside ours) and a provenance sidecar that names, for every row of the summary, the runs, record
fields and code versions behind it. Which columns a table has comes from the tasks of its runs."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from odeflows import provenance, versions
from odeflows.config import Plan, load_experiment, plan
from odeflows.rundir import RunDir
from odeflows.tasks import Task, get_task

__all__ = ["TableTask", "epoch_stats", "experiment_tasks", "format_cell", "paper_facts",
           "reference_numbers", "run_provenance", "run_rows", "solver_columns", "summarise",
           "to_markdown", "training_curves", "write_tables"]

PROTOCOL = ("mean ± std (ddof=1) over runs with status 'completed'; density models are scored at "
            "their best-validation checkpoint (AFFJORD/FFJORD protocol)")


# -- paper data ---------------------------------------------------------------------------------
@cache
def _paper_file(path: str | None) -> dict[str, Any]:
    if path is None:
        text = resources.files("odeflows").joinpath("reference", "paper_numbers.yaml").read_text()
    else:
        text = Path(path).read_text()
    return yaml.safe_load(text)


def reference_numbers(path: str | Path | None = None) -> pd.DataFrame:
    """The papers' numbers (experiment, dataset, model, metric, value[, std], source)."""
    return pd.DataFrame(_paper_file(None if path is None else str(path))["numbers"])


def paper_facts(path: str | Path | None = None) -> dict[str, Any]:
    """Facts of the papers' protocols (training lengths, notes on parameter counts)."""
    data = _paper_file(None if path is None else str(path))
    return {k: v for k, v in data.items() if k != "numbers"}


# -- per-seed rows --------------------------------------------------------------------------------
def epoch_stats(metrics: pd.DataFrame | None) -> dict[str, float | None]:
    """Per-run statistics of the training log: mean forward NFE per iteration in the first and
    last epoch (ANODE Fig. 8), mean forward+backward NFE per iteration (AFFJORD Fig. 9), and the
    last epoch's mean regulariser integrals (RNODE Fig. 5)."""
    out: dict[str, float | None] = dict.fromkeys(
        ("nfe_first_epoch", "nfe_last_epoch", "nfe_train_mean", "jacobian_last_epoch",
         "kinetic_last_epoch"))
    if metrics is None or metrics.empty or "nfe_forward" not in metrics:
        return out
    per_epoch = metrics.groupby("epoch")
    nfe = per_epoch["nfe_forward"].mean()
    if not nfe.any():  # a model without counted networks (ResNet)
        return out
    out["nfe_first_epoch"], out["nfe_last_epoch"] = float(nfe.iloc[0]), float(nfe.iloc[-1])
    out["nfe_train_mean"] = float((metrics["nfe_forward"] + metrics["nfe_backward"]).mean())
    for col in ("jacobian", "kinetic"):
        if col in metrics and metrics[col].notna().any():
            out[f"{col}_last_epoch"] = float(per_epoch[col].mean().iloc[-1])
    return out


def run_provenance(run: RunDir, hash_files: bool = True) -> dict[str, Any]:
    """What the provenance sidecar records of one run."""
    rec = run.record()
    ev = run.evaluation() or {}
    return {
        "run_dir": str(run.path),
        "seed": rec.get("seed"),
        "config_hash": rec.get("config_hash"),
        "code_version": rec.get("code_version"),
        "eval_code_version": ev.get("code_version"),
        "git_commit": rec.get("git", {}).get("commit"),
        "git_dirty": rec.get("git", {}).get("dirty"),
        "data_sha256": rec.get("data", {}).get("sha256"),
        "device": rec.get("host", {}).get("device"),
        "packages": rec.get("packages", {}),
        "file_md5": run.file_hashes() if hash_files else {},
    }


def run_rows(run_dirs: Iterable[str | Path], tasks: Mapping[str, Task] | None = None
             ) -> pd.DataFrame:
    """The per-seed table of the given run directories, read from their eval.json, metrics.csv
    and record.json only. ``tasks`` maps run directories to their task (default: from each
    run's config.json)."""
    rows = []
    for path in run_dirs:
        run = RunDir(path)
        experiment, dataset, model, seed = run.spec_parts
        ev = run.evaluation() or {"status": "missing"}
        cfg = run.config() or {}
        row: dict[str, Any] = {"experiment": experiment, "dataset": dataset, "model": model,
                               "seed": seed, "run_dir": str(run.path),
                               "status": ev.get("status"), "reason": ev.get("reason"),
                               # the registered model a variant runs as (its family)
                               "base_model": cfg.get("model", model)}
        for key, value in ev.items():
            if isinstance(value, (int, float, str, type(None))) and key not in row:
                row["eval_code_version" if key == "code_version" else key] = value
        task = (tasks or {}).get(str(path)) or (get_task(cfg["task"]) if cfg else None)
        if task is not None:
            row.update(task.run_columns(ev))
        row["baseline"] = _is_baseline(run)
        row.update(solver_columns(cfg))
        row.update(epoch_stats(run.metrics()))
        if isinstance(row.get("train_wall_seconds"), (int, float)):
            row["train_hours"] = row["train_wall_seconds"] / 3600
        if isinstance(row.get("test_accuracy"), (int, float)):
            row["test_accuracy_pct"] = 100 * row["test_accuracy"]
        prov = run_provenance(run, hash_files=False)  # file hashes go to the sidecar only
        row.update({k: prov[k] for k in ("config_hash", "code_version", "git_commit",
                                         "git_dirty", "data_sha256", "device")})
        rows.append(row)
    return pd.DataFrame(rows)


def solver_columns(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The training solver of a run (method, and the step count of a fixed-grid one): claims
    name a solver coarser than the paper's as a substitute."""
    solver = cfg.get("solver") or {}
    if not solver.get("method"):
        return {}
    return {"solver_method": solver["method"], "solver_steps": solver.get("steps")}


def _is_baseline(run: RunDir) -> bool:
    """Whether the run's model entry declares itself a baseline (tables and claims flag it)."""
    from odeflows.models import MODELS

    cfg = run.config()
    if not cfg or cfg["model"] not in MODELS:
        return False
    kind = cfg.get("data", {}).get("kind")
    return kind in MODELS.variants(cfg["model"]) and \
        "baseline" in MODELS.get(cfg["model"], kind).traits


# -- summary table --------------------------------------------------------------------------------
def format_cell(mean: float | None, std: float | None, n: int, integer: bool = False) -> str:
    if n == 0 or mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "x"
    if integer:
        return f"{mean:.0f}"
    scale = max(abs(mean), 1e-12)
    digits = 4 if scale < 10 else (2 if scale < 1000 else 0)
    if n == 1 or std is None or math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def summarise(runs: pd.DataFrame, metrics: Sequence[str], ref: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and count over completed seeds per (dataset, model), with paper numbers."""
    metrics = [m for m in metrics if m in runs.columns]
    out = []
    for (dataset, model), grp in runs.groupby(["dataset", "model"], sort=False):
        ok = grp[grp["status"] == "completed"]
        row: dict[str, Any] = {"dataset": dataset, "model": model, "seeds_ok": len(ok),
                               "seeds_failed": int((grp["status"] == "failed").sum()),
                               "seeds_missing": int((grp["status"] == "missing").sum())}
        if "base_model" in grp:
            row["base_model"] = grp["base_model"].iloc[0]
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


def to_markdown(table: pd.DataFrame, metrics: Sequence[str], labels: Mapping[str, str],
                title: str) -> str:
    metrics = [m for m in metrics if f"{m}_mean" in table.columns]
    paper_cols = sorted(c for c in table.columns if c.startswith("paper_")
                        and not c.endswith("_source") and not c.endswith("_std"))
    lines = [f"# {title}", "",
             "**ours**: mean ± std over successful seeds (ok / failed seeds; a row with no "
             "successful seed shows x). **paper**: the papers' own numbers (reference data, "
             "sources below), never produced by this workflow.", ""]
    # a variant's family is shown where an experiment has variants (e.g. size ladders)
    family = "base_model" in table and bool((table["base_model"] != table["model"]).any())
    view: dict[str, list[str]] = {"dataset": [], "model": [], **({"family": []} if family
                                                                   else {}),
                                  "seeds ok/failed": []}
    view.update({f"ours: {labels.get(m, m)}": [] for m in metrics})
    view.update({f"paper: {c.removeprefix('paper_')}": [] for c in paper_cols})
    sources = set()
    for _, r in table.iterrows():
        view["dataset"].append(r["dataset"])
        view["model"].append(r["model"])
        if family:
            view["family"].append(r["base_model"])
        view["seeds ok/failed"].append(f"{r['seeds_ok']}/{r['seeds_failed']}")
        for m in metrics:
            n = int(r[f"{m}_n"])
            # "–": not applicable (e.g. NFE of a ResNet); "x": no successful seed
            view[f"ours: {labels.get(m, m)}"].append(
                "–" if n == 0 and r["seeds_ok"] > 0 else
                format_cell(r[f"{m}_mean"], r[f"{m}_std"], n, integer=m == "num_parameters"))
        for c in paper_cols:
            v = r.get(c)
            missing = v is None or (isinstance(v, float) and math.isnan(v))
            view[f"paper: {c.removeprefix('paper_')}"].append("" if missing else f"{v:g}")
            src = r.get(f"{c}_source")
            if isinstance(src, str):
                sources.add(f"{c.removeprefix('paper_')}: {src}")
    text = "\n".join(lines) + "\n" + pd.DataFrame(view).to_markdown(
        index=False, tablefmt="pipe", disable_numparse=True) + "\n"
    if sources:
        text += "\nSources of paper numbers:\n" + "".join(f"- {s}\n" for s in sorted(sources))
    return text


def training_curves(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean training and validation loss per iteration over completed seeds, one column per
    (dataset, model) series — the file ``dvc plots`` draws."""
    frames = []
    for (dataset, model), grp in runs[runs["status"] == "completed"].groupby(["dataset", "model"]):
        logs = [m[["iteration", "loss", "val_loss"]] for d in grp["run_dir"]
                if (m := RunDir(d).metrics()) is not None]
        if not logs:
            continue
        mean = pd.concat(logs).groupby("iteration").mean()
        mean.columns = [f"{dataset}/{model}/{c}" for c in mean.columns]
        frames.append(mean)
    return pd.concat(frames, axis=1).reset_index() if frames else pd.DataFrame({"iteration": []})


# -- one experiment -------------------------------------------------------------------------------
class TableTask(Task):
    """The tasks of an experiment's runs seen as one table: the union of their columns (an
    experiment over toy and image data reports nats and bits/dim side by side), then the extra
    ``columns`` the experiment names (column → label)."""

    def __init__(self, tasks: Sequence[Task], columns: Mapping[str, str] | None = None):
        self.parts = list(dict.fromkeys(tasks))
        columns = dict(columns or {})
        self.metrics = tuple(dict.fromkeys([*(m for t in self.parts for m in t.metrics),
                                            *columns]))
        labels: dict[str, list[str]] = {}
        for t in self.parts:
            for m, label in t.labels.items():
                labels.setdefault(m, [])
                if label not in labels[m]:
                    labels[m].append(label)
        self.labels = {**{m: " / ".join(v) for m, v in labels.items()}, **columns}
        self.headlines = tuple(dict.fromkeys(h for t in self.parts for h in t.headlines))
        self.table_keys = self.parts[0].table_keys
        self.name = "+".join(t.name for t in self.parts)
        self.own = self.parts[0] if len(self.parts) == 1 and not columns else None
        if columns and self.table_keys != Task.table_keys:
            raise ValueError(f"extra table columns need a (dataset, model) table; tasks "
                             f"{self.name} tabulate by {', '.join(self.table_keys)}")

    def summarise(self, runs: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
        return (self.own or super()).summarise(runs, reference)

    def markdown(self, table: pd.DataFrame, title: str) -> str:
        return (self.own or super()).markdown(table, title)

    def curves(self, runs: pd.DataFrame) -> pd.DataFrame:
        return (self.own or super()).curves(runs)


def experiment_tasks(p: Plan, experiment: str, columns: Mapping[str, str] | None = None
                     ) -> tuple[TableTask, dict[str, Task]]:
    """The experiment's table task (with its extra ``columns``) and each run directory's
    task."""
    by_run = {p.configs[s]["task"] for s in p.runs_of(experiment)}
    tasks = [get_task(n) for n in sorted(by_run)]
    if len({t.table_keys for t in tasks}) > 1:
        raise ValueError(f"experiment {experiment} mixes tasks with different tables: "
                         f"{', '.join(t.name for t in tasks)}")
    runs = {s.path: get_task(p.configs[s]["task"]) for s in p.runs_of(experiment)}
    return TableTask(tasks, columns), runs


def write_tables(scale: str, experiment: str, out_dir: str | Path,
                 config_dir: str | Path = "config", reference: str | Path | None = None,
                 modules: Sequence[str] = ()) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    exp = load_experiment(experiment, config_dir)
    p = plan({"scale": scale, "experiments": [experiment], "config_dir": str(config_dir),
              "modules": list(modules)})
    task, run_tasks = experiment_tasks(p, experiment, exp.get("columns"))
    runs = run_rows([s.path for s in p.runs_of(experiment)], run_tasks)
    table = task.summarise(runs, reference_numbers(reference))
    paths = {"csv": out_dir / f"{experiment}.csv", "md": out_dir / f"{experiment}.md",
             "runs": out_dir / f"{experiment}_runs.csv",
             "prov": out_dir / f"{experiment}.provenance.json",
             "curves": out_dir / f"{experiment}_curves.csv"}
    runs.to_csv(paths["runs"], index=False)
    task.curves(runs).to_csv(paths["curves"], index=False)
    table.to_csv(paths["csv"], index=False)
    paths["md"].write_text(task.markdown(table, f"{experiment} ({scale}): {exp['title']}"))
    keys = ["dataset", "model"] if "dataset" in task.table_keys else ["model"]
    prov_rows = []
    for _, r in (table.drop_duplicates(keys) if len(table) else table).iterrows():
        sel = runs
        for k in keys:
            sel = sel[sel[k] == r[k]]
        prov_rows.append({
            "key": {k: r[k] for k in keys},
            "columns": [c for c in table.columns if c not in keys],
            "runs": [run_provenance(RunDir(d)) | {"status": s}
                     for d, s in zip(sel["run_dir"], sel["status"], strict=True)],
        })
    provenance.write_json_atomic(paths["prov"], {
        "table": str(paths["csv"]), "experiment": experiment, "scale": scale,
        "tasks": [t.name for t in task.parts], "columns": dict(exp.get("columns") or {}),
        "keys": keys,
        "table_keys": list(task.table_keys), "per_seed_file": str(paths["runs"]),
        "headlines": list(exp.get("headlines") or task.headlines),
        "protocol": PROTOCOL,
        "modules": list(p.modules),
        "code_versions": {
            "train": sorted({r["code_version"] for r in runs.to_dict("records")
                             if isinstance(r.get("code_version"), str)}),
            "tables": versions.code_version("tables", plugins=p.modules)["version"],
        },
        "rows": prov_rows,
    })
    return list(paths.values())
