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
    papers' training lengths, what the datasets are (what an offline subset stands in for, its
    resolution and bit depth) and what every configured scale runs (for the budget analysis)."""

    tables: dict[str, pd.DataFrame]
    scale: str = ""
    substitutes: Mapping[str, str] = field(default_factory=dict)
    paper_training: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    # dataset -> {"image_size": int | None, "bits": int | None}
    datasets: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    # scale -> experiment -> {"seeds", "epochs", "iterations", "datasets"}, scales in order
    scales: Mapping[str, Mapping[str, dict[str, Any]]] = field(default_factory=dict)

    def get(self, experiment: str) -> pd.DataFrame | None:
        return self.tables.get(experiment)

    def dataset_label(self, ds: str) -> str:
        return f"{ds} ({self.substitutes[ds]})" if ds in self.substitutes else ds

    def paper_length(self, experiment: str, unit: str) -> int | None:
        """The paper's training length of ``experiment`` in ``unit`` (epochs / iterations)."""
        value = self.paper_training.get(experiment, {}).get(unit)
        return None if value is None else int(value)

    def paper_solver(self, experiment: str) -> dict[str, Any]:
        """The paper's training solver of ``experiment`` (``method``, ``steps``), if stated."""
        return dict(self.paper_training.get(experiment, {}).get("solver") or {})

    def short(self, experiment: str, ok: pd.DataFrame) -> str | None:
        """A reason to call a verdict inconclusive because training was under a quarter of the
        paper's, or None."""
        epochs, paper = epochs_run(ok), self.paper_length(experiment, "epochs")
        if epochs is not None and paper and epochs < 0.25 * paper:
            return f"trained {epochs} of the paper's {paper} epochs"
        return None


@dataclass
class Need:
    """What a claim's rule needs to reach a verdict if the effect observed at this scale is the
    true one: seeds per model (for its t ≥ 2 test) and a training length (a quarter of the
    paper's, the rule's threshold for "trained long enough")."""

    experiment: str
    effects: list[str] = field(default_factory=list)  # observed effect ± s.e., per dataset
    seeds: int | None = None
    epochs: int | None = None
    iterations: int | None = None
    models: tuple[str, ...] = ()
    direction: str = ""  # the verdict the observed effect points to
    note: str = ""

    def settle(self, seeds: list[int | None], towards: list[bool]) -> None:
        """Seeds the rule needs (the most over the compared pairs; None when any pair cannot
        reach t ≥ 2) and the verdict every pair's effect points to."""
        self.seeds = None if any(n is None for n in seeds) else max(seeds)
        self.direction = REPRODUCED if all(towards) else NOT_REPRODUCED


@dataclass(frozen=True)
class Claim:
    number: int
    text: str
    experiments: tuple[str, ...]
    rule: str
    check: Callable[[Evidence], Verdict]
    module: str = ""
    # what the rule needs to decide at the observed effect (the budget analysis), if it can say
    needs: Callable[[Evidence], Need | None] | None = None
    # whether training length matters to it (a property of an estimator does not)
    about_training: bool = True


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


def claim(number: int, text: str, experiments: tuple[str, ...], rule: str,
          needs: Callable[[Evidence], Need | None] | None = None, about_training: bool = True
          ) -> Callable[[Callable[[Evidence], Verdict]], Callable[[Evidence], Verdict]]:
    """Register the decorated check as claim ``number`` (``needs``: its budget analysis)."""
    def wrap(fn: Callable[[Evidence], Verdict]) -> Callable[[Evidence], Verdict]:
        CLAIMS.add(str(number), Claim(number, text, experiments, rule, fn, fn.__module__,
                                      needs, about_training))
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


def seeds_for_t(a: np.ndarray, b: np.ndarray, t: float = 2.0) -> int | None:
    """Seeds per model at which Welch's t of mean(a) − mean(b) reaches ``t`` if the observed means
    and spreads hold (equal seeds): n = t²·(s_a² + s_b²)/Δ². None without two seeds each."""
    if len(a) < 2 or len(b) < 2:
        return None
    delta = float(a.mean() - b.mean())
    var = float(a.var(ddof=1) + b.var(ddof=1))
    if delta == 0:
        return None
    return max(2, math.ceil(t * t * var / delta ** 2))


def effect_line(label: str, a: np.ndarray, b: np.ndarray, what: str) -> str:
    """"<label>: <what> difference +x ± s.e." of mean(a) − mean(b)."""
    se = math.sqrt((a.var(ddof=1) / len(a) if len(a) > 1 else float("nan"))
                   + (b.var(ddof=1) / len(b) if len(b) > 1 else float("nan")))
    return f"{label}: {what} {a.mean() - b.mean():+.4g} ± {se:.2g} (s.e.)"


def paired_needs(ev: Evidence, experiment: str, better: str, worse: str, column: str,
                 higher_is_better: bool, what: str) -> Need | None:
    """What :func:`paired_claim`'s rule needs: t ≥ 2 on every dataset (seeds from the observed
    effect and spread, per dataset, the most any dataset needs) and, to call it not reproduced,
    at least a quarter of the paper's training."""
    runs = ev.get(experiment)
    if runs is None:
        return None
    ok = completed(runs)
    need = Need(experiment, models=(better, worse))
    seeds, towards = [], []
    for ds, grp in ok.groupby("dataset"):
        a = pd.to_numeric(grp[grp["model"] == better][column], errors="coerce").dropna()
        b = pd.to_numeric(grp[grp["model"] == worse][column], errors="coerce").dropna()
        if a.empty or b.empty:
            continue
        a_, b_ = (a.to_numpy(float), b.to_numpy(float)) if higher_is_better else (
            b.to_numpy(float), a.to_numpy(float))
        need.effects.append(effect_line(ev.dataset_label(ds), a_, b_,
                                        f"{what}, {better} better by"))
        seeds.append(seeds_for_t(a_, b_))
        towards.append(a_.mean() > b_.mean())
    if not need.effects:
        return None
    need.settle(seeds, towards)
    paper = ev.paper_length(experiment, "epochs")
    if ev.short(experiment, ok) and paper:
        need.epochs = math.ceil(0.25 * paper)
    return need


def trained(ok: pd.DataFrame) -> pd.DataFrame:
    """The runs that trained: baselines fitted in closed form have no training length."""
    if "baseline" not in ok:
        return ok
    return ok[~ok["baseline"].astype("boolean").fillna(False).astype(bool)]


def epochs_run(ok: pd.DataFrame) -> int | None:
    """Epochs actually trained (the fewest over the completed runs that trained)."""
    ok = trained(ok)
    if "epochs_trained" in ok and ok["epochs_trained"].notna().any():
        return int(pd.to_numeric(ok["epochs_trained"], errors="coerce").min())
    return None


# A density cannot put more than its whole mass on part of the plane; the 10 % allow for the
# evaluation grid's Riemann-sum error (converged runs measure 0.98-1.01 on it).
GRID_MASS_MAX = 1.1


def valid_densities(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The completed runs whose model is a density: a fixed-grid solver can learn a field whose
    integrated-trace log-likelihood is not the log of a density (it integrates to far more than
    1), and such a run's NLL is no evidence. Runs without a grid (not 2-D) are kept. Returns the
    valid runs and a line naming the excluded ones."""
    ok = completed(runs)
    if "grid_mass" not in ok:
        return ok, []
    mass = pd.to_numeric(ok["grid_mass"], errors="coerce")
    bad = ok[(mass.isna() & ok["grid_mass"].notna()) | (mass > GRID_MASS_MAX)]
    if bad.empty:
        return ok, []
    names = ", ".join(f"{r.model} {r.dataset} seed {r.seed} ({float(r.grid_mass):.3g})"
                      for r in bad.itertuples())
    return ok.drop(bad.index), [f"excluded, density integrates to more than {GRID_MASS_MAX} on "
                                f"the evaluation grid (not a density): {names}"]


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


def qualifier(ev: Evidence, c: Claim) -> str:
    """What a verdict was reached on, when it is not the paper's setting: stand-in datasets (with
    their resolution and bit depth) and training shorter than the paper's."""
    parts = []
    for exp in c.experiments:
        runs = ev.get(exp)
        if runs is None or runs.empty:
            continue
        ok = completed(runs)
        for ds in sorted(set(ok["dataset"])):
            info = ev.datasets.get(ds, {})
            if ds in ev.substitutes or info.get("bits", 8) < 8 or info.get("image_size"):
                size = info.get("image_size")
                shape = f"{size}×{size}" if size else info.get("native", "")
                bits = f"{info['bits']} bits" if info.get("bits") else ""
                detail = ", ".join(x for x in (shape, bits) if x)
                parts.append(f"{ds}" + (f" at {detail}" if detail else ""))
        if c.about_training:
            parts += _training_parts(ev, exp, ok)
        parts += _solver_parts(ev, exp, ok)
    return "on " + "; ".join(dict.fromkeys(parts)) if parts else ""


def _solver_parts(ev: Evidence, experiment: str, ok: pd.DataFrame) -> list[str]:
    """"RK4 with N of the paper's M steps" when a run trained on a coarser fixed grid than the
    paper's, or with another solver than the paper's."""
    paper = ev.paper_solver(experiment)
    if not paper or "solver_method" not in ok or ok["solver_method"].isna().all():
        return []
    ok = trained(ok)
    method = paper["method"]
    other = sorted(set(ok["solver_method"].dropna()) - {method})
    if other:
        return [f"trained with {', '.join(other)} (the paper: {method})"]
    steps = pd.to_numeric(ok["solver_steps"], errors="coerce").dropna() \
        if "solver_steps" in ok else pd.Series(dtype=float)
    if paper.get("steps") and len(steps) and steps.min() < paper["steps"]:
        return [f"{method.upper()} with {int(steps.min())} of the paper's {paper['steps']} steps"]
    return []


def _training_parts(ev: Evidence, experiment: str, ok: pd.DataFrame) -> list[str]:
    """"N of the paper's M epochs/iterations" for the shortest training below the paper's. Runs
    fitted in closed form (baselines) have no training length; where the paper gives both units
    (the primer: epochs for images, iterations for vectors), each dataset is measured in the one
    for its kind of data."""
    ok = trained(ok)
    epochs, its = ev.paper_length(experiment, "epochs"), ev.paper_length(experiment, "iterations")
    short: dict[str, tuple[int, int]] = {}
    for ds, rows in ok.groupby("dataset"):
        unit = "epochs" if its is None or (epochs is not None and _is_images(ev, ds)) \
            else "iterations"
        paper = epochs if unit == "epochs" else its
        if paper is None:
            continue
        done = epochs_run(rows) if unit == "epochs" else (
            int(pd.to_numeric(rows["iterations"], errors="coerce").min())
            if "iterations" in rows and rows["iterations"].notna().any() else None)
        if done is not None and done < paper and (unit not in short or done < short[unit][0]):
            short[unit] = (done, paper)
    return [f"{done} of the paper's {paper} {unit}" for unit, (done, paper) in short.items()]


def _runs_elsewhere(ev: Evidence, c: Claim) -> str:
    """For a claim whose experiments this scale does not run: the configured scales that do."""
    runs = []
    for scale, exps in ev.scales.items():
        for e in c.experiments:
            if e in exps:
                s = exps[e]
                length = (f", {s['epochs']} epochs" if s.get("epochs")
                          else f", {s['iterations']} iterations" if s.get("iterations") else "")
                seeds = f"{s['seeds']} seed" + ("s" if s["seeds"] != 1 else "")
                runs.append(f"`{scale}` ({e}: {seeds}{length} on "
                            f"{', '.join(s['datasets'])})")
    where = "; ".join(runs) if runs else "no configured scale"
    return f"not run at this scale (its experiment file declares 0 seeds here); run by: {where}"


def _is_images(ev: Evidence, dataset: str) -> bool:
    return ev.datasets.get(dataset, {}).get("data") == "images"


def budget(ev: Evidence, c: Claim) -> list[str]:
    """For a claim left inconclusive: the observed effect, the seeds and training its rule needs
    at that effect, what that costs at the step times measured here, and which configured scale
    provides it. The rule itself is the claim's, unchanged."""
    if all(ev.get(e) is None for e in c.experiments):
        return [_runs_elsewhere(ev, c)]
    need = c.needs(ev) if c.needs else None
    if need is None:
        return ["no budget estimate: the tables of this scale hold no effect to extrapolate from"]
    lines = list(need.effects)
    runs = ev.get(need.experiment)
    ok = completed(runs) if runs is not None else pd.DataFrame()
    have_seeds = int(ok.groupby(["dataset", "model"]).size().min()) if len(ok) else 0
    have_epochs = epochs_run(ok)
    seeds = need.seeds or max(have_seeds, 2)
    what = []
    if need.seeds:
        what.append(f"{need.seeds} seeds per model (this scale: {have_seeds})")
    elif have_seeds < 2:
        what.append("at least 2 seeds per model to measure the spread")
    if need.epochs:
        what.append(f"{need.epochs} epochs (this scale: {have_epochs})")
    if need.iterations:
        what.append(f"{need.iterations} iterations")
    towards = f" (it points to '{need.direction}')" if need.direction else ""
    lines.append(f"if the observed effect holds{towards}, the rule needs "
                 + (", ".join(what) or "more than seeds or training: the effect is below its "
                    "threshold") + (f"; {need.note}" if need.note else ""))
    if len(ok) and "train_wall_seconds" in ok:
        cells = ok[ok["model"].isin(need.models)] if need.models else ok
        per_run = float(pd.to_numeric(cells["train_wall_seconds"], errors="coerce").mean())
        scale_len = 1.0
        if need.epochs and have_epochs:
            scale_len = need.epochs / have_epochs
        elif need.iterations and "iterations" in cells:
            done = float(pd.to_numeric(cells["iterations"], errors="coerce").mean())
            scale_len = need.iterations / done if done else 1.0
        n_runs = seeds * max(1, len(set(cells["model"]))) * max(1, len(set(cells["dataset"])))
        hours = per_run * scale_len * n_runs / 3600
        device = str(cells["device"].dropna().iloc[0]) if "device" in cells and \
            cells["device"].notna().any() else "this machine"
        unit = "GPU" if device.startswith("cuda") else "CPU"
        lines.append(f"cost at this scale's measured step times: {n_runs} runs × "
                     f"{per_run * scale_len / 60:.1f} min ≈ {hours:.2g} {unit}-hours of "
                     f"training on {device} (at this scale's data and model sizes)")
    if not (need.seeds or need.epochs or need.iterations):
        return lines
    provided = None
    for name, exps in ev.scales.items():
        st = exps.get(need.experiment)
        if not st:
            continue
        if (st["seeds"] >= seeds and (not need.epochs or (st.get("epochs") or 0) >= need.epochs)
                and (not need.iterations or (st.get("iterations") or 0) >= need.iterations)):
            provided = (name, st)
            break
    if provided:
        name, st = provided
        length = f"{st['epochs']} epochs" if st.get("epochs") else f"{st.get('iterations')} " \
                                                                    "iterations"
        lines.append(f"provided by the `{name}` scale ({st['seeds']} seeds, {length}, on "
                     f"{', '.join(st['datasets'])})")
    else:
        lines.append("no configured scale provides it")
    return lines


def scale_settings(experiments: list[str], config_dir: str | Path
                   ) -> dict[str, dict[str, dict[str, Any]]]:
    """What every configured scale runs of these experiments: seeds, training length, data."""
    from odeflows.config import ConfigError, load_scales, plan

    out: dict[str, dict[str, dict[str, Any]]] = {}
    for scale in load_scales(config_dir):
        for exp in experiments:
            try:
                p = plan({"scale": scale, "experiments": [exp], "config_dir": str(config_dir)})
            except (ConfigError, ImportError):
                continue
            if not p.runs:
                continue
            cfgs = [p.configs[s] for s in p.runs]
            epochs = [c["train"].get("epochs") for c in cfgs if c["train"].get("epochs")]
            iters = [c["train"].get("iterations") for c in cfgs if c["train"].get("iterations")]
            out.setdefault(scale, {})[exp] = {
                "seeds": 1 + max(s.seed for s in p.runs),
                "epochs": min(epochs) if epochs else None,
                "iterations": min(iters) if iters else None,
                "datasets": sorted({s.dataset for s in p.runs})}
    return out


def evidence(scale: str, tables_dir: str | Path, config_dir: str | Path = "config",
             budgets: bool = True) -> Evidence:
    from odeflows.aggregate import paper_facts
    from odeflows.config import load_datasets
    from odeflows.data import get_generator

    datasets = load_datasets(config_dir) if (Path(config_dir) / "datasets.yaml").exists() else {}
    training = {t["experiment"]: t for t in paper_facts().get("training", [])}
    info = {}
    for name, entry in datasets.items():
        gen = get_generator(entry.get("generator", name))
        if gen.data == "images":
            native = f"{gen.shape[1]}×{gen.shape[2]}" if gen.shape else ""
            info[name] = {"data": gen.data, "bits": int(entry.get("bits", gen.bits or 8)),
                          "native": native,
                          "image_size": (entry.get("params") or {}).get("image_size")}
    tables = load_tables(tables_dir)
    # every experiment of the config, not only those with tables here: a claim whose experiment
    # this scale does not run still says which scale does
    from odeflows.config import experiment_ids

    ids = sorted(set(tables) | set(experiment_ids(config_dir))) \
        if (Path(config_dir) / "experiments").is_dir() else sorted(tables)
    scales = scale_settings(ids, config_dir) if budgets else {}
    return Evidence(tables, scale,
                    {d: e["substitute_for"] for d, e in datasets.items() if "substitute_for" in e},
                    training, info, scales)


def evaluate_claims(ev: Evidence) -> dict[int, dict[str, Any]]:
    result = {}
    for c in registered_claims():
        verdict, lines = c.check(ev)
        result[c.number] = {"claim": c.text, "verdict": verdict, "evidence": lines,
                            "rule": c.rule, "experiments": list(c.experiments),
                            "tested": qualifier(ev, c),
                            "budget": budget(ev, c) if verdict == INCONCLUSIVE else []}
    return result


VERDICT_COLORS = {REPRODUCED: "#1a7f37", NOT_REPRODUCED: "#cf222e", INCONCLUSIVE: "#9a6700"}


def _html_page(n: int, r: dict[str, Any], scale: str) -> str:
    """One claim's evidence as a small self-contained page (the HTML report shows it)."""
    from html import escape

    def items(lines: list[str]) -> str:
        return "<ul>" + "".join(f"<li>{escape(str(x))}</li>" for x in lines) + "</ul>"

    budget_html = (f"<h3>What would decide it</h3>{items(r['budget'])}" if r["budget"] else "")
    tested = f"<p><b>Tested</b> {escape(r['tested'])}.</p>" if r["tested"] else ""
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Claim {n}</title>"
            "<style>body{font-family:sans-serif;max-width:60em;margin:1em auto;"
            "line-height:1.45}li{margin:.3em 0}</style></head><body>"
            f"<h2>Claim {n} at scale <code>{escape(scale)}</code>: <span style='color:"
            f"{VERDICT_COLORS.get(r['verdict'], '#000')}'>{escape(r['verdict'])}</span></h2>"
            f"<p>{escape(r['claim'])}</p>{tested}"
            f"<p><b>Rule</b> (fixed before the numbers, the same at every scale): "
            f"{escape(r['rule'])}.</p><h3>Evidence</h3>{items(r['evidence'])}{budget_html}"
            f"<p>Tables read: {escape(', '.join(r['experiments']))}.</p></body></html>\n")


def _front_page(scale: str, result: dict[int, dict[str, Any]], findings_keys: list[str]) -> str:
    """The HTML report's first page (reStructuredText): the claims table, each row linking to
    its evidence page."""
    def cell(text: str) -> str:
        return " ".join(text.split()).replace("*", "\\*")

    lines = [f"Claims at scale ``{scale}``", "=" * (20 + len(scale)), "",
             "Verdicts computed by odeflows from the per-seed tables of this scale; the numbers "
             "are ours, the claims are the papers'. Each verdict applies its claim's rule, "
             "written before the numbers and the same at every scale; *inconclusive* pages say "
             "what would decide the claim. The tables (ours beside the papers' numbers) are "
             "under Tables_, the figures under Figures_.", ""]
    if scale == "smoke":
        lines += [".. warning:: Smoke scale checks the plumbing only: these verdicts are not "
                  "evidence either way.", ""]
    lines += [".. list-table::", "   :header-rows: 1", "   :widths: 4 50 30 16", "",
              "   * - #", "     - claim", "     - verdict", "     - evidence"]
    for n, r in result.items():
        tested = f" {cell(r['tested'])}" if r["tested"] else ""
        lines += [f"   * - {n}", f"     - {cell(r['claim'])}",
                  f"     - **{r['verdict']}**{tested}", f"     - claim_{n:02d}.html_"]
    return "\n".join(lines) + "\n"


def write_claims(scale: str, tables_dir: str | Path, out: str | Path,
                 config_dir: str | Path = "config", report_dir: str | Path | None = None
                 ) -> dict[int, dict[str, Any]]:
    ev = evidence(scale, tables_dir, config_dir)
    result = evaluate_claims(ev)
    if report_dir is not None:
        report = Path(report_dir)
        report.mkdir(parents=True, exist_ok=True)
        for n, r in result.items():
            (report / f"claim_{n:02d}.html").write_text(_html_page(n, r, scale))
        (report / "front.rst").write_text(_front_page(scale, result, []))
    out = Path(out)
    lines = [f"# Claims at scale `{scale}`", "",
             "Verdicts computed from the per-seed tables in this directory's `tables/`; "
             "the numbers are ours, the claims are the papers'.", ""]
    if scale == "smoke":
        lines += ["**Smoke scale checks the plumbing only: models train for a few iterations, "
                  "so these verdicts are not evidence either way.**", ""]
    lines += ["| # | claim | verdict |", "|---|---|---|"]
    lines += [f"| [{n}](#claim-{n}-{r['verdict'].replace(' ', '-')}) | {r['claim']} | "
              f"**{r['verdict']}**{' ' + r['tested'] if r['tested'] else ''} |"
              for n, r in result.items()]
    for n, r in result.items():
        lines += ["", f"## Claim {n}: {r['verdict']}", "", r["claim"], ""]
        if r["tested"]:
            lines += [f"Tested {r['tested']}.", ""]
        lines += [f"Rule (fixed before the numbers, the same at every scale): {r['rule']}.", ""]
        lines += [f"- {e}" for e in r["evidence"]]
        if r["budget"]:
            lines += ["", "What would decide it:", ""] + [f"- {b}" for b in r["budget"]]
    for f in sorted(FINDINGS.all(), key=lambda f: f.key):
        lines += ["", f"## {f.title}", "", f.intro, ""]
        lines += [f"- {e}" for e in f.lines(ev)]
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def write_metrics(tables_dir: str | Path, out_dir: str | Path, claims: dict[int, dict]
                  ) -> list[Path]:
    """What `dvc metrics show` reads, as rows a person can scan: one file per claim (its verdict
    and what it was tested on) and one per experiment (runs completed and failed, training
    hours, its headline result); `dvc metrics diff` then lists changed verdicts."""
    from odeflows.aggregate import TableTask
    from odeflows.provenance import read_json, write_json_atomic
    from odeflows.tasks import get_task

    out = Path(out_dir)
    written = []
    for n, r in claims.items():
        path = out / "claims" / f"claim_{int(n):02d}.json"
        write_json_atomic(path, {"verdict": r["verdict"], "tested on": r.get("tested") or
                                 "the paper's setting"})
        written.append(path)
    for side in sorted(Path(tables_dir).glob("*.provenance.json")):
        info = read_json(side)
        runs = pd.read_csv(info["per_seed_file"]) if Path(info["per_seed_file"]).exists() \
            else pd.DataFrame({"status": []})
        row: dict[str, Any] = {"runs ok": int((runs["status"] == "completed").sum()),
                               "runs failed": int((runs["status"] == "failed").sum())}
        if "train_wall_seconds" in runs:
            row["train hours"] = round(float(pd.to_numeric(
                runs["train_wall_seconds"], errors="coerce").sum()) / 3600, 4)
        headlines = info.get("headlines") or TableTask(
            [get_task(t) for t in info.get("tasks", [])]).headlines
        table = pd.read_csv(info["table"]) if Path(info["table"]).exists() else pd.DataFrame()
        if headlines and f"{headlines[0]}_mean" in table and "dataset" in table:
            col = f"{headlines[0]}_mean"
            lower = any(w in headlines[0] for w in ("loss", "bpd", "nfe"))
            parts = []
            for ds, grp in table.dropna(subset=[col]).groupby("dataset"):
                best = grp.loc[grp[col].idxmin() if lower else grp[col].idxmax()]
                parts.append(f"{ds}: {best['model']} {best[col]:.4g}")
            row[f"best {headlines[0]}"] = "; ".join(parts)
        path = out / "experiments" / f"{info['experiment']}.json"
        write_json_atomic(path, row)
        written.append(path)
    return written
