"""What would decide an inconclusive claim: seeds for 80 % power at the rule's α (for the paper's
effect and for the observed one, over its interval), the noise floor of a fixed test set that no
number of seeds lowers, the share of the paper's optimiser steps the rule needs, the hours that
costs at the step times measured here, and which configured scale provides it."""

from __future__ import annotations

import math

import pandas as pd

from odeflows.claims.core import Claim, Comparison, Evidence, completed, percent
from odeflows.claims.stats import POWER, seeds_for_power


def _seeds(n: int | None) -> str:
    return f"{n}" if n is not None else "no number of seeds (no effect in the paper's direction)"


def power_lines(c: Comparison, have: int) -> tuple[list[str], int | None]:
    """Seeds per model for 80 % power, for the paper's effect and the observed one."""
    iv, what = c.interval, c.arms.what
    label = f"{c.dataset} ({what}{', log scale' if c.arms.log else ''})"
    if not iv.defined:
        return [f"{label}: at least 2 seeds per model are needed to measure the spread "
                f"(this scale: {min(iv.n_a, iv.n_b)})"], None
    obs = seeds_for_power(iv.estimate, iv.sd_a, iv.sd_b, POWER, iv.confidence)
    hi = seeds_for_power(iv.high, iv.sd_a, iv.sd_b, POWER, iv.confidence)
    lo = seeds_for_power(iv.low, iv.sd_a, iv.sd_b, POWER, iv.confidence) if iv.low > 0 else None
    span = (f" (over the interval: {hi if hi is not None else '—'} to "
            f"{lo if lo is not None else 'unbounded: it includes no effect'})")
    lines = [f"{label}: seeds per model for {percent(POWER)} power at the rule's level: "
             f"{_seeds(obs)} at the observed effect {iv.estimate:+.3g}{span}; this scale: {have}"]
    if c.paper_effect is not None:
        lines.append(f"{label}: {_seeds(seeds_for_power(c.paper_effect, iv.sd_a, iv.sd_b, POWER, iv.confidence))}"  # noqa: E501
                     f" seeds per model at the paper's effect {c.paper_effect:+.3g} "
                     "(with this scale's spread)")
    floor = noise_floor(c)
    if floor:
        lines.append(floor)
    return lines, obs


def noise_floor(c: Comparison) -> str | None:
    """A fixed test set of N examples measures each model's accuracy with binomial noise that is
    the same for every seed: the mean over seeds converges to this test set's accuracy, so an
    effect within about two standard errors of a difference cannot be told apart from it."""
    scale = c.arms.proportion_scale
    if not scale or not c.n_test:
        return None
    p = [min(max(m / scale, 0.0), 1.0) for m in c.means]
    se = scale * math.sqrt(sum(q * (1 - q) for q in p) / c.n_test)
    return (f"{c.dataset}: noise floor of the fixed test set ({c.n_test} examples): ±{se:.2g} "
            f"(one standard error of the difference); an effect below {2 * se:.2g} cannot be "
            "established by more seeds on this test set")


def budget(ev: Evidence, c: Claim) -> list[str]:
    """For a claim left inconclusive: what its rule needs and what that costs."""
    if all(ev.get(e) is None for e in c.experiments):
        return [runs_elsewhere(ev, c)]
    need = c.needs(ev) if c.needs else None
    lines: list[str] = []
    runs = ev.get(need.experiment if need else c.experiments[0])
    ok = completed(runs) if runs is not None else pd.DataFrame()
    have = int(ok.groupby(["dataset", "model"]).size().min()) if len(ok) else 0
    seeds = []
    if need is not None:
        lines += need.effects
        for comp in need.comparisons:
            more, n = power_lines(comp, have)
            lines += more
            seeds.append(n)
        if need.note:
            lines.append(need.note)
    share = _share(ev, c)
    if c.min_share is not None and share is not None and share < c.min_share:
        lines.append(f"training: this scale runs {percent(share)} of the paper's optimiser "
                     f"steps; the rule needs at least {percent(c.min_share)}")
    target = max((n for n in seeds if n is not None), default=None)
    if len(ok) and "train_wall_seconds" in ok:
        cells = ok[ok["model"].isin(need.models)] if need and need.models else ok
        per_run = float(pd.to_numeric(cells["train_wall_seconds"], errors="coerce").mean())
        stretch = c.min_share / share if (c.min_share and share and share < c.min_share) else 1
        n_seeds = max(target or have, 2)
        n_runs = n_seeds * max(1, cells["model"].nunique()) * max(1, cells["dataset"].nunique())
        if math.isfinite(per_run):
            device = str(cells["device"].dropna().iloc[0]) if "device" in cells and \
                cells["device"].notna().any() else "this machine"
            unit = "GPU" if device.startswith("cuda") else "CPU"
            lines.append(f"cost at this scale's measured step times: {n_runs} runs × "
                         f"{per_run * stretch / 60:.1f} min ≈ "
                         f"{per_run * stretch * n_runs / 3600:.2g} {unit}-hours on {device} "
                         "(at this scale's data and model sizes)")
    lines.append(_provider(ev, c, target))
    return lines


def _share(ev: Evidence, c: Claim) -> float | None:
    shares = [ev.protocol[e].step_share for e in c.experiments
              if e in ev.protocol and ev.protocol[e].step_share is not None]
    return min(shares) if shares else None


def _provider(ev: Evidence, c: Claim, seeds: int | None) -> str:
    """The first configured scale with the seeds (at least 2: one run decides nothing) and the
    training the rule needs."""
    seeds = max(seeds or 2, 2)
    for name, exps in ev.scales.items():
        ok = True
        for e in c.experiments:
            st = exps.get(e)
            if not st:
                ok = False
                break
            share = st.get("step_share")
            if st["seeds"] < seeds:
                ok = False
            if c.min_share is not None and share is not None and share < c.min_share:
                ok = False
        if ok and name != ev.scale:
            st = exps[c.experiments[0]]
            return (f"provided by the `{name}` scale ({st['seeds']} seeds"
                    + (f", {percent(st['step_share'])} of the paper's optimiser steps"
                       if st.get("step_share") is not None else "")
                    + f", on {', '.join(st['datasets'])})")
    paper = {e: ev.scales.get("paper", {}).get(e, {}).get("seeds") for e in c.experiments}
    few = [f"{e}: {n} seed{'s' if n != 1 else ''}" for e, n in paper.items()
           if n is not None and n < seeds]
    return (f"no configured scale provides it ({seeds} seeds per model at the share of the "
            "paper's steps the rule needs)" + (f"; the `paper` scale runs the papers' repeat "
                                               f"counts ({', '.join(few)}), too few for this "
                                               "rule: add seeds there" if few else ""))


def runs_elsewhere(ev: Evidence, c: Claim) -> str:
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


__all__ = ["budget", "noise_floor", "power_lines", "runs_elsewhere"]
