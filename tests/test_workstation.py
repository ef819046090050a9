"""The workstation scale in CI: its dry run schedules exactly its planned runs, and one of its
heaviest jobs (a multiscale image flow at its settings) trains and evaluates, shortened to two
iterations. The whole scale (about 2 hours on 2 cores) is run by hand, not here."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
from test_workflow import _copy_project, _job_counts, _snakemake

from conftest import ROOT
from odeflows.config import dataset_config, plan
from odeflows.data.prepared import prepare
from odeflows.evaluate import evaluate
from odeflows.train import train

pytestmark = pytest.mark.slow

PLAN = plan({"scale": "workstation", "config_dir": str(ROOT / "config")})


def test_dry_run_schedules_the_planned_runs(tmp_path):
    wd = _copy_project(tmp_path)
    dry = _snakemake(wd, "-n", "--config", "scale=workstation")
    assert dry.returncode == 0, dry.stderr[-3000:]
    counts = _job_counts(dry.stdout)
    assert counts["train"] == counts["evaluate"] == len(PLAN.runs)
    # what the default scale leaves out (0 seeds there) runs here
    assert {"rnode_images", "rnode_ablation"} <= set(PLAN.experiments)
    # longest first: the hour-long image flows outrank the other runs, and the data they read
    # outranks them (Snakemake does not pass priorities on to the jobs a job waits for)
    jobs = re.findall(r"^(?:local)?rule (\w+):\n(?:    .*\n)*?    wildcards: (.*)\n"
                      r"(?:    .*\n)*?    priority: (\d+)", dry.stdout, flags=re.M)
    prio = {(rule, wildcards): int(p) for rule, wildcards, p in jobs}
    train = {w: p for (r, w), p in prio.items() if r == "train"}
    prepare = {w.split("dataset=")[1]: p for (r, w), p in prio.items() if r == "prepare_data"}
    assert len(train) == len(PLAN.runs) and len(prepare) == len({s.dataset for s in PLAN.runs})
    long_runs = {w for w, p in train.items() if p == max(train.values())}
    assert long_runs and all("affjord_images" in w for w in long_runs)
    assert prepare["digits8x8"] > max(train.values())
    assert all(p > max(q for w, q in train.items() if f"dataset={ds}," in w)
               for ds, p in prepare.items())


def test_one_image_flow_job_at_its_settings(tmp_path):
    spec = next(s for s in PLAN.runs
                if s.experiment == "affjord_images" and s.model == "affjord_concat")
    cfg = copy.deepcopy(PLAN.configs[spec])
    assert cfg["train"]["epochs"] == 125 and cfg["solver"]["method"] == "dopri5"
    cfg["train"] |= {"iterations": 2, "val_every": 2}
    cfg["eval"] |= {"samples": 4}
    data = tmp_path / "digits8x8.npz"
    prepare(dataset_config(spec.dataset, "workstation", ROOT / "config"), data)
    summary = train(cfg, data, tmp_path / "run", progress=False)
    assert summary["status"] == "completed" and summary["iterations"] == 2
    result = evaluate(tmp_path / "run", data)
    assert result["status"] == "completed" and np.isfinite(result["test_bpd"])


def test_claim_3_runs_on_parameter_matched_14x14_classifiers(tmp_path):
    specs = [s for s in PLAN.runs if s.experiment == "anode_images"]
    assert {s.dataset for s in specs} == {"mnist5k14"}
    assert {s.model for s in specs} == {"node", "anode"} and len(specs) == 6
    # 5 of the paper's 20 epochs on 4,000 images: a pilot (7.3 % of the paper's optimiser steps)
    assert all(PLAN.configs[s]["train"]["epochs"] == 5 for s in specs)
    data = tmp_path / "mnist5k14.npz"
    prepare(dataset_config("mnist5k14", "workstation", ROOT / "config"), data)
    with np.load(data) as arrays:
        assert arrays["x_train"].shape == (4000, 1, 14, 14)
        assert arrays["x_test"].shape == (500, 1, 14, 14)
    counts = {}
    for spec in (s for s in specs if s.seed == 0):
        cfg = copy.deepcopy(PLAN.configs[spec])
        cfg["train"] |= {"iterations": 1, "val_every": 1}
        summary = train(cfg, data, tmp_path / spec.model, progress=False)
        assert summary["status"] == "completed"
        counts[spec.model] = summary["num_parameters"]
    # parameter-matched as in ANODE App. F.2.2 (within 3 %)
    assert abs(counts["anode"] - counts["node"]) / counts["node"] < 0.03
