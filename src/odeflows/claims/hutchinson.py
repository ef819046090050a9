"""Claim of FFJORD (as AFFJORD §2 restates it): 10, Hutchinson's estimator is unbiased."""

from __future__ import annotations

import math

import numpy as np

from odeflows.claims.core import (
    FIRST,
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    Evidence,
    Verdict,
    claim,
    completed,
)

__all__ = ["claim_10"]


@claim(10, "Hutchinson's estimator is unbiased for the divergence", "FFJORD; AFFJORD §2",
       ("affjord_toy",),
       "per probe kind, the pooled z-scores of (mean of many probes − exact trace) over the "
       "trained fields: reproduced when |z| < 3 for at least 90 % of them and the combined "
       "z = Σz/√n has |z| < 3, for every probe kind; else not reproduced",
       min_share=None, history=(FIRST,))
def claim_10(ev: Evidence) -> Verdict:
    runs = ev.get("affjord_toy")
    if runs is None:
        return INCONCLUSIVE, ["affjord_toy was not run at this scale"]
    ok = completed(runs)
    lines, verdicts = [], []
    for kind in ("gaussian", "rademacher"):
        col = f"hutchinson_{kind}_z"
        if col not in ok:
            continue
        z = ok[col].dropna().to_numpy(float)
        if len(z) == 0:
            continue
        frac = float((np.abs(z) < 3).mean())
        combined = float(z.sum() / math.sqrt(len(z)))
        lines.append(f"{kind} probe: pooled z-scores of (mean estimate − exact trace) over "
                     f"{len(z)} trained fields: mean {z.mean():+.2f}, |z| < 3 in {frac:.0%}; "
                     f"combined z = {combined:+.2f}")
        verdicts.append(frac >= 0.9 and abs(combined) < 3)
    if not verdicts:
        return INCONCLUSIVE, ["no Hutchinson checks were recorded"]
    return (REPRODUCED if all(verdicts) else NOT_REPRODUCED), lines + [
        "each z compares the mean of many probes with the exact autograd trace at 64 test "
        "points; unbiasedness predicts z ~ N(0, 1)"]
