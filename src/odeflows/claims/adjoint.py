"""Claim of the Neural ODE note (Chen et al. 2018): 9, the adjoint's constant memory."""

from __future__ import annotations

import pandas as pd

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

__all__ = ["claim_9"]


@claim(9, "The adjoint method's memory does not grow with the number of solver steps",
          "Neural ODE note §2.2", ("node_adjoint",),
       "per profiled run, peak saved memory at the most vs the fewest solver steps: reproduced "
       "when the adjoint grows less than ×1.1 and backpropagation through the solver more than "
       "×1.5 on every run; not reproduced when the adjoint grows ×1.1 or more on every run; "
       "else inconclusive", min_share=None, history=(FIRST,))
def claim_9(ev: Evidence) -> Verdict:
    runs = ev.get("node_adjoint")
    if runs is None:
        return INCONCLUSIVE, ["node_adjoint was not run at this scale"]
    ok = completed(runs)
    if ok.empty or "adjoint_memory_growth_ratio" not in ok:
        return INCONCLUSIVE, ["no completed profiles"]
    lines, flat, grows = [], [], []
    for _, r in ok.iterrows():
        lo, hi = r.get("direct_steps_min"), r.get("direct_steps_max")
        span = f"{int(lo)}→{int(hi)} steps" if pd.notna(lo) else "min→max steps"
        lines.append(f"{r['model']} seed {r['seed']}: peak saved memory grows ×"
                     f"{r['direct_memory_growth_ratio']:.2f} with backprop through the solver "
                     f"and ×{r['adjoint_memory_growth_ratio']:.2f} with the adjoint ({span})")
        flat.append(r["adjoint_memory_growth_ratio"] < 1.1)
        grows.append(r["direct_memory_growth_ratio"] > 1.5)
    if all(flat) and all(grows):
        return REPRODUCED, lines
    if not any(flat):
        return NOT_REPRODUCED, lines
    return INCONCLUSIVE, lines
