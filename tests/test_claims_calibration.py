"""The statistical core and its calibration: simulated per-seed tables pushed through the real
claims engine (rule and report gate) decide no more often than α allows when the paper's effect
is absent, refute the paper's effect no more often than α/2 when it is true, and reach the power
the budget promises."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from odeflows.claims.calibration import SHAPES, rates
from odeflows.claims.stats import (
    ALPHA,
    INCONCLUSIVE,
    NOT_REPRODUCED,
    POWER,
    REPRODUCED,
    decide,
    one_sample_interval,
    power,
    seeds_for_power,
    welch_interval,
)

SIMS = 1000


def slack(p: float) -> float:
    """Three binomial standard errors of a rate p estimated from SIMS tables."""
    return 3 * math.sqrt(p * (1 - p) / SIMS)


@pytest.mark.parametrize("n_a,n_b,confidence", [(2, 2, 0.95), (3, 5, 0.975), (10, 4, 0.99)])
def test_welch_interval_is_scipys(n_a, n_b, confidence):
    rng = np.random.default_rng(n_a * 100 + n_b)
    a, b = rng.normal(1.0, 2.0, n_a), rng.normal(0.0, 0.5, n_b)
    ours = welch_interval(a, b, confidence)
    res = stats.ttest_ind(a, b, equal_var=False)
    ci = res.confidence_interval(confidence)
    assert ours.low == pytest.approx(ci.low, rel=1e-10)
    assert ours.high == pytest.approx(ci.high, rel=1e-10)
    assert ours.df == pytest.approx(res.df, rel=1e-10)
    one = one_sample_interval(a, confidence)
    ci1 = stats.ttest_1samp(a, 0.0).confidence_interval(confidence)
    assert (one.low, one.high) == pytest.approx((ci1.low, ci1.high), rel=1e-10)


def test_intervals_without_spread_or_seeds():
    assert not welch_interval([1.0], [0.0, 1.0]).defined
    exact = welch_interval([20.0, 20.0], [26.0, 26.0])
    assert (exact.low, exact.high) == (-6.0, -6.0)
    assert decide(exact) == NOT_REPRODUCED
    assert decide(welch_interval([1.0], [0.0])) == INCONCLUSIVE


def test_decide_reads_the_interval_against_zero_and_the_smallest_effect_of_interest():
    iv = welch_interval([2.0, 2.1, 1.9], [1.0, 1.1, 0.9])  # about +1 ± 0.26
    assert decide(iv) == REPRODUCED
    assert decide(iv, sesoi=0.5) == REPRODUCED
    assert decide(iv, sesoi=2.0) == NOT_REPRODUCED  # real, but too small to be the paper's
    assert decide(welch_interval([1.0, 3.0], [1.5, 2.5]), sesoi=0.1) == INCONCLUSIVE


@pytest.mark.parametrize("seeds", [2, 3, 5, 10])
@pytest.mark.parametrize("setting", ["claim 3, digits8x8", "claim 6, digits8x8",
                                     "claim 4, hash"])
def test_no_effect_decides_at_most_alpha_of_the_time(setting, seeds):
    """Where only the paper's direction carries over (a substitute dataset, or a size stated in
    the paper's own standard deviations: smallest effect of interest 0), with no true
    difference either decisive verdict is a false one."""
    r = rates(SHAPES[setting], seeds, 0.0, SIMS)
    decisive = r[REPRODUCED] + r[NOT_REPRODUCED]
    assert decisive <= ALPHA + slack(ALPHA), r


@pytest.mark.parametrize("seeds", [2, 3, 5, 10])
def test_the_papers_dataset_errs_at_most_half_alpha_each_way(seeds):
    """On the paper's own dataset the paper's size carries over: 'reproduced' with no true
    effect, and 'not reproduced' with a true effect at the smallest effect of interest (half the
    paper's), each come at most α/2 of the time. ('Not reproduced' with no true effect is the
    right verdict there: its rate is the power to refute.)"""
    shape = SHAPES["claim 3, MNIST"]
    paper = shape.paper["anode"] - shape.paper["node"]
    null = rates(shape, seeds, 0.0, SIMS)
    assert null[REPRODUCED] <= ALPHA / 2 + slack(ALPHA / 2), null
    boundary = rates(shape, seeds, paper / 2, SIMS)
    assert boundary[NOT_REPRODUCED] <= ALPHA / 2 + slack(ALPHA / 2), boundary


def test_the_budget_seeds_reach_the_promised_power_through_the_engine():
    shape = SHAPES["claim 3, digits8x8"]
    effect = 1.5
    n = seeds_for_power(effect, shape.sd_better, shape.sd_worse)
    assert power(n, effect, shape.sd_better, shape.sd_worse) >= POWER > power(
        n - 1, effect, shape.sd_better, shape.sd_worse)
    # Welch's degrees of freedom are fewer than the pooled test's: allow a little shortfall
    r = rates(shape, n, effect, SIMS)
    assert r[REPRODUCED] >= POWER - 0.06 - slack(POWER), (n, r)
    assert seeds_for_power(-1.0, 1.0, 1.0) is None
