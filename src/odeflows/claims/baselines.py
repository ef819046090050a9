"""Findings that are no paper's claim: does every density model beat its experiment's baseline?

A model entry with the trait ``baseline`` (the per-pixel histogram) sits in the tables of the
image experiments; a flow that does not beat it has learnt no dependence between pixels, so its
numbers say nothing about the papers' claims. Reported per experiment and dataset."""

from __future__ import annotations

from odeflows.claims.core import Evidence, completed, findings

__all__ = ["beats_the_baseline"]


@findings("baselines", "Every image flow against the per-pixel baseline",
          "Test bits/dim of each model beside the independent per-pixel histogram fitted to the "
          "same training images (mean over completed seeds; lower is better). A model that does "
          "not beat it has not learnt the images:", ())
def beats_the_baseline(ev: Evidence) -> list[str]:
    lines = []
    for exp, runs in sorted(ev.tables.items()):
        if "baseline" not in runs or "test_bpd" not in runs:
            continue
        ok = completed(runs)
        for ds, grp in ok.groupby("dataset"):
            base = grp[grp["baseline"] == True]["test_bpd"]  # noqa: E712 (column of bools)
            if base.empty:
                continue
            b = float(base.mean())
            parts = []
            for model, m in grp[grp["baseline"] != True].groupby("model"):  # noqa: E712
                v = float(m["test_bpd"].mean())
                verdict = (f"beats it by {b - v:.3f}" if v < b
                           else f"does NOT beat it: {v - b:.3f} worse")
                parts.append(f"{model} {v:.3f} ({verdict})")
            lines.append(f"{exp} on {ev.dataset_label(ds)}: baseline {b:.3f} bits/dim; "
                         + "; ".join(parts))
    return lines or ["no table holds a baseline at this scale"]
