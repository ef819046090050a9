"""Claims as registered entries, the evidence they read, and the comparative rule they share.

A claim declares its number, statement and paper reference, the experiments whose per-seed tables
it reads, its rule (with the date it last changed and why), the share of the paper's optimiser
steps its verdict needs (``min_share``; None for a property that does not depend on training), and
how failed seeds enter it. Its check returns (verdict, evidence lines). Every comparison of two
models goes through :func:`compare_arms`, which asks :mod:`odeflows.claims.stats` for the interval
and the decision.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from odeflows.claims.stats import (
    ALPHA,
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    Interval,
    decide,
    failure_counts_differ,
    leaning,
    welch_interval,
)
from odeflows.registry import Registry

__all__ = ["Arms", "CALIBRATED", "CLAIMS", "Claim", "Comparison", "Evidence", "FINDINGS", "FIRST",
           "Findings", "GRID_MASS_MAX", "NOT_TESTED", "Need", "Protocol", "Result", "Revision",
           "Verdict", "arms_needs", "claim", "combine", "compare_arms", "completed", "describe",
           "epochs_run", "failed", "findings", "percent", "registered_claims", "seed_counts",
           "trained", "valid_densities"]

NOT_TESTED = "not tested"
Verdict = tuple[str, list[str]]


@dataclass(frozen=True)
class Protocol:
    """How an experiment's runs at this scale differ from the same runs at the paper's protocol
    (derived from the resolved configs): a one-line summary of every difference and the share of
    the paper's optimiser steps the shortest run trained."""

    summary: str = ""
    step_share: float | None = None
    short: str = ""  # the headline's form: substitutions, the kinds that differ, the share

    @property
    def at_paper(self) -> bool:
        return not self.summary


@dataclass
class Evidence:
    """What checks read: the per-seed tables of this scale (``<experiment>_runs.csv``), the
    papers' numbers and training lengths, what the datasets are, each experiment's protocol
    deviations, and what every configured scale runs (for the budget analysis)."""

    tables: dict[str, pd.DataFrame]
    scale: str = ""
    substitutes: Mapping[str, str] = field(default_factory=dict)
    paper_training: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    # dataset -> {"data", "image_size", "bits", "native", "n_test"}
    datasets: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    # scale -> experiment -> {"seeds", "epochs", "iterations", "datasets"}, scales in order
    scales: Mapping[str, Mapping[str, dict[str, Any]]] = field(default_factory=dict)
    # experiment -> how this scale's runs differ from the paper's protocol
    protocol: Mapping[str, Protocol] = field(default_factory=dict)
    # the papers' numbers: (experiment, dataset, model, metric) -> value
    paper_numbers: Mapping[tuple[str, str, str, str], float] = field(default_factory=dict)
    verdicts: bool = True  # False: a wiring-check scale gives none

    def get(self, experiment: str) -> pd.DataFrame | None:
        return self.tables.get(experiment)

    def dataset_label(self, ds: str) -> str:
        return f"{ds} ({self.substitutes[ds]})" if ds in self.substitutes else ds

    def paper_length(self, experiment: str, unit: str) -> int | None:
        """The paper's training length of ``experiment`` in ``unit`` (epochs / iterations)."""
        value = self.paper_training.get(experiment, {}).get(unit)
        return None if value is None else int(value)

    def paper_value(self, experiment: str, dataset: str, model: str, metric: str
                    ) -> float | None:
        return self.paper_numbers.get((experiment, dataset, model, metric))


@dataclass(frozen=True)
class Revision:
    date: str
    why: str


@dataclass(frozen=True)
class Claim:
    number: int
    statement: str  # what the paper claims, in one sentence without its reference
    paper: str  # where the paper says it ("ANODE Table 1"); "" for a question of our own
    experiments: tuple[str, ...]
    rule: str
    check: Callable[[Evidence], Verdict]
    module: str = ""
    # what the rule needs to decide (the budget analysis), if it can say
    needs: Callable[[Evidence], Need | None] | None = None
    # the share of the paper's optimiser steps a verdict needs, in both directions; None for a
    # property that training length cannot change (an estimator's bias, memory per solver step)
    min_share: float | None = 0.25
    failures: str = ("failed seeds are counted per model; arms that lost different numbers of "
                     "seeds make a comparison inconclusive (the survivors are a selection)")
    history: tuple[Revision, ...] = ()

    @property
    def text(self) -> str:
        """The claim as the reports print it: the statement and its reference."""
        statement = self.statement.rstrip(".")
        return f"{statement} ({self.paper})." if self.paper else f"{statement}."


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


def claim(number: int, statement: str, paper: str, experiments: tuple[str, ...], rule: str, *,
          history: tuple[Revision, ...], needs: Callable[[Evidence], Need | None] | None = None,
          min_share: float | None = 0.25, failures: str | None = None
          ) -> Callable[[Callable[[Evidence], Verdict]], Callable[[Evidence], Verdict]]:
    """Register the decorated check as claim ``number``: ``statement`` is the paper's claim in
    one sentence, ``paper`` where the paper makes it (section, table or figure)."""
    def wrap(fn: Callable[[Evidence], Verdict]) -> Callable[[Evidence], Verdict]:
        extra = {"failures": failures} if failures else {}
        CLAIMS.add(str(number), Claim(number, statement, paper, experiments, rule, fn,
                                      fn.__module__, needs, min_share, history=history, **extra))
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


def failed(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["status"] != "completed"]


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


def seed_counts(runs: pd.DataFrame) -> list[str]:
    """One line: per model, completed of all seeds, so that no failed seed goes unseen."""
    done = (runs["status"] == "completed").groupby(runs["model"], sort=False).agg(["sum", "size"])
    parts = [f"{m} {int(r['sum'])}/{int(r['size'])}" for m, r in done.iterrows()]
    lost = int(done["size"].sum() - done["sum"].sum())
    return [("seeds completed (failed seeds count: none dropped silently): " if lost else
             "seeds completed: ") + ", ".join(parts)]


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


def percent(share: float) -> str:
    """A share as a percentage with two significant digits below 10 % (0.093 %, 1.9 %, 25 %)."""
    pct = 100 * share
    return f"{pct:.2g} %" if pct < 10 else f"{pct:.0f} %"


def describe(x: np.ndarray) -> str:
    sd = f"{x.std(ddof=1):.4g}" if len(x) > 1 else "n/a"
    return f"{x.mean():.4g} ± {sd} (n={len(x)})" if len(x) else "no values"


# -- the comparative rule -------------------------------------------------------------------
@dataclass(frozen=True)
class Arms:
    """A two-model comparison a claim makes: ``better`` beats ``worse`` on ``column``.

    ``log``: compare logarithms (a ratio such as a speed-up or a norm). ``margin``: the effect is
    shifted by it (non-inferiority: "within ``margin`` of", in the column's units).
    ``paper_metric``: the metric name of the papers' numbers whose difference is the paper's
    effect on a dataset the paper ran; the smallest effect of interest is ``sesoi_fraction`` of
    it (0 where the paper's size does not carry over: substitute data, no number)."""

    experiment: str
    better: str
    worse: str
    column: str
    higher_is_better: bool
    what: str
    log: bool = False
    margin: float = 0.0
    paper_metric: str | None = None
    paper_higher_is_better: bool | None = None
    sesoi_fraction: float = 0.5
    valid_only: bool = False  # count only runs whose 2-D density integrates to one
    # a proportion measured on a fixed test set, in [0, proportion_scale] (100 for percent):
    # its binomial noise floor applies to the budget
    proportion_scale: float | None = None
    sesoi: float | None = None  # a declared smallest effect of interest (overrides the paper's)
    family: int = 1  # comparisons the claim makes beside this one (Bonferroni)
    # failures are the claim's own evidence: compare the survivors without the selection rule
    failures_are_evidence: bool = False


@dataclass(frozen=True)
class Comparison:
    dataset: str
    arms: Arms
    interval: Interval
    paper_effect: float | None
    sesoi: float
    verdict: str
    failed: dict[str, int]
    n_test: int | None = None
    means: tuple[float, float] = (math.nan, math.nan)  # (better, worse), in the column's units
    spreads: tuple[float, float] = (math.nan, math.nan)  # their standard deviations


@dataclass
class Result:
    verdict: str
    lines: list[str]
    comparisons: list[Comparison]


def _arm_values(ok: pd.DataFrame, column: str) -> dict[tuple[str, str], np.ndarray]:
    """The finite values of ``column`` per (dataset, model)."""
    if column not in ok or ok.empty:
        return {}
    num = pd.to_numeric(ok[column], errors="coerce").to_numpy(float)
    keys = list(zip(ok["dataset"], ok["model"], strict=True))
    out: dict[tuple[str, str], list[float]] = {}
    for key, v in zip(keys, num, strict=True):
        if np.isfinite(v):
            out.setdefault(key, []).append(v)
    return {k: np.asarray(v) for k, v in out.items()}


def _test_size(ok: pd.DataFrame, dataset: str) -> int | None:
    """The test examples each run was scored on, as evaluation recorded them."""
    if "test_n" not in ok:
        return None
    n = pd.to_numeric(ok[ok["dataset"] == dataset]["test_n"], errors="coerce").dropna()
    return int(n.min()) if len(n) else None


def _paper_effect(ev: Evidence, arms: Arms, dataset: str) -> float | None:
    """The paper's effect on ``dataset`` in the orientation of the comparison, if it ran it."""
    if not arms.paper_metric:
        return None
    b = ev.paper_value(arms.experiment, dataset, arms.better, arms.paper_metric)
    w = ev.paper_value(arms.experiment, dataset, arms.worse, arms.paper_metric)
    if b is None or w is None:
        return None
    higher = arms.higher_is_better if arms.paper_higher_is_better is None \
        else arms.paper_higher_is_better
    if arms.log:
        if b <= 0 or w <= 0:
            return None
        b, w = math.log(b), math.log(w)
    return (b - w) if higher else (w - b)


def compare_arms(ev: Evidence, arms: Arms) -> Result:
    """The rule of "``better`` beats ``worse``" claims, per dataset: the interval of the effect
    in the paper's direction at ``1 − α/k`` for ``k`` datasets; reproduced when every dataset's
    interval lies above zero, not reproduced when any lies below the smallest effect of interest
    (:func:`odeflows.claims.stats.decide`), else inconclusive. A dataset whose arms lost
    different numbers of seeds is undecided."""
    runs = ev.get(arms.experiment)
    if runs is None:
        return Result(INCONCLUSIVE, [f"{arms.experiment} was not run at this scale"], [])
    runs = runs[runs["model"].isin([arms.better, arms.worse])]
    ok, lines = valid_densities(runs) if arms.valid_only else (completed(runs), [])
    values = _arm_values(ok, arms.column)
    datasets = sorted({ds for ds, _ in values
                       if (ds, arms.better) in values and (ds, arms.worse) in values})
    if not datasets:
        return Result(INCONCLUSIVE, lines + [f"completed {arms.better} and {arms.worse} runs "
                                             "are needed"], [])
    confidence = 1 - ALPHA / (len(datasets) * arms.family)
    bad = runs[runs["status"] != "completed"]
    failures = {k: len(g) for k, g in bad.groupby(["dataset", "model"])} if len(bad) else {}
    comps = []
    for ds in datasets:
        a, b = values[(ds, arms.better)], values[(ds, arms.worse)]
        ta, tb = (np.log(a), np.log(b)) if arms.log else (a, b)
        iv = welch_interval(ta, tb, confidence) if arms.higher_is_better \
            else welch_interval(tb, ta, confidence)
        if arms.margin:
            iv = replace(iv, estimate=iv.estimate + arms.margin, low=iv.low + arms.margin,
                         high=iv.high + arms.margin)
        paper = None if ds in ev.substitutes else _paper_effect(ev, arms, ds)
        sesoi = arms.sesoi if arms.sesoi is not None else (
            arms.sesoi_fraction * paper if paper and paper > 0 else 0.0)
        lost = {m: failures.get((ds, m), 0) for m in (arms.better, arms.worse)}
        verdict = decide(iv, sesoi)
        if verdict != INCONCLUSIVE and failure_counts_differ(lost) \
                and not arms.failures_are_evidence:
            verdict = INCONCLUSIVE
        comps.append(Comparison(ds, arms, iv, paper, sesoi, verdict, lost,
                                _test_size(ok, ds) or ev.datasets.get(ds, {}).get("n_test"),
                                (float(a.mean()), float(b.mean())),
                                (float(a.std(ddof=1)) if len(a) > 1 else math.nan,
                                 float(b.std(ddof=1)) if len(b) > 1 else math.nan)))
        lines.append(_line(ev, comps[-1], a, b))
    verdicts = [c.verdict for c in comps]
    if all(v == REPRODUCED for v in verdicts):
        verdict = REPRODUCED
    elif any(v == NOT_REPRODUCED for v in verdicts):
        verdict = NOT_REPRODUCED
    else:
        verdict = INCONCLUSIVE
    return Result(verdict, lines, comps)


def _line(ev: Evidence, c: Comparison, a: np.ndarray, b: np.ndarray) -> str:
    arms, iv = c.arms, c.interval
    unit = "log ratio" if arms.log else arms.what
    margin = f" + margin {arms.margin:g}" if arms.margin else ""
    direction = f"{arms.better} {'higher' if arms.higher_is_better else 'lower'}"
    text = (f"{ev.dataset_label(c.dataset)}: {arms.what} {arms.better} {describe(a)} vs "
            f"{arms.worse} {describe(b)}; effect ({direction}{margin}, {unit}) {iv.text()}, "
            f"Welch df {iv.df:.3g}")
    if c.paper_effect is not None:
        inside = iv.defined and iv.low <= c.paper_effect <= iv.high
        text += (f"; the paper's effect {c.paper_effect:+.3g} is "
                 f"{'inside' if inside else 'outside'} the interval; smallest effect of "
                 f"interest {c.sesoi:+.3g}")
        if iv.defined and 0 < iv.low and iv.high < c.sesoi:
            text += " (an effect in the paper's direction, too small to be the paper's)"
    if any(c.failed.values()):
        text += "; failed seeds " + ", ".join(f"{m} {n}" for m, n in c.failed.items())
        if failure_counts_differ(c.failed) and not arms.failures_are_evidence:
            text += " (different numbers of failures: undecided, the survivors are a selection)"
    verdict = c.verdict if c.verdict != INCONCLUSIVE else f"undecided, leans {leaning(iv)}"
    return f"{text} → {verdict}"


def arms_needs(*arms: Arms) -> Callable[[Evidence], Need | None]:
    """The budget analysis of a claim that compares these arms: the comparisons they make."""
    def needs(ev: Evidence) -> Need | None:
        comps = [c for a in arms for c in compare_arms(ev, a).comparisons]
        models = tuple(dict.fromkeys(m for a in arms for m in (a.better, a.worse)))
        return Need(arms[0].experiment, comps, models=models) if comps else None
    return needs


def combine(*verdicts: str) -> str:
    """A claim made of parts: reproduced when every part is, not reproduced when any part is."""
    if verdicts and all(v == REPRODUCED for v in verdicts):
        return REPRODUCED
    if any(v == NOT_REPRODUCED for v in verdicts):
        return NOT_REPRODUCED
    return INCONCLUSIVE


@dataclass
class Need:
    """What a claim's rule needs to decide: the comparisons it rests on (for power budgets), or
    free-form effect lines, and training lengths."""

    experiment: str
    comparisons: list[Comparison] = field(default_factory=list)
    effects: list[str] = field(default_factory=list)
    seeds: int | None = None
    models: tuple[str, ...] = ()
    note: str = ""


# the rules' history, one place: every claim starts with FIRST
FIRST = Revision("2026-11-30", "written with the claim, before its numbers")
CALIBRATED = Revision(
    "2026-12-06", "the fixed 'Welch t ≥ 2' threshold decided 13-19 % of no-effect tables at 2-3 "
    "seeds: comparisons now use the calibrated intervals of odeflows.claims.stats, failed seeds "
    "count, and the share-of-protocol gate applies to both decisive verdicts")
