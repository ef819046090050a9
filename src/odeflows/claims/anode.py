"""Claims of Augmented Neural ODEs (Dupont et al. 2019): 1, 2 and 3."""

from __future__ import annotations

import math

from odeflows.claims import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    Evidence,
    Need,
    Verdict,
    claim,
    completed,
    paired_claim,
    paired_needs,
)


def _g1d_needs(ev: Evidence) -> Need | None:
    """Claim 1's thresholds are on mean accuracies after training: what it lacks is training
    (the paper: 50 epochs), not seeds."""
    runs = ev.get("anode_toy")
    if runs is None:
        return None
    g = completed(runs[runs["dataset"] == "g1d"])
    acc = g.groupby("model")["test_accuracy"].agg(["mean", "std", "count"])
    effects = [f"g1d: {m} test accuracy {r['mean']:.3f} ± {r['std']:.3f} (n={int(r['count'])})"
               for m, r in acc.iterrows()]
    return Need("anode_toy", effects, epochs=ev.paper_length("anode_toy", "epochs"),
                models=("node", "anode", "resnet"))


def _nfe_needs(ev: Evidence) -> Need | None:
    """Claim 2: NODE's NFE growth must exceed one standard error: n ≥ (s/mean growth)²."""
    runs = ev.get("anode_toy")
    if runs is None:
        return None
    ok, need, seeds = completed(runs), Need("anode_toy", models=("node", "anode")), []
    for ds, grp in ok.groupby("dataset"):
        node = grp[grp["model"] == "node"]
        growth = (node["nfe_last_epoch"] - node["nfe_first_epoch"]).to_numpy(float)
        if len(growth) < 2:
            continue
        se = growth.std(ddof=1) / math.sqrt(len(growth))
        need.effects.append(f"{ds}: NODE forward-NFE growth first → last epoch "
                            f"{growth.mean():+.2f} ± {se:.2f} (s.e.)")
        if growth.mean() > 0:
            seeds.append(max(2, math.ceil((growth.std(ddof=1) / growth.mean()) ** 2)))
    if not need.effects:
        return None
    need.seeds = max(seeds) if seeds else None
    need.direction = REPRODUCED if seeds else NOT_REPRODUCED
    return need


@claim(1, "NODEs cannot represent g1d; ANODEs and ResNets can (ANODE §3-5).", ("anode_toy",),
       "g1d test accuracy (sign agreement), mean over seeds: reproduced when NODE ≤ 0.75 and "
       "ANODE, ResNet ≥ 0.95; not reproduced when NODE ≥ 0.95 or both ANODE and ResNet < 0.75; "
       "else inconclusive", needs=_g1d_needs)
def claim_1(ev: Evidence) -> Verdict:
    runs = ev.get("anode_toy")
    if runs is None:
        return INCONCLUSIVE, ["anode_toy was not run at this scale"]
    g = completed(runs[runs["dataset"] == "g1d"])
    acc = g.groupby("model")["test_accuracy"].agg(["mean", "std", "count"])
    if not {"node", "anode", "resnet"} <= set(acc.index):
        return INCONCLUSIVE, ["g1d runs of node, anode and resnet are needed"]
    lines = ["g1d test accuracy (sign of output = sign of target), mean ± std over seeds: "
             + ", ".join(f"{m} {acc.loc[m, 'mean']:.3f} ± {acc.loc[m, 'std']:.3f} "
                         f"(n={int(acc.loc[m, 'count'])})" for m in ("node", "anode", "resnet"))]
    node, anode, resnet = (acc.loc[m, "mean"] for m in ("node", "anode", "resnet"))
    if node <= 0.75 and anode >= 0.95 and resnet >= 0.95:
        return REPRODUCED, lines + ["NODE cannot flip ±1 (a 1-D flow preserves order); ANODE "
                                    "and ResNet fit it"]
    if node >= 0.95 or (anode < 0.75 and resnet < 0.75):
        return NOT_REPRODUCED, lines
    return INCONCLUSIVE, lines + ["thresholds: NODE ≤ 0.75 and ANODE, ResNet ≥ 0.95 (training "
                                  "may be too short at this scale)"]


@claim(2, "ANODE needs fewer NFEs than NODE, and NODE's NFE grows during training "
          "(ANODE Fig. 8, 10).", ("anode_toy",),
       "per dataset: last-epoch forward NFE of ANODE below NODE's (means), and NODE's growth "
       "first → last epoch positive and above one standard error; reproduced when ANODE is lower "
       "on every dataset and NODE grows on more than half; not reproduced when ANODE is lower on "
       "none; else inconclusive", needs=_nfe_needs)
def claim_2(ev: Evidence) -> Verdict:
    runs = ev.get("anode_toy")
    if runs is None:
        return INCONCLUSIVE, ["anode_toy was not run at this scale"]
    ok = completed(runs)
    fewer, grows, lines = [], [], []
    for ds, grp in ok.groupby("dataset"):
        node = grp[grp["model"] == "node"]
        anode = grp[grp["model"] == "anode"]
        if node.empty or anode.empty:
            continue
        n_last = node["nfe_last_epoch"].to_numpy(float)
        a_last = anode["nfe_last_epoch"].to_numpy(float)
        growth = (node["nfe_last_epoch"] - node["nfe_first_epoch"]).to_numpy(float)
        fewer.append(a_last.mean() < n_last.mean())
        se = growth.std(ddof=1) / math.sqrt(len(growth)) if len(growth) > 1 else float("nan")
        grows.append(growth.mean() > 0 and (math.isnan(se) or growth.mean() > se))
        lines.append(f"{ds}: last-epoch forward NFE NODE {n_last.mean():.1f} vs ANODE "
                     f"{a_last.mean():.1f}; NODE first→last epoch "
                     f"{node['nfe_first_epoch'].mean():.1f} → {node['nfe_last_epoch'].mean():.1f}"
                     f" (change {growth.mean():+.1f} ± {0 if math.isnan(se) else se:.1f} s.e.)")
    if not fewer:
        return INCONCLUSIVE, ["node and anode runs are needed"]
    if all(fewer) and sum(grows) > len(grows) / 2:
        return REPRODUCED, lines
    if not any(fewer):
        return NOT_REPRODUCED, lines
    return INCONCLUSIVE, lines + [f"ANODE fewer NFE on {sum(fewer)}/{len(fewer)} datasets; "
                                  f"NODE NFE grows on {sum(grows)}/{len(grows)}"]


@claim(3, "ANODE reaches higher test accuracy than a parameter-matched NODE (ANODE Table 1).",
       ("anode_images",),
       "Welch t of test accuracy (ANODE − NODE) per dataset: reproduced when t ≥ 2 on every "
       "dataset; not reproduced when t ≤ −2 on any (unless training was under a quarter of the "
       "paper's); else inconclusive",
       needs=lambda ev: paired_needs(ev, "anode_images", "anode", "node", "test_accuracy_pct",
                                     True, "test accuracy %"))
def claim_3(ev: Evidence) -> Verdict:
    return paired_claim(ev, "anode_images", "anode", "node", "test_accuracy_pct", True,
                        "test accuracy %")
