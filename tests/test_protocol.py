"""Protocol deviations: each run's resolved config diffed against the paper scale's."""

from __future__ import annotations

import math
import shutil

import pytest
import yaml

from conftest import ROOT
from odeflows.claims.protocol import (
    Difference,
    experiment_deviations,
    paper_counterpart,
    protocol_deviations,
)
from odeflows.config import ConfigError, experiment_ids, resolve_run, run_resources
from odeflows.data.images import DATASETS
from odeflows.rundir import RunSpec
from odeflows.tasks import get_task
from odeflows.train import total_iterations

CONFIG = str(ROOT / "config")
MNIST_TRAIN = 60_000  # the official MNIST training set, before validation images are carved


def _yaml(name: str) -> dict:
    return yaml.safe_load((ROOT / "config" / name).read_text())


@pytest.mark.parametrize("experiment", experiment_ids(CONFIG))
def test_the_paper_scale_is_the_protocol(experiment):
    found = experiment_deviations(experiment, "paper", CONFIG)
    assert found.cells, "every experiment runs at the paper scale"
    assert found.at_protocol and found.summary() == "at the paper's protocol"
    for (dataset, model), dev in found.cells.items():
        assert dev.paper_dataset == dataset and dev.differences == ()
        task = get_task(resolve_run(RunSpec("paper", experiment, dataset, model, 0),
                                    CONFIG)["task"])
        assert dev.step_share == (1.0 if task.loop else None), (dataset, model)


def test_claim_7s_ffjord_baseline_names_its_coarser_tolerance():
    exp = _yaml("experiments/rnode_images.yaml")
    ours = exp["scales"]["laptop"]["overrides"]["solver"]
    paper = exp["settings"]["solver"]
    assert ours["rtol"] != paper["rtol"]
    dev = protocol_deviations("rnode_images", "digits8x8", "ffjord", "workstation", CONFIG)
    assert dev.get("solver.rtol") == Difference("solver", "solver.rtol", ours["rtol"],
                                                paper["rtol"])
    assert dev.get("solver.atol").paper == paper["atol"]
    assert "rtol 1e-3 (paper 1e-5)" in dev.summary()
    # RNODE's own fixed-grid RK4 is the paper's: no solver method or step difference
    rnode = protocol_deviations("rnode_images", "digits8x8", "rnode", "workstation", CONFIG)
    assert rnode.get("solver.method") is None and rnode.get("solver.step_size") is None


def test_affjord_images_workstation_is_digits8x8_for_mnist_at_about_2_percent():
    exp, sets = _yaml("experiments/affjord_images.yaml"), _yaml("datasets.yaml")
    laptop, ws = exp["scales"]["laptop"]["overrides"], exp["scales"]["workstation"]["overrides"]
    ours = ws["train"]["epochs"] * math.ceil(sets["digits8x8"]["sizes"]["laptop"]["train"]
                                             / laptop["train"]["batch_size"])
    paper_n = MNIST_TRAIN - sets["mnist"]["sizes"]["paper"]["val"]
    paper = exp["settings"]["train"]["epochs"] * math.ceil(
        paper_n / exp["settings"]["train"]["batch_size"])
    dev = protocol_deviations("affjord_images", "digits8x8", "ffjord", "workstation", CONFIG)
    assert dev.paper_dataset == "mnist" and dev.substituted
    assert (dev.steps, dev.paper_steps) == (ours, paper)
    assert dev.step_share == pytest.approx(ours / paper)
    assert 0.015 < dev.step_share < 0.025
    assert dev.get("dataset") == Difference("data", "dataset", "digits8x8", "mnist")
    assert dev.get("data.bits") == Difference("data", "data.bits", 4, 8)
    assert dev.get("data.resolution") == Difference("data", "data.resolution", "8×8", "28×28")
    assert dev.get("data.n_train") == Difference("data", "data.n_train", 1297, paper_n)
    assert dev.get("train.epochs") == Difference("training length", "train.epochs", 125, 500)
    assert {d.kind for d in dev.differences} >= {"data", "solver", "architecture",
                                                 "optimisation", "training length"}
    summary = experiment_deviations("affjord_images", "workstation", CONFIG).summary()
    assert summary.startswith("on digits8x8 (for mnist): resolution 8×8 (paper 28×28)")
    assert summary.endswith("1.9 % of the paper's optimiser steps")


@pytest.mark.parametrize("scale, experiment, dataset, model", [
    ("workstation", "affjord_images", "digits8x8", "ffjord"),
    ("workstation", "affjord_toy", "hash", "ffjord"),
    ("paper", "rnode_images", "imagenet64", "rnode"),  # 4 DDP processes
    ("paper", "anode_images", "tinyimagenet", "node"),
])
def test_steps_are_counted_as_the_training_loop_counts_them(scale, experiment, dataset, model):
    dev = protocol_deviations(experiment, dataset, model, scale, CONFIG)
    cfg = resolve_run(RunSpec(scale, experiment, dataset, model, 0), CONFIG)
    world = int(run_resources(scale, experiment, dataset, CONFIG).get("processes", 1))
    n_train = {"digits8x8": 1297, "hash": 50_000, "imagenet64": 1_281_167 - 10_000,
               "tinyimagenet": 100_000 - 10_000}[dataset]
    assert dev.steps == total_iterations(cfg["train"], n_train, world)[0]


def _config_with(tmp_path, laptop: dict) -> str:
    """A copy of config/ with one more experiment: g1d/node, whose laptop scale sets
    ``laptop`` over the paper's settings (g1d has 1,000 training points at both scales)."""
    cdir = tmp_path / "config"
    shutil.copytree(ROOT / "config", cdir)
    exp = {"id": "probe", "title": "probe", "source": "tests", "datasets": ["g1d"],
           "models": ["node"],
           "settings": {"model_options": {"hidden": 8, "readout": "project"},
                        "solver": {"method": "dopri5", "rtol": 1e-3, "atol": 1e-3},
                        "train": {"lr": 1e-3, "batch_size": 64, "epochs": 50, "threads": 1},
                        "eval": {"batch_size": 1000}},
           "scales": {"laptop": {"seeds": 1, **laptop}, "paper": {"seeds": 1}}}
    (cdir / "experiments" / "probe.yaml").write_text(yaml.safe_dump(exp))
    return str(cdir)


def test_only_a_batch_size_differs(tmp_path):
    cdir = _config_with(tmp_path, {"overrides": {"train": {"batch_size": 32}}})
    dev = protocol_deviations("probe", "g1d", "node", "laptop", cdir)
    assert dev.differences == (Difference("optimisation", "train.batch_size", 32, 64),)
    assert (dev.steps, dev.paper_steps) == (50 * 32, 50 * 16)  # ⌈1000 / 32⌉, ⌈1000 / 64⌉
    assert dev.step_share == 2.0
    assert dev.summary() == ("optimisation: batch_size 32 (paper 64); "
                             "200 % of the paper's optimiser steps (1,600 of 800)")
    # an edited file is read again, not served from the cache
    path = tmp_path / "config" / "experiments" / "probe.yaml"
    path.write_text(path.read_text().replace("batch_size: 32", "batch_size: 128"))
    assert protocol_deviations("probe", "g1d", "node", "laptop", cdir).step_share == 0.5


def test_keys_declared_irrelevant_are_no_deviation(tmp_path):
    cdir = _config_with(tmp_path, {"overrides": {"train": {"threads": 2, "val_every": 5,
                                                           "checkpoint_every": 7},
                                                 "eval": {"batch_size": 10}}})
    dev = protocol_deviations("probe", "g1d", "node", "laptop", cdir)
    assert dev.at_protocol and dev.step_share == 1.0
    assert experiment_deviations("probe", "laptop", cdir).headline() == "at the paper's protocol"


def test_a_substitute_without_a_paper_run_says_so(tmp_path):
    cdir = _config_with(tmp_path, {})
    assert paper_counterpart("anode_images", "digits8x8", "node", cdir) == "mnist"
    assert paper_counterpart("primer_flows", "digits8x8", "ffjord_xs", cdir) == "digits8x8"
    # anode_toy's paper scale runs neither digits8x8 nor the MNIST it stands in for
    assert paper_counterpart("anode_toy", "digits8x8", "node", cdir) is None
    path = tmp_path / "config" / "datasets.yaml"
    path.write_text(path.read_text().replace("stands_in_for: mnist", "stands_in_for: mnsit", 1))
    with pytest.raises(ConfigError, match=r"mnist5k\.stands_in_for: 'mnsit' is not a dataset"):
        paper_counterpart("anode_images", "mnist5k", "node", cdir)


def test_no_paper_run_is_reported_not_guessed(tmp_path):
    cdir = _config_with(tmp_path, {})
    path = tmp_path / "config" / "experiments" / "probe.yaml"
    exp = yaml.safe_load(path.read_text())
    exp["datasets"] = ["g1d", "spheres2d"]
    exp["scales"]["paper"]["datasets"] = ["g1d"]
    path.write_text(yaml.safe_dump(exp))
    dev = protocol_deviations("probe", "spheres2d", "node", "laptop", cdir)
    assert dev.paper_dataset is None and dev.step_share is None and not dev.at_protocol
    assert dev.summary() == "spheres2d/node: no run at scale paper to compare with"
    summary = experiment_deviations("probe", "laptop", cdir).summary()
    assert summary.endswith("no paper-scale run for spheres2d/node")


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_each_image_set_knows_its_training_set_size(name):
    # the count the step share divides by is the one the dataset's description states
    ds = DATASETS[name]
    assert ds.train_images and f"{ds.train_images:,}" in ds.description
