"""Claim verdicts on synthetic per-seed tables: each registered check can return each verdict,
for the reason its rule states; the report applies the share-of-protocol gate both ways."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT
from odeflows.claims import (
    CLAIMS,
    INCONCLUSIVE,
    NOT_REPRODUCED,
    NOT_TESTED,
    REPRODUCED,
    Evidence,
    Protocol,
    evaluate_claims,
    registered_claims,
)
from odeflows.claims.budget import budget
from odeflows.claims.report import judge

TRAINING = {"anode_images": {"epochs": 20}, "affjord_images": {"epochs": 500},
            "rnode_images": {"epochs": 100}, "rnode_ablation": {"epochs": 100},
            "affjord_toy": {"iterations": 14000}}
PAPER = {("anode_images", "mnist", "node", "test_accuracy_pct"): 96.4,
         ("anode_images", "mnist", "anode", "test_accuracy_pct"): 98.2,
         ("rnode_images", "mnist", "ffjord", "train_hours"): 68.5,
         ("rnode_images", "mnist", "rnode", "train_hours"): 24.4}


def check(number, tables):
    ev = Evidence(tables, "test", {"mnist5k": "a subset"}, TRAINING, paper_numbers=PAPER)
    return CLAIMS.get(str(number)).check(ev)


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


def test_every_claim_is_registered_with_a_rule_and_its_tables():
    claims = registered_claims()
    assert [c.number for c in claims][:10] == list(range(1, 11))
    for c in claims:
        assert c.rule and c.experiments and c.text
        # with no tables, a claim cannot be decided, whatever its rule
        assert c.check(Evidence({}))[0] == INCONCLUSIVE
    result = evaluate_claims(Evidence({}))
    assert all(r["verdict"] == INCONCLUSIVE and r["rule"] for r in result.values())


def test_claim_1_g1d():
    acc = {"node": [0.5, 0.52, 0.5], "anode": [1.0, 0.99, 1.0], "resnet": [1.0, 0.98, 1.0]}
    runs = _runs("anode_toy", "g1d", acc, "test_accuracy")
    assert check(1, {"anode_toy": runs})[0] == REPRODUCED
    node_fits = runs.assign(test_accuracy=np.where(runs["model"] == "node", 0.99,
                                                   runs["test_accuracy"]))
    assert check(1, {"anode_toy": node_fits})[0] == NOT_REPRODUCED
    midway = runs.assign(test_accuracy=np.where(runs["model"] == "anode", 0.85,
                                                runs["test_accuracy"]))
    assert check(1, {"anode_toy": midway})[0] == INCONCLUSIVE
    assert check(1, {"anode_toy": runs[runs["model"] != "resnet"]})[0] == INCONCLUSIVE


def test_claim_2_nfe():
    runs = pd.concat([_runs("anode_toy", ds, {"node": [26, 28, 27], "anode": [14, 14, 15]},
                            "nfe_last_epoch",
                            nfe_first_epoch={"node": [20, 21, 20], "anode": [14, 14, 14]})
                      for ds in ("spheres1d", "spheres2d")])
    assert check(2, {"anode_toy": runs})[0] == REPRODUCED
    anode_more = runs.assign(nfe_last_epoch=np.where(runs["model"] == "anode", 40,
                                                     runs["nfe_last_epoch"]))
    assert check(2, {"anode_toy": anode_more})[0] == NOT_REPRODUCED
    # ANODE fewer but NODE's NFE does not grow
    flat = runs.assign(nfe_first_epoch=runs["nfe_last_epoch"])
    assert check(2, {"anode_toy": flat})[0] == INCONCLUSIVE


def test_claim_3_anode_accuracy():
    good = _runs("anode_images", "mnist", {"node": [96.1, 96.5, 96.9, 96.3, 96.6],
                                           "anode": [98.1, 98.3, 98.2, 98.0, 98.2]},
                 "test_accuracy_pct", epochs=20)
    verdict, lines = check(3, {"anode_images": good})
    assert verdict == REPRODUCED
    # MNIST is the paper's dataset: its effect (1.8 points) is named and lies in the interval
    assert any("the paper's effect +1.8 is inside the interval" in e for e in lines)
    flipped = good.assign(model=good["model"].map({"node": "anode", "anode": "node"}))
    assert check(3, {"anode_images": flipped})[0] == NOT_REPRODUCED
    # no effect, tight seeds: the interval excludes half the paper's effect (0.9 points)
    null = good.assign(test_accuracy_pct=96.5 + 0.1 * (good["seed"] % 3 - 1))
    assert check(3, {"anode_images": null})[0] == NOT_REPRODUCED
    # the same on a substitute dataset: only the direction carries over, so no refutation
    verdict, lines = check(3, {"anode_images": null.assign(dataset="mnist5k")})
    assert verdict == INCONCLUSIVE and any("mnist5k (a subset)" in e for e in lines)
    assert check(3, {"anode_images": good[good["seed"] == 0]})[0] == INCONCLUSIVE
    assert check(3, {})[0] == INCONCLUSIVE


def test_two_seeds_a_sign_apart_refute_nothing():
    # the old rule's failure: t ≤ −2 on two seeds per model (Welch df ≈ 1) read as a refutation
    runs = _runs("affjord_images", "digits8x8", {"ffjord": [60.0, 61.5],
                                                 "affjord_concat": [75.0, 83.0]},
                 "nfe_train_mean", epochs=500)
    verdict, lines = check(6, {"affjord_images": runs})
    assert verdict == INCONCLUSIVE and any("leans not reproduced" in e for e in lines)


def test_different_failure_counts_make_a_comparison_undecided():
    runs = _runs("anode_images", "mnist", {"node": [96.1, 96.5, 96.9, 96.3, 96.6],
                                           "anode": [98.1, 98.3, 98.2, 98.0, 98.2]},
                 "test_accuracy_pct", epochs=20)
    runs.loc[(runs["model"] == "anode") & (runs["seed"] >= 3), "status"] = "failed"
    verdict, lines = check(3, {"anode_images": runs})
    assert verdict == INCONCLUSIVE
    assert any("failed seeds anode 2, node 0" in e and "selection" in e for e in lines)
    # the report counts every seed, failed ones included
    ev = Evidence({"anode_images": runs}, "test", {}, TRAINING, paper_numbers=PAPER)
    r = judge(ev, CLAIMS.get("3"))
    assert "anode 3/5" in r["evidence"][0] and "node 5/5" in r["evidence"][0]


def test_claim_4_affjord_toy():
    runs = _runs("affjord_toy", "hash", {"ffjord": [1.10, 1.12, 1.11, 1.13],
                                         "affjord": [1.00, 1.01, 1.02, 1.00]},
                 "best_val_loss", iterations=14000)
    verdict, lines = check(4, {"affjord_toy": runs})
    ffjord, affjord = np.array([1.10, 1.12, 1.11, 1.13]), np.array([1.00, 1.01, 1.02, 1.00])
    gap = (ffjord.mean() - affjord.mean()) / ffjord.std(ddof=1)  # in FFJORD's spread
    assert verdict == REPRODUCED
    assert any(f"lower by {gap:.2f} FFJORD standard deviations" in e for e in lines), lines
    reversed_ = runs.assign(model=runs["model"].map({"ffjord": "affjord", "affjord": "ffjord"}))
    assert check(4, {"affjord_toy": reversed_})[0] == NOT_REPRODUCED
    noisy = runs.assign(best_val_loss=np.where(runs["model"] == "affjord",
                                               [1.2, 0.9, 1.1, 1.05] * 2, runs["best_val_loss"]))
    assert check(4, {"affjord_toy": noisy})[0] == INCONCLUSIVE


def test_claim_4_counts_only_runs_whose_density_integrates_to_one():
    # the workstation run of stop 15: FFJORD seed 1 scored −31.9 "nats" with a grid mass of
    # 2·10¹⁶; such a run must not decide the claim either way
    runs = _runs("affjord_toy", "hash", {"ffjord": [1.10, 1.12, -31.9, 1.13],
                                         "affjord": [1.00, 1.01, 1.02, 1.00]},
                 "best_val_loss", iterations=14000,
                 grid_mass={"ffjord": [0.99, 1.01, 2.0e16, 1.0],
                            "affjord": [1.0, 0.98, 1.02, 1.05]})
    verdict, ev = check(4, {"affjord_toy": runs})
    assert verdict == REPRODUCED
    assert any("excluded" in e and "ffjord hash seed 2 (2e+16)" in e for e in ev)
    assert any("(n=3)" in e for e in ev)
    # a model left with one valid run cannot be tested
    broken = runs.assign(grid_mass=np.where(runs["model"] == "affjord",
                                            [0.0] * 4 + [1.0, 27.0, 3e4, 1.2],
                                            runs["grid_mass"]))
    verdict, ev = check(4, {"affjord_toy": broken})
    assert verdict == INCONCLUSIVE and any("no interval" in e for e in ev)


def test_claims_5_and_6_affjord_images():
    bpd = _runs("affjord_images", "mnist", {"ffjord": [0.99, 0.98, 1.0],
                                            "affjord": [0.95, 0.94, 0.955],
                                            "affjord_concat": [0.97, 0.975, 0.98]},
                "test_bpd", epochs=500,
                nfe_train_mean={"ffjord": [300, 320, 310], "affjord": [400, 420, 410],
                                "affjord_concat": [200, 210, 190]},
                test_nfe=50)
    assert check(5, {"affjord_images": bpd})[0] == REPRODUCED
    assert check(6, {"affjord_images": bpd})[0] == REPRODUCED
    more = bpd.assign(nfe_train_mean=np.where(bpd["model"] == "affjord_concat",
                                              [500, 510, 505] * 3, bpd["nfe_train_mean"]))
    assert check(6, {"affjord_images": more})[0] == NOT_REPRODUCED
    worse = bpd.assign(test_bpd=np.where(bpd["model"] == "affjord", [1.2, 1.21, 1.19] * 3,
                                         bpd["test_bpd"]))
    assert check(5, {"affjord_images": worse})[0] == NOT_REPRODUCED


def test_claim_7_speed_and_matching_bpd():
    hours = {"ffjord": [68.5, 67.0, 70.1], "rnode": [24.4, 25.0, 24.0]}
    runs = _runs("rnode_images", "mnist", {"ffjord": [0.97, 0.975, 0.965],
                                           "rnode": [0.97, 0.972, 0.968]},
                 "test_bpd_dequantized", train_wall_seconds={
                     m: [3600 * h for h in v] for m, v in hours.items()},
                 iterations=1000, nfe_train_mean={"ffjord": [300, 310, 305],
                                                  "rnode": [120, 125, 118]}, device="cpu")
    verdict, lines = check(7, {"rnode_images": runs})
    assert verdict == REPRODUCED
    assert any("RNODE's speed-up ×2.8" in e for e in lines)
    assert any(e.startswith("(reported, not decided)") for e in lines)
    assert "times measured on: cpu" in lines
    slow = runs.assign(train_wall_seconds=np.where(runs["model"] == "rnode",
                                                   runs["train_wall_seconds"] * 2.6,
                                                   runs["train_wall_seconds"]))
    assert check(7, {"rnode_images": slow})[0] == NOT_REPRODUCED
    # one seed per model: a time measured once decides nothing
    assert check(7, {"rnode_images": runs[runs["seed"] == 0]})[0] == INCONCLUSIVE


def test_claim_8_ablation():
    regs = {"rk4_kinetic": [0.5, 0.55, 0.52], "rk4_jacobian": [0.2, 0.22, 0.21],
            "rk4_both": [0.1, 0.12, 0.11]}
    runs = _runs("rnode_ablation", "mnist", {"rk4_none": [np.nan] * 3, **regs},
                 "jacobian_last_epoch")
    runs.loc[runs["model"] == "rk4_none", "status"] = "failed"
    verdict, lines = check(8, {"rnode_ablation": runs})
    assert verdict == REPRODUCED and any("Fisher" in e for e in lines)
    # one failed seed of one: no test of the failure rate can decide on it
    one = runs[runs["seed"] == 0]
    assert check(8, {"rnode_ablation": one})[0] == INCONCLUSIVE
    # eight stable unregularised seeds: evidence against the instability
    stable = _runs("rnode_ablation", "mnist", {"rk4_none": [5.0, 5.2, 4.9, 5.1] * 2,
                                               **{m: v * 3 for m, v in regs.items()}},
                   "jacobian_last_epoch")
    assert check(8, {"rnode_ablation": stable})[0] == NOT_REPRODUCED
    # a regulariser that does not lower the Jacobian by 10 %: not reproduced either
    weak = _runs("rnode_ablation", "mnist", {"rk4_none": [np.nan] * 3,
                                             "rk4_kinetic": [0.5, 0.51, 0.5],
                                             "rk4_jacobian": [0.2, 0.21, 0.2],
                                             "rk4_both": [0.1, 0.1, 0.11]},
                 "jacobian_last_epoch")
    weak.loc[weak["model"] == "rk4_none", "status"] = "failed"
    weak = pd.concat([weak, _runs("rnode_ablation", "mnist", {"rk4_none": [0.5, 0.5, 0.52]},
                                  "jacobian_last_epoch").assign(seed=[3, 4, 5])])
    assert check(8, {"rnode_ablation": weak})[0] == NOT_REPRODUCED


def _profiles(direct, adjoint):
    return pd.DataFrame([{"experiment": "node_adjoint", "dataset": "spheres2d", "model": m,
                          "seed": s, "status": "completed", "direct_memory_growth_ratio": d,
                          "adjoint_memory_growth_ratio": a, "direct_steps_min": 4,
                          "direct_steps_max": 64}
                         for m in ("node", "ffjord") for s, (d, a) in
                         enumerate(zip(direct, adjoint, strict=True))])


def test_claim_9_adjoint_memory():
    assert check(9, {"node_adjoint": _profiles([15.8, 16.0], [1.0, 1.02])})[0] == REPRODUCED
    assert check(9, {"node_adjoint": _profiles([15.8, 16.0], [8.0, 9.0])})[0] == NOT_REPRODUCED
    assert check(9, {"node_adjoint": _profiles([15.8, 16.0], [1.0, 3.0])})[0] == INCONCLUSIVE


@pytest.mark.parametrize("z,verdict", [
    (np.random.default_rng(0).standard_normal(40), REPRODUCED),
    (np.random.default_rng(0).standard_normal(40) + 4.0, NOT_REPRODUCED),
])
def test_claim_10_hutchinson(z, verdict):
    runs = pd.DataFrame({"experiment": "affjord_toy", "dataset": "hash", "model": "ffjord",
                         "seed": range(len(z)), "status": "completed",
                         "hutchinson_gaussian_z": z, "hutchinson_rademacher_z": z})
    assert check(10, {"affjord_toy": runs})[0] == verdict
    assert check(10, {"affjord_toy": runs.drop(columns=["hutchinson_gaussian_z",
                                                        "hutchinson_rademacher_z"])}
                 )[0] == INCONCLUSIVE


def test_budget_names_power_seeds_noise_floor_cost_and_scale():
    # ANODE ahead by 1 point with spread 1.5 at 3 seeds: undecided
    runs = _runs("anode_images", "mnist5k", {"node": [96.0, 97.5, 95.0],
                                             "anode": [97.0, 98.5, 96.0]},
                 "test_accuracy_pct", epochs=20, train_wall_seconds=60.0, device="cpu")
    scales = {"laptop": {"anode_images": {"seeds": 3, "epochs": 20, "iterations": None,
                                          "datasets": ["mnist5k"], "step_share": 0.5}},
              "workstation": {"anode_images": {"seeds": 40, "epochs": 20, "iterations": None,
                                               "datasets": ["mnist5k"], "step_share": 0.5}}}
    ev = Evidence({"anode_images": runs}, "laptop", {"mnist5k": "a subset"}, TRAINING,
                  {"mnist5k": {"data": "images", "n_test": 500}}, scales,
                  {"anode_images": Protocol("on mnist5k (for MNIST)", 0.5)})
    c = CLAIMS.get("3")
    assert c.check(ev)[0] == INCONCLUSIVE
    lines = budget(ev, c)
    from odeflows.claims.stats import seeds_for_power
    sd = math.sqrt((np.std([97.0, 98.5, 96.0], ddof=1) ** 2 + np.std(
        [96.0, 97.5, 95.0], ddof=1) ** 2) / 2)
    n = seeds_for_power(1.0, sd, sd)
    assert any(f"80 % power at the rule's level: {n} at the observed effect +1" in e
               for e in lines), lines
    assert any("noise floor of the fixed test set (500 examples)" in e for e in lines)
    assert any("CPU-hours" in e for e in lines)
    assert any("provided by the `workstation` scale" in e for e in lines)
    # below the share of the paper's steps the claim needs, the budget says so
    ev.protocol = {"anode_images": Protocol("on mnist5k (for MNIST)", 0.05)}
    assert any("this scale runs 5 % of the paper's optimiser steps; the rule needs at least "
               "25 %" in e for e in budget(ev, c))


def test_the_protocol_gate_withholds_both_verdicts_and_says_which_way_they_lean():
    good = _runs("anode_images", "mnist", {"node": [96.1, 96.5, 96.9, 96.3, 96.6],
                                           "anode": [98.1, 98.3, 98.2, 98.0, 98.2]},
                 "test_accuracy_pct", epochs=20)
    flipped = good.assign(model=good["model"].map({"node": "anode", "anode": "node"}))
    for runs, leans in ((good, REPRODUCED), (flipped, NOT_REPRODUCED)):
        for share, verdict in ((0.1, INCONCLUSIVE), (1.0, leans)):
            ev = Evidence({"anode_images": runs}, "test", {}, TRAINING, paper_numbers=PAPER,
                          protocol={"anode_images": Protocol("", share)})
            r = judge(ev, CLAIMS.get("3"))
            assert r["verdict"] == verdict
            assert r["leans"] == ("" if share == 1.0 else leans)
            assert r["at_paper"] == (share == 1.0)
    # a wiring-check scale gives no verdicts at all
    ev = Evidence({"anode_images": good}, "smoke", verdicts=False, paper_numbers=PAPER)
    assert {r["verdict"] for r in evaluate_claims(ev).values()} == {NOT_TESTED}


def test_image_flows_are_judged_against_the_baseline():
    from odeflows.claims import FINDINGS

    runs = _runs("affjord_images", "digits8x8", {"ffjord": [2.1, 2.2], "affjord": [2.5, 2.6],
                                                 "pixel_histogram": [2.39, 2.39]}, "test_bpd")
    runs["baseline"] = runs["model"] == "pixel_histogram"
    lines = FINDINGS.get("baselines").lines(Evidence({"affjord_images": runs}))
    assert "baseline 2.390" in lines[0] and "ffjord 2.150 (beats it by 0.240)" in lines[0]
    assert "affjord 2.550 (does NOT beat it: 0.160 worse)" in lines[0]


def test_report_front_page_and_metrics_rows(tmp_path):
    from docutils.core import publish_parts

    from odeflows.claims import write_claims, write_metrics

    tables = tmp_path / "tables"
    tables.mkdir()
    _runs("anode_images", "mnist", {"node": [96.1, 96.5, 96.9], "anode": [98.1, 98.3, 98.2]},
          "test_accuracy_pct", epochs=20).to_csv(tables / "anode_images_runs.csv", index=False)
    result = write_claims("test", tables, tmp_path / "claims.md", ROOT / "config",
                          report_dir=tmp_path / "report")
    front = (tmp_path / "report" / "front.rst").read_text()
    assert "`evidence <claim_03.html_>`__" in front and ":v-reproduced:`reproduced`" in front
    # the page is valid reStructuredText once the report adds its link targets
    targets = "".join(f"\n.. _claim_{n:02d}.html: x\n" for n in result)
    html = publish_parts(front + targets + "\n.. _Tables: x\n.. _Figures: x\n",
                         writer_name="html", settings_overrides={"report_level": 2,
                                                                 "halt_level": 2})["html_body"]
    assert "<table" in html and 'class="v-reproduced"' in html and ">evidence</a>" in html
    page = (tmp_path / "report" / "claim_03.html").read_text()
    assert "reproduced" in page and "Welch" in page and "Rule" in page
    assert "unchanged since" in page or "revised on" in page
    assert "## Claim 3: reproduced" in (tmp_path / "claims.md").read_text()
    rows = write_metrics(tables, tmp_path / "metrics", result)
    assert (tmp_path / "metrics" / "claims" / "claim_03.json") in rows


def test_a_claim_whose_experiment_this_scale_leaves_out_says_where_it_runs():
    scales = {"workstation": {"rnode_images": {"seeds": 1, "epochs": 25, "iterations": None,
                                               "datasets": ["digits8x8"]}}}
    ev = Evidence({}, "laptop", {}, TRAINING, {}, scales)
    c = CLAIMS.get("7")
    assert c.check(ev)[0] == INCONCLUSIVE
    (line,) = budget(ev, c)
    assert "not run at this scale" in line
    assert "`workstation` (rnode_images: 1 seed, 25 epochs on digits8x8)" in line
