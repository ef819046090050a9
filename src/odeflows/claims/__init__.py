"""Verdicts on the papers' claims, from the per-seed tables only.

A claim is a registered entry: its number and text, the experiments whose tables it reads, and
its rule — written once, before any numbers, the same at every scale — implemented by a check
that returns (verdict, evidence lines). Verdicts: "reproduced", "not reproduced", or
"inconclusive" (with the reason, e.g. too few seeds, an effect below noise, or training far
shorter than the paper's). The claims report runs every registered claim; the built-in ones live
in this package's modules (one per paper), a user's module can register more.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from odeflows.registry import Registry

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
Verdict = tuple[str, list[str]]


@dataclass
class Evidence:
    """What checks read: the per-seed tables of this scale (``<experiment>_runs.csv``), the
    papers' training lengths and how datasets that stand in for the papers' are labelled."""

    tables: dict[str, pd.DataFrame]
    scale: str = ""
    substitutes: Mapping[str, str] = field(default_factory=dict)
    paper_training: Mapping[str, dict[str, Any]] = field(default_factory=dict)

    def get(self, experiment: str) -> pd.DataFrame | None:
        return self.tables.get(experiment)

    def dataset_label(self, ds: str) -> str:
        return f"{ds} ({self.substitutes[ds]})" if ds in self.substitutes else ds

    def paper_length(self, experiment: str, unit: str) -> int | None:
        """The paper's training length of ``experiment`` in ``unit`` (epochs / iterations)."""
        value = self.paper_training.get(experiment, {}).get(unit)
        return None if value is None else int(value)

    def short(self, experiment: str, ok: pd.DataFrame) -> str | None:
        """A reason to call a verdict inconclusive because training was under a quarter of the
        paper's, or None."""
        epochs, paper = epochs_run(ok), self.paper_length(experiment, "epochs")
        if epochs is not None and paper and epochs < 0.25 * paper:
            return f"trained {epochs} of the paper's {paper} epochs"
        return None


@dataclass(frozen=True)
class Claim:
    number: int
    text: str
    experiments: tuple[str, ...]
    rule: str
    check: Callable[[Evidence], Verdict]
    module: str = ""


@dataclass(frozen=True)
class Findings:
    """A report section that is not a verdict (a question no paper answers)."""

    key: str
    title: str
    intro: str
    experiments: tuple[str, ...]
    lines: Callable[[Evidence], list[str]]


CLAIMS: Registry[Claim] = Registry("claim", packages=("odeflows.claims",))
FINDINGS: Registry[Findings] = Registry("findings", packages=("odeflows.claims",))


def claim(number: int, text: str, experiments: tuple[str, ...], rule: str
          ) -> Callable[[Callable[[Evidence], Verdict]], Callable[[Evidence], Verdict]]:
    """Register the decorated check as claim ``number``."""
    def wrap(fn: Callable[[Evidence], Verdict]) -> Callable[[Evidence], Verdict]:
        CLAIMS.add(str(number), Claim(number, text, experiments, rule, fn, fn.__module__))
        return fn
    return wrap


def findings(key: str, title: str, intro: str, experiments: tuple[str, ...]
             ) -> Callable[[Callable[[Evidence], list[str]]], Callable[[Evidence], list[str]]]:
    def wrap(fn: Callable[[Evidence], list[str]]) -> Callable[[Evidence], list[str]]:
        FINDINGS.add(key, Findings(key, title, intro, experiments, fn))
        return fn
    return wrap


def registered_claims() -> list[Claim]:
    return sorted(CLAIMS.all(), key=lambda c: c.number)


# -- helpers shared by the checks -----------------------------------------------------------------
def completed(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["status"] == "completed"]


def welch_t(a: np.ndarray, b: np.ndarray) -> float:
    """Welch's t statistic of mean(a) − mean(b)."""
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    return float((a.mean() - b.mean()) / se) if se > 0 else float("inf") * np.sign(
        a.mean() - b.mean())


def epochs_run(ok: pd.DataFrame) -> int | None:
    """Epochs actually trained (the fewest over the completed runs)."""
    if "epochs_trained" in ok and ok["epochs_trained"].notna().any():
        return int(pd.to_numeric(ok["epochs_trained"], errors="coerce").min())
    return None


def compare(a: np.ndarray, b: np.ndarray) -> str:
    sa = a.std(ddof=1) if len(a) > 1 else float("nan")
    sb = b.std(ddof=1) if len(b) > 1 else float("nan")
    return f"{a.mean():.4f} ± {sa:.4f} (n={len(a)}) vs {b.mean():.4f} ± {sb:.4f} (n={len(b)})"


def failed_seeds(runs: pd.DataFrame) -> list[str]:
    failed = runs[runs["status"] == "failed"].groupby("model").size()
    return ["failed seeds: " + ", ".join(f"{m} {n}" for m, n in failed.items())] \
        if len(failed) else []


def paired_claim(ev: Evidence, experiment: str, better: str, worse: str, column: str,
                 higher_is_better: bool, what: str) -> Verdict:
    """The rule of "model `better` beats `worse` on `column`" claims: Welch t per dataset;
    reproduced when every dataset favours `better` with t ≥ 2, not reproduced when any dataset
    favours `worse` with t ≥ 2, else inconclusive (also when training was under a quarter of the
    paper's, or with fewer than two seeds)."""
    runs = ev.get(experiment)
    if runs is None:
        return INCONCLUSIVE, [f"{experiment} was not run at this scale"]
    ok = completed(runs)
    lines, ts = [], []
    for ds, grp in ok.groupby("dataset"):
        a = pd.to_numeric(grp[grp["model"] == better][column], errors="coerce").dropna()
        b = pd.to_numeric(grp[grp["model"] == worse][column], errors="coerce").dropna()
        if a.empty or b.empty:
            continue
        a_, b_ = a.to_numpy(float), b.to_numpy(float)
        t = welch_t(a_, b_) if higher_is_better else welch_t(b_, a_)
        ts.append(t)
        lines.append(f"{ev.dataset_label(ds)}: {what} {better} vs {worse}: {compare(a_, b_)}; "
                     f"Welch t in favour of {better} = {t:.2f}")
    lines += failed_seeds(runs)
    if not ts:
        return INCONCLUSIVE, lines + [f"completed {better} and {worse} runs are needed"]
    if any(np.isnan(ts)):
        return INCONCLUSIVE, lines + ["at least two seeds per model are needed for a test"]
    short = ev.short(experiment, ok)
    if all(t >= 2 for t in ts):
        return REPRODUCED, lines + ([f"note: {short}"] if short else [])
    if any(t <= -2 for t in ts):
        if short:
            return INCONCLUSIVE, lines + [f"inconclusive at this scale: {short}; the opposite "
                                          "ordering here may not survive full training"]
        return NOT_REPRODUCED, lines
    return INCONCLUSIVE, lines + ["difference below two standard errors"
                                  + (f" (inconclusive at this scale: {short})" if short else "")]


# -- the report ------------------------------------------------------------------------------------
def load_tables(tables_dir: str | Path) -> dict[str, pd.DataFrame]:
    return {f.name.removesuffix("_runs.csv"): pd.read_csv(f)
            for f in Path(tables_dir).glob("*_runs.csv")}


def evidence(scale: str, tables_dir: str | Path, config_dir: str | Path = "config") -> Evidence:
    from odeflows.aggregate import paper_facts
    from odeflows.config import load_datasets

    datasets = load_datasets(config_dir) if (Path(config_dir) / "datasets.yaml").exists() else {}
    training = {t["experiment"]: t for t in paper_facts().get("training", [])}
    return Evidence(load_tables(tables_dir), scale,
                    {d: e["substitute_for"] for d, e in datasets.items() if "substitute_for" in e},
                    training)


def evaluate_claims(ev: Evidence) -> dict[int, dict[str, Any]]:
    result = {}
    for c in registered_claims():
        verdict, lines = c.check(ev)
        result[c.number] = {"claim": c.text, "verdict": verdict, "evidence": lines,
                            "rule": c.rule, "experiments": list(c.experiments)}
    return result


def write_claims(scale: str, tables_dir: str | Path, out: str | Path,
                 config_dir: str | Path = "config") -> dict[int, dict[str, Any]]:
    ev = evidence(scale, tables_dir, config_dir)
    result = evaluate_claims(ev)
    out = Path(out)
    lines = [f"# Claims at scale `{scale}`", "",
             "Verdicts computed from the per-seed tables in this directory's `tables/`; "
             "the numbers are ours, the claims are the papers'.", ""]
    if scale == "smoke":
        lines += ["**Smoke scale checks the plumbing only: models train for a few iterations, "
                  "so these verdicts are not evidence either way.**", ""]
    lines += ["| # | claim | verdict |", "|---|---|---|"]
    lines += [f"| {n} | {r['claim']} | **{r['verdict']}** |" for n, r in result.items()]
    for n, r in result.items():
        lines += ["", f"## Claim {n}: {r['verdict']}", "", r["claim"], ""]
        lines += [f"- {e}" for e in r["evidence"]]
    for f in sorted(FINDINGS.all(), key=lambda f: f.key):
        lines += ["", f"## {f.title}", "", f.intro, ""]
        lines += [f"- {e}" for e in f.lines(ev)]
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def write_metrics(tables_dir: str | Path, out: str | Path, claims: dict[int, dict]) -> dict:
    """A small nested JSON of headline numbers and claim verdicts (what `dvc metrics` reads):
    per experiment, dataset and model the headline columns its tasks declare."""
    from odeflows.aggregate import TableTask
    from odeflows.provenance import read_json
    from odeflows.tasks import get_task

    metrics: dict[str, Any] = {"claims": {str(n): r["verdict"] for n, r in claims.items()}}
    for side in sorted(Path(tables_dir).glob("*.provenance.json")):
        info = read_json(side)
        headlines = info.get("headlines") or TableTask(
            [get_task(t) for t in info.get("tasks", [])]).headlines
        exp = info["experiment"]
        table = pd.read_csv(info["table"]) if Path(info["table"]).exists() else pd.DataFrame()
        runs = pd.read_csv(info["per_seed_file"]) if Path(info["per_seed_file"]).exists() \
            else pd.DataFrame()
        for col in headlines:
            if f"{col}_mean" in table:
                for _, r in table.iterrows():
                    value = r[f"{col}_mean"]
                    node = metrics.setdefault(exp, {}).setdefault(r["dataset"], {})
                    node.setdefault(r["model"], {})[col] = None if pd.isna(value) \
                        else float(value)
            elif col in runs:  # per-run numbers (memory profiles): mean per model
                for model, grp in runs.groupby("model"):
                    metrics.setdefault(exp, {}).setdefault(model, {})[col] = float(
                        grp[col].mean())
    Path(out).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics
