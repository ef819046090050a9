"""Claim verdicts on synthetic per-seed tables: each registered check can return each verdict,
for the reason its rule states."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT
from odeflows.claims import (
    CLAIMS,
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    Evidence,
    budget,
    evaluate_claims,
    qualifier,
    registered_claims,
    seeds_for_t,
)

TRAINING = {"anode_images": {"epochs": 20}, "affjord_images": {"epochs": 500},
            "rnode_images": {"epochs": 100}, "rnode_ablation": {"epochs": 100},
            "affjord_toy": {"iterations": 14000}}


def check(number, tables):
    ev = Evidence(tables, "test", {"mnist5k": "a subset"}, TRAINING)
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
    assert check(3, {"anode_images": good})[0] == REPRODUCED
    flipped = good.assign(model=good["model"].map({"node": "anode", "anode": "node"}))
    assert check(3, {"anode_images": flipped})[0] == NOT_REPRODUCED
    # a clear reversal after 1 of 20 epochs says nothing about the trained models
    verdict, ev = check(3, {"anode_images": flipped.assign(epochs_trained=1)})
    assert verdict == INCONCLUSIVE and any("inconclusive at this scale" in e for e in ev)
    assert check(3, {"anode_images": good[good["seed"] == 0]})[0] == INCONCLUSIVE
    assert check(3, {})[0] == INCONCLUSIVE
    # a stand-in dataset says what it stands in for
    _, ev = check(3, {"anode_images": good.assign(dataset="mnist5k")})
    assert any("mnist5k (a subset)" in e for e in ev)


def test_claim_4_affjord_toy():
    runs = _runs("affjord_toy", "hash", {"ffjord": [1.10, 1.12, 1.11, 1.13],
                                         "affjord": [1.00, 1.01, 1.02, 1.00]},
                 "best_val_loss", iterations=14000)
    assert check(4, {"affjord_toy": runs})[0] == REPRODUCED
    reversed_ = runs.assign(model=runs["model"].map({"ffjord": "affjord", "affjord": "ffjord"}))
    assert check(4, {"affjord_toy": reversed_})[0] == NOT_REPRODUCED
    # the same reversal after 1,000 of the paper's 14,000 iterations cannot refute the claim
    verdict, ev = check(4, {"affjord_toy": reversed_.assign(iterations=1000)})
    assert verdict == INCONCLUSIVE and any("paper: up to 14000" in e for e in ev)
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
    assert check(4, {"affjord_toy": runs.drop(columns="grid_mass")})[0] == NOT_REPRODUCED
    verdict, ev = check(4, {"affjord_toy": runs})
    assert verdict == REPRODUCED
    assert any("excluded" in e and "ffjord hash seed 2 (2e+16)" in e for e in ev)
    assert any("(n=3)" in e for e in ev)
    # a model left with one valid run cannot be tested: inconclusive, saying why
    broken = runs.assign(grid_mass=np.where(runs["model"] == "affjord",
                                            [0.0] * 4 + [1.0, 27.0, 3e4, 1.2],
                                            runs["grid_mass"]))
    verdict, ev = check(4, {"affjord_toy": broken})
    assert verdict == INCONCLUSIVE
    assert any("hash: 3 FFJORD and 1 AFFJORD runs with a valid density" in e for e in ev)
    # a grid mass below one is no defect (mass may lie outside the grid), and the limit leaves
    # the Riemann sum's error: every run counts, the −31.9 among them
    low = runs.assign(grid_mass=np.where(runs["grid_mass"] > 2, 1.09, 0.4))
    verdict, ev = check(4, {"affjord_toy": low})
    assert verdict == NOT_REPRODUCED and not any("excluded" in e for e in ev)


def test_a_solver_coarser_than_the_papers_is_named_as_a_substitute():
    runs = _runs("affjord_toy", "hash", {"ffjord": [1.1, 1.2], "affjord": [1.0, 1.05]},
                 "best_val_loss", iterations=14000, solver_method="rk4",
                 solver_steps={"ffjord": [20, 20], "affjord": [20, 10]})
    paper = {**TRAINING, "affjord_toy": {"iterations": 14000,
                                         "solver": {"method": "rk4", "steps": 40}}}
    ev = Evidence({"affjord_toy": runs}, "workstation", {}, paper)
    assert qualifier(ev, CLAIMS.get("4")) == "on RK4 with 10 of the paper's 40 steps"
    ev = Evidence({"affjord_toy": runs.assign(solver_steps=40)}, "paper", {}, paper)
    assert qualifier(ev, CLAIMS.get("4")) == ""
    ev = Evidence({"affjord_toy": runs.assign(solver_method="dopri5", solver_steps=None)},
                  "laptop", {}, paper)
    assert qualifier(ev, CLAIMS.get("4")) == "on trained with dopri5 (the paper: rk4)"


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
    more = bpd.assign(nfe_train_mean=np.where(bpd["model"] == "affjord_concat", 500,
                                              bpd["nfe_train_mean"]))
    assert check(6, {"affjord_images": more})[0] == NOT_REPRODUCED
    worse = bpd.assign(test_bpd=np.where(bpd["model"] == "affjord", 1.2, bpd["test_bpd"]))
    assert check(5, {"affjord_images": worse})[0] == NOT_REPRODUCED


def test_claim_7_speed_and_matching_bpd():
    runs = _runs("rnode_images", "mnist", {"ffjord": [0.97], "rnode": [0.97]},
                 "test_bpd_dequantized", train_hours={"ffjord": [68.5], "rnode": [24.4]},
                 nfe_train_mean=100)
    verdict, lines = check(7, {"rnode_images": runs})
    assert verdict == REPRODUCED
    # 68.5 h vs 24.4 h: the paper's 2.8x, in hours shown as seconds
    assert "ffjord 2.47e+05 s vs rnode 8.78e+04 s (RNODE's speed-up ×2.81)" in lines[0]
    slow = runs.assign(train_hours=[68.5, 60.0])
    assert check(7, {"rnode_images": slow})[0] == NOT_REPRODUCED
    assert check(7, {"rnode_images": slow.assign(epochs_trained=4)})[0] == INCONCLUSIVE


def test_claim_8_ablation():
    runs = _runs("rnode_ablation", "mnist",
                 {"rk4_none": [np.nan], "rk4_kinetic": [0.5], "rk4_jacobian": [0.2],
                  "rk4_both": [0.1]}, "jacobian_last_epoch")
    runs.loc[runs["model"] == "rk4_none", "status"] = "failed"
    assert check(8, {"rnode_ablation": runs})[0] == REPRODUCED
    stable = runs.assign(status="completed", jacobian_last_epoch=[5.0, 0.5, 0.2, 0.1])
    verdict, ev = check(8, {"rnode_ablation": stable})
    assert verdict == INCONCLUSIVE and any("did not fail" in e for e in ev)
    worse = stable.assign(jacobian_last_epoch=[0.1, 0.5, 0.2, 0.3])
    assert check(8, {"rnode_ablation": worse})[0] == NOT_REPRODUCED


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


def test_seeds_for_t_inverts_welch_t():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 1.0, 50), rng.normal(0.0, 1.0, 50)
    n = seeds_for_t(a, b)
    # at n seeds per model with these means and spreads, t reaches 2 (and not at n - 1)
    delta, var = a.mean() - b.mean(), a.var(ddof=1) + b.var(ddof=1)
    assert delta / np.sqrt(var / n) >= 2 > delta / np.sqrt(var / (n - 1))
    assert seeds_for_t(a[:1], b) is None


def test_budget_of_an_undecided_claim_names_seeds_cost_and_scale():
    # ANODE ahead by 1 point with spread 1.5: t < 2 at 3 seeds, enough training
    runs = _runs("anode_images", "mnist5k", {"node": [96.0, 97.5, 95.0],
                                             "anode": [97.0, 98.5, 96.0]},
                 "test_accuracy_pct", epochs=20, train_wall_seconds=60.0, device="cpu")
    scales = {"laptop": {"anode_images": {"seeds": 3, "epochs": 20, "iterations": None,
                                          "datasets": ["mnist5k"]}},
              "workstation": {"anode_images": {"seeds": 30, "epochs": 20, "iterations": None,
                                               "datasets": ["mnist5k"]}}}
    ev = Evidence({"anode_images": runs}, "laptop", {"mnist5k": "a subset"}, TRAINING,
                  {"mnist5k": {"bits": 8, "native": "28×28", "image_size": None}}, scales)
    c = CLAIMS.get("3")
    assert c.check(ev)[0] == INCONCLUSIVE
    lines = budget(ev, c)
    expected = seeds_for_t(np.array([97.0, 98.5, 96.0]), np.array([96.0, 97.5, 95.0]))
    assert any(f"{expected} seeds per model (this scale: 3)" in line for line in lines)
    assert any("CPU-hours" in line for line in lines)
    assert any("provided by the `workstation` scale" in line for line in lines)
    # what it was tested on: the stand-in dataset (and no shortfall of epochs here)
    assert qualifier(ev, c) == "on mnist5k at 28×28, 8 bits"
    short = runs.assign(epochs_trained=4)
    ev.tables["anode_images"] = short
    assert "4 of the paper's 20 epochs" in qualifier(ev, c)
    # training under a quarter of the paper's: the rule needs 5 epochs too
    assert any("5 epochs (this scale: 4)" in line for line in budget(ev, c))


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
    assert "claim_03.html_" in front and "**reproduced**" in front
    # the page is valid reStructuredText once the report adds its link targets
    targets = "".join(f"\n.. _claim_{n:02d}.html: x\n" for n in result)
    html = publish_parts(front + targets + "\n.. _Tables: x\n.. _Figures: x\n",
                         writer_name="html", settings_overrides={"report_level": 2,
                                                                 "halt_level": 2})["html_body"]
    assert "<table" in html
    page = (tmp_path / "report" / "claim_03.html").read_text()
    assert "reproduced" in page and "Welch t" in page and "Rule" in page
    assert "## Claim 3: reproduced" in (tmp_path / "claims.md").read_text()
    rows = write_metrics(tables, tmp_path / "metrics", result)
    assert (tmp_path / "metrics" / "claims" / "claim_03.json") in rows


def test_training_length_ignores_fitted_baselines_and_follows_the_data_kind():
    # a closed-form baseline trains 0 epochs: neither the qualifier nor the rule's "trained long
    # enough" may read that as the flows' training length
    flows = _runs("affjord_images", "digits8x8",
                  {"ffjord": [2.1, 2.2], "affjord_concat": [2.0, 2.1],
                   "pixel_histogram": [2.39, 2.39]}, "test_bpd", epochs=200)
    flows["baseline"] = flows["model"] == "pixel_histogram"
    flows.loc[flows["baseline"], "epochs_trained"] = 0
    images = {"digits8x8": {"data": "images", "bits": 4, "native": "8×8", "image_size": None}}
    ev = Evidence({"affjord_images": flows}, "laptop", {}, TRAINING, images)
    assert qualifier(ev, CLAIMS.get("6")) == \
        "on digits8x8 at 8×8, 4 bits; 200 of the paper's 500 epochs"
    assert ev.short("affjord_images", flows) is None  # 200 ≥ a quarter of 500
    # where the paper gives both units, images are measured in epochs and vectors in iterations
    mixed = pd.concat([
        _runs("primer_flows", "digits8x8", {"maf_xs": [7.0]}, "test_bpd", epochs=1, iterations=11),
        _runs("primer_flows", "8gaussians", {"maf_xs": [3.0]}, "test_loss", epochs=2.5,
              iterations=500)])
    both = {**TRAINING, "primer_flows": {"epochs": 100, "iterations": 10000}}
    ev = Evidence({"primer_flows": mixed}, "laptop", {}, both, images)
    tested = qualifier(ev, CLAIMS.get("11"))
    assert "1 of the paper's 100 epochs" in tested
    assert "500 of the paper's 10000 iterations" in tested
    assert "11 of the paper's" not in tested


def test_a_claim_whose_experiment_this_scale_leaves_out_says_where_it_runs():
    scales = {"workstation": {"rnode_images": {"seeds": 1, "epochs": 25, "iterations": None,
                                               "datasets": ["digits8x8"]}}}
    ev = Evidence({}, "laptop", {}, TRAINING, {}, scales)
    c = CLAIMS.get("7")
    assert c.check(ev)[0] == INCONCLUSIVE
    (line,) = budget(ev, c)
    assert "not run at this scale" in line
    assert "`workstation` (rnode_images: 1 seed, 25 epochs on digits8x8)" in line
