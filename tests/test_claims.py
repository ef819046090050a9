"""Claim verdicts on synthetic per-seed tables: each check says reproduced / not reproduced /
inconclusive for the reason it should."""

from __future__ import annotations

import numpy as np
import pandas as pd

from odeflows.claims import CHECKS, INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED


def _runs(experiment, dataset, values, column, epochs=100, **extra):
    rows = []
    for model, vals in values.items():
        for seed, v in enumerate(vals):
            rows.append({"experiment": experiment, "dataset": dataset, "model": model,
                         "seed": seed, "status": "completed", column: v,
                         "epochs_trained": epochs,
                         **{k: (e[model][seed] if isinstance(e, dict) else e)
                            for k, e in extra.items()}})
    return pd.DataFrame(rows)


def test_claim_3_anode_accuracy():
    good = _runs("anode_images", "mnist", {"node": [96.1, 96.5, 96.9, 96.3, 96.6],
                                           "anode": [98.1, 98.3, 98.2, 98.0, 98.2]},
                 "test_accuracy_pct", epochs=20)
    assert CHECKS[3]({"anode_images": good})[0] == REPRODUCED
    flipped = good.assign(model=good["model"].map({"node": "anode", "anode": "node"}))
    assert CHECKS[3]({"anode_images": flipped})[0] == NOT_REPRODUCED
    # a clear reversal after 1 of 20 epochs says nothing about the trained models
    short = flipped.assign(epochs_trained=1)
    verdict, ev = CHECKS[3]({"anode_images": short})
    assert verdict == INCONCLUSIVE and any("inconclusive at this scale" in e for e in ev)
    one_seed = good[good["seed"] == 0]
    assert CHECKS[3]({"anode_images": one_seed})[0] == INCONCLUSIVE
    assert CHECKS[3]({})[0] == INCONCLUSIVE


def test_claims_5_and_6_affjord_images():
    bpd = _runs("affjord_images", "mnist", {"ffjord": [0.99, 0.98, 1.0],
                                            "affjord": [0.95, 0.94, 0.955],
                                            "affjord_concat": [0.97, 0.975, 0.98]},
                "test_bpd", epochs=500,
                nfe_train_mean={"ffjord": [300, 320, 310], "affjord": [400, 420, 410],
                                "affjord_concat": [200, 210, 190]},
                test_nfe=50)
    assert CHECKS[5]({"affjord_images": bpd})[0] == REPRODUCED
    assert CHECKS[6]({"affjord_images": bpd})[0] == REPRODUCED
    more = bpd.assign(nfe_train_mean=np.where(bpd["model"] == "affjord_concat", 500,
                                              bpd["nfe_train_mean"]))
    assert CHECKS[6]({"affjord_images": more})[0] == NOT_REPRODUCED


def test_claim_7_speed_and_matching_bpd():
    runs = _runs("rnode_images", "mnist", {"ffjord": [0.97], "rnode": [0.97]},
                 "test_bpd_dequantized", train_hours={"ffjord": [68.5], "rnode": [24.4]},
                 nfe_train_mean=100)
    assert CHECKS[7]({"rnode_images": runs})[0] == REPRODUCED
    slow = runs.assign(train_hours=[68.5, 60.0])
    assert CHECKS[7]({"rnode_images": slow})[0] == NOT_REPRODUCED
    assert CHECKS[7]({"rnode_images": slow.assign(epochs_trained=4)})[0] == INCONCLUSIVE


def test_claim_8_ablation():
    runs = _runs("rnode_ablation", "mnist",
                 {"rk4_none": [np.nan], "rk4_kinetic": [0.5], "rk4_jacobian": [0.2],
                  "rk4_both": [0.1]}, "jacobian_last_epoch")
    runs.loc[runs["model"] == "rk4_none", "status"] = "failed"
    assert CHECKS[8]({"rnode_ablation": runs})[0] == REPRODUCED
    stable = runs.assign(status="completed", jacobian_last_epoch=[5.0, 0.5, 0.2, 0.1])
    verdict, ev = CHECKS[8]({"rnode_ablation": stable})
    assert verdict == INCONCLUSIVE and any("did not fail" in e for e in ev)
    worse = stable.assign(jacobian_last_epoch=[0.1, 0.5, 0.2, 0.3])
    assert CHECKS[8]({"rnode_ablation": worse})[0] == NOT_REPRODUCED
