"""Verdicts on the papers' claims, from the per-seed tables only.

A claim is a registered entry (:mod:`odeflows.claims.core`): its number, statement and paper
reference, the experiments whose tables it reads, its rule with the date it last changed and why,
the share of the paper's optimiser steps its verdict needs, and how failed seeds enter it. Every
comparison of two models is decided by one statistical core (:mod:`odeflows.claims.stats`: Welch
intervals at a stated α); :mod:`odeflows.claims.protocol` derives what a scale changes of the
paper's protocol from the configs; :mod:`odeflows.claims.budget` says what would decide an
inconclusive claim; :mod:`odeflows.claims.report` writes the report. Verdicts: "reproduced", "not
reproduced", "inconclusive" (with the way the evidence leans), or "not tested" on a wiring-check
scale. The built-in claims live in this package's modules (one per paper); a user's module can
register more.
"""

from odeflows.claims.core import (
    CLAIMS,
    FINDINGS,
    GRID_MASS_MAX,
    NOT_TESTED,
    Arms,
    Claim,
    Evidence,
    Need,
    Protocol,
    Revision,
    claim,
    compare_arms,
    completed,
    findings,
    registered_claims,
    valid_densities,
)
from odeflows.claims.report import evaluate_claims, evidence, write_claims, write_metrics
from odeflows.claims.stats import ALPHA, INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED

__all__ = ["ALPHA", "CLAIMS", "FINDINGS", "GRID_MASS_MAX", "INCONCLUSIVE", "NOT_REPRODUCED",
           "NOT_TESTED", "REPRODUCED", "Arms", "Claim", "Evidence", "Need", "Protocol",
           "Revision", "claim", "compare_arms", "completed", "evaluate_claims", "evidence",
           "findings", "registered_claims", "valid_densities", "write_claims", "write_metrics"]
