"""The one statistical core behind every comparative verdict.

A comparison is an *effect* oriented so that a positive value is what the paper claims (model A
better than model B), estimated from per-seed values of the two arms, with its confidence interval
from Welch's t (Satterthwaite degrees of freedom, the quantile from ``scipy.stats.t``) at level
``1 − ALPHA/k`` when a claim decides ``k`` datasets at once (Bonferroni). The decision:

- **reproduced** when the interval lies above zero (on the paper's side) and not wholly below
  the smallest effect of interest: a false "reproduced" when the true effect is zero or of the
  other sign happens at most ``ALPHA/2`` of the time;
- **not reproduced** when the interval lies below the smallest effect of interest (``sesoi``,
  ≥ 0, declared per claim from the paper's numbers; 0 where the paper's size does not carry over,
  e.g. to a substitute dataset): evidence *against* the paper's effect — an effect of the other
  sign, or one too small to be the paper's even if it is real. A false "not reproduced" when the
  paper's effect (≥ sesoi) is true happens at most ``ALPHA/2`` of the time; with ``sesoi = 0``
  and no true effect, a decisive verdict of either kind at most ``ALPHA`` of the time, at every
  seed count ≥ 2;
- otherwise **inconclusive**, with the direction the point estimate leans.

``tests/test_claims_calibration.py`` pushes simulated per-seed tables through the claims engine to
show these rates; ``docs/verdicts.md`` has the power table. Power and seed budgets come from
``statsmodels`` (two-sample t power at the same one-sided level the decision uses).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["ALPHA", "POWER", "Interval", "decide", "failure_counts_differ", "leaning",
           "one_sample_interval", "power", "seeds_for_power", "welch_interval"]

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
ALPHA = 0.05  # two-sided: each kind of wrong decisive verdict at most ALPHA / 2
POWER = 0.8  # the power budgets plan for


@dataclass(frozen=True)
class Interval:
    """An effect estimate (``a − b``, or one sample's mean) with its confidence interval."""

    estimate: float
    low: float
    high: float
    confidence: float
    df: float
    n_a: int
    n_b: int
    sd_a: float
    sd_b: float

    @property
    def defined(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))

    def text(self, digits: int = 3) -> str:
        """``+1.2 (95 % CI [0.4, 2.0])``."""
        if not self.defined:
            return f"{self.estimate:+.{digits}g} (no interval: it needs 2 values of each)"
        pct = f"{100 * self.confidence:.4g}"
        return (f"{self.estimate:+.{digits}g} ({pct} % CI [{self.low:+.{digits}g}, "
                f"{self.high:+.{digits}g}])")


def _clean(x: np.ndarray | list[float]) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    return x[np.isfinite(x)]


def _sd(x: np.ndarray) -> float:
    return float(x.std(ddof=1)) if len(x) > 1 else float("nan")


def welch_interval(a: np.ndarray | list[float], b: np.ndarray | list[float],
                   confidence: float = 1 - ALPHA) -> Interval:
    """mean(a) − mean(b) with Welch's interval (Satterthwaite degrees of freedom; the quantile
    from ``scipy.stats.t``; equal to ``scipy.stats.ttest_ind(a, b, equal_var=False)
    .confidence_interval(confidence)``, which costs ~50× more and is what the tests compare
    with). With zero spread in both arms (a deterministic measurement such as a fixed-grid NFE
    count) the interval is the difference itself."""
    a, b = _clean(a), _clean(b)
    est = float(a.mean() - b.mean()) if len(a) and len(b) else float("nan")
    sd_a, sd_b = _sd(a), _sd(b)
    if len(a) < 2 or len(b) < 2:
        return Interval(est, math.nan, math.nan, confidence, math.nan, len(a), len(b), sd_a,
                        sd_b)
    if sd_a == 0 and sd_b == 0:
        return Interval(est, est, est, confidence, math.inf, len(a), len(b), 0.0, 0.0)
    va, vb = sd_a ** 2 / len(a), sd_b ** 2 / len(b)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * math.sqrt(va + vb)
    return Interval(est, est - half, est + half, confidence, float(df), len(a), len(b), sd_a,
                    sd_b)


def one_sample_interval(x: np.ndarray | list[float], confidence: float = 1 - ALPHA
                        ) -> Interval:
    """mean(x) with Student's interval (a within-run change, e.g. NFE growth over training)."""
    x = _clean(x)
    est = float(x.mean()) if len(x) else float("nan")
    sd = _sd(x)
    if len(x) < 2:
        return Interval(est, math.nan, math.nan, confidence, math.nan, len(x), 0, sd, math.nan)
    if sd == 0:
        return Interval(est, est, est, confidence, math.inf, len(x), 0, 0.0, math.nan)
    res = stats.ttest_1samp(x, 0.0)
    ci = res.confidence_interval(confidence)
    return Interval(est, float(ci.low), float(ci.high), confidence, float(res.df), len(x), 0,
                    sd, math.nan)


def decide(interval: Interval, sesoi: float = 0.0) -> str:
    """The verdict an interval of an effect (positive = the paper's direction) supports."""
    if not interval.defined:
        return INCONCLUSIVE
    if interval.high < max(sesoi, 0.0):
        return NOT_REPRODUCED
    if interval.low > 0:
        return REPRODUCED
    return INCONCLUSIVE


def leaning(interval: Interval) -> str:
    """Which verdict the point estimate leans to (for an undecided comparison)."""
    if math.isnan(interval.estimate) or interval.estimate == 0:
        return "neither way"
    return REPRODUCED if interval.estimate > 0 else NOT_REPRODUCED


def failure_counts_differ(failed: dict[str, int]) -> bool:
    """Arms that lost different numbers of seeds: the survivors are a selection, and comparing
    them can favour the arm that diverges more often."""
    return len(set(failed.values())) > 1


def power(n: float, delta: float, sd_a: float, sd_b: float, confidence: float = 1 - ALPHA
          ) -> float:
    """Probability that the interval at ``confidence`` lies above zero with ``n`` seeds per arm
    when the true effect is ``delta`` (two-sample t power, pooled spread)."""
    from statsmodels.stats.power import TTestIndPower

    sd = math.sqrt((sd_a ** 2 + sd_b ** 2) / 2)
    if delta <= 0 or not sd > 0 or n < 2:
        return float("nan") if n < 2 else float(delta > 0)
    return float(TTestIndPower().power(effect_size=delta / sd, nobs1=n, ratio=1.0,
                                       alpha=(1 - confidence) / 2, alternative="larger"))


def seeds_for_power(delta: float, sd_a: float, sd_b: float, target: float = POWER,
                    confidence: float = 1 - ALPHA, most: int = 100_000) -> int | None:
    """Seeds per arm at which :func:`power` reaches ``target``; None when the effect is not in
    the paper's direction or the spread is unknown."""
    sd = math.sqrt((sd_a ** 2 + sd_b ** 2) / 2) if np.isfinite([sd_a, sd_b]).all() else math.nan
    if not delta > 0 or not np.isfinite(sd):
        return None
    if sd == 0:
        return 2
    lo, hi = 2, 2
    while power(hi, delta, sd_a, sd_b, confidence) < target:
        lo, hi = hi, hi * 2
        if hi > most:
            return None
    while lo < hi:  # power grows with n: the smallest n that reaches the target
        mid = (lo + hi) // 2
        if power(mid, delta, sd_a, sd_b, confidence) >= target:
            hi = mid
        else:
            lo = mid + 1
    return hi
