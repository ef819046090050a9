"""Code versions follow each stage's own imports: the rerun triggers of the workflow."""

from __future__ import annotations

import pytest
import yaml

from conftest import ROOT
from odeflows.config import dataset_config, plan
from odeflows.versions import STAGES, code_version, module_closure


@pytest.fixture(scope="module")
def default_plan():
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["config_dir"] = str(ROOT / "config")
    return plan(config)


def test_solver_code_reruns_training_and_evaluation_but_not_data_preparation(default_plan):
    p = default_plan
    for dataset in p.datasets():
        prepare = code_version("prepare", dataset_config(dataset, p.scale, p.config_dir),
                               plugins=p.modules)["modules"]
        assert "odeflows.ode" not in prepare, dataset
        assert not {"odeflows.train", "odeflows.models", "odeflows.tasks"} & set(prepare), dataset
    for spec in p.runs[:: max(1, len(p.runs) // 20)]:
        cfg = p.config(spec)
        for stage in ("train", "evaluate"):
            assert "odeflows.ode" in code_version(stage, cfg, plugins=p.modules)["modules"], spec


def test_declarations_do_not_reach_the_stages_that_read_them():
    stages = {m for roots in STAGES.values() for m in roots if not m.endswith(".*")}
    for declaration in ("odeflows.config", "odeflows.tasks", "odeflows.models", "odeflows.data",
                        "odeflows.provenance", "odeflows.rundir"):
        assert not stages & set(module_closure([declaration])) - {declaration}, declaration


def test_later_stages_are_not_part_of_earlier_versions(default_plan):
    cfg = default_plan.config(default_plan.runs[0])
    train = set(code_version("train", cfg)["modules"])
    assert not {"odeflows.evaluate", "odeflows.tables"} & train
    assert not any(m.startswith("odeflows.figures") for m in train)
    tables = set(code_version("tables")["modules"])
    assert not {"odeflows.train", "odeflows.evaluate"} & tables


def test_functions_a_task_names_are_part_of_its_stages_versions(default_plan):
    # the memory profile names profiling's functions (Deferred) instead of importing them
    p = default_plan
    spec = next(s for s in p.runs if p.config(s)["task"] == "memory_profile")
    for stage in ("train", "evaluate"):
        assert "odeflows.profiling" in code_version(stage, p.config(spec))["modules"], stage
    tables = code_version("tables", extra_modules=["odeflows.tasks.memory_profile"])
    assert "odeflows.profiling" in tables["modules"]
    assert "odeflows.profiling" not in code_version("tables")["modules"]


def test_plot_version_covers_every_figure_module():
    # the named figures and the tasks' drawers are found at run time, not by imports
    package = ROOT / "src" / "odeflows"
    figures = {".".join(("odeflows", *f.relative_to(package).with_suffix("").parts))
               .removesuffix(".__init__") for f in (package / "figures").rglob("*.py")}
    assert {"odeflows.figures.view", "odeflows.figures.named.flows"} <= figures
    assert figures <= set(code_version("plot")["modules"])
