"""Every paper-scale image configuration builds with its real input shape, reports its parameter
count, and trains two steps through the real training loop on a tiny batch (no download).

Only the solver is swapped for one Euler step so full-size models (CelebA-HQ 256²) take a few
CPU seconds; the architecture, losses, dequantisation and optimiser are the paper's.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from odeflows.claims import registered_claims
from odeflows.config import plan
from odeflows.data import get_generator
from odeflows.evaluate import evaluate
from odeflows.models import get_model
from odeflows.train import train

# every paper configuration trained two steps (the slow tier)
pytestmark = pytest.mark.slow

QUICK_SOLVER = {"method": "euler", "steps": 1, "step_size": None}


PLAN = plan({"scale": "paper"})
IMAGE_EXPERIMENTS = ("anode_images", "affjord_images", "rnode_images", "rnode_ablation",
                     "affjord_rnode")
# one run (seed 0) per (experiment, dataset, model) of the papers' paper-scale image runs (the
# primer's ladders, which also run on the offline subsets, are tested in test_primer.py)
CELLS = [s for s in PLAN.runs if s.seed == 0 and PLAN.configs[s]["data"]["kind"] == "images"
         and s.experiment in IMAGE_EXPERIMENTS]


def _tiny_prepared(path, source: str, n: int = 2):
    """A prepared file in the real format (uint8 images, int64 labels) of the dataset's shape."""
    info = get_generator(source)
    rng = np.random.default_rng(0)
    arrays = {}
    for split in ("train", "val", "test"):
        arrays[f"x_{split}"] = rng.integers(0, 256, (n, *info.shape), dtype=np.uint8)
        arrays[f"y_{split}"] = rng.integers(0, info.classes, n).astype(np.int64)
    np.savez(path, **arrays)
    path.with_suffix(".json").write_text(json.dumps(
        {"dataset": source, "data": "images", "shape": list(info.shape),
         "classes": info.classes, "bits": info.bits}))
    return path


def test_every_image_experiment_has_paper_runs():
    assert {c.experiment for c in CELLS} >= set(IMAGE_EXPERIMENTS)
    # the papers' datasets, not the offline subsets, at paper scale
    assert not {c.dataset for c in CELLS} & {"mnist5k", "digits8x8"}


@pytest.mark.parametrize("spec", CELLS, ids=lambda s: f"{s.experiment}-{s.dataset}-{s.model}")
def test_paper_config_builds_and_trains_two_steps(tmp_path, spec):
    cfg = PLAN.configs[spec]
    source = cfg["data"]["generator"]
    cfg["solver"] = {**cfg["solver"], **QUICK_SOLVER}
    cfg["eval_solver"] = {**cfg["eval_solver"], **QUICK_SOLVER}
    cfg["train"] = {**cfg["train"], "iterations": 2, "batch_size": 1, "val_every": 2,
                    "device": "cpu", "warmup_iters": cfg["train"].get("warmup_iters", 0)}
    cfg["eval"] = {**cfg["eval"], "batch_size": 2, "samples": 0}
    data = _tiny_prepared(tmp_path / f"{source}.npz", source)
    summary = train(cfg, data, tmp_path / "run", progress=False)
    assert summary["status"] == "completed", summary["reason"]
    # an entry fitted in closed form takes no optimisation steps and has no trainable weights
    fitted = get_model(cfg["model"], "images").fit is not None
    assert summary["iterations"] == (0 if fitted else 2)
    assert (summary["num_parameters"] == 0) == fitted
    record = json.loads((tmp_path / "run" / "record.json").read_text())
    assert record["num_parameters"] == summary["num_parameters"]
    result = evaluate(tmp_path / "run", data)
    assert result["status"] == "completed"
    key = "test_accuracy" if cfg["task"] == "classification" else "test_bpd"
    assert np.isfinite(result[key])


# the fewest seeds at which every rule can decide: a Welch interval needs 2 per arm, and claim
# 8's one-sided Fisher test on failed seeds reaches α/2 only from 3 per arm (p = 1/220)
FEWEST_DECIDING_SEEDS = 3


def test_the_paper_scale_runs_enough_seeds_for_every_claim_to_decide():
    seeds = Counter((s.experiment, s.dataset, s.model) for s in PLAN.runs)
    for c in registered_claims():
        for exp in c.experiments:
            counts = {k: n for k, n in seeds.items() if k[0] == exp}
            assert counts, f"claim {c.number}: {exp} does not run at the paper scale"
            few = {k: n for k, n in counts.items() if n < FEWEST_DECIDING_SEEDS}
            assert not few, f"claim {c.number} could not decide at the paper scale: {few}"
