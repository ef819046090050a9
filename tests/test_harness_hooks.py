"""The general hooks the primer experiment needed, each usable by any experiment: models per
dataset at a scale (``dataset_models``), extra table ``columns``, registered ``figures``, facts a
dataset generator knows in closed form (copied into eval.json), and the family (``base_model``)
of a variant in the tables."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import ROOT
from odeflows.config import ConfigError, plan, resolve_run
from odeflows.figures import FIGURES, get_figure, register_figure
from odeflows.rundir import RunSpec
from odeflows.tables import TableTask, run_rows, summarise, to_markdown
from odeflows.tasks import get_task


def _config(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "config", tmp_path / "config")
    return tmp_path / "config"


def _edit(path: Path, fn) -> None:
    data = yaml.safe_load(path.read_text())
    fn(data)
    path.write_text(yaml.safe_dump(data))


# -- dataset_models -------------------------------------------------------------------------------
def test_dataset_models_restrict_the_matrix_per_dataset(tmp_path):
    cdir = _config(tmp_path)
    _edit(cdir / "experiments" / "anode_toy.yaml", lambda d: d["scales"]["smoke"].update(
        datasets=["g1d", "spheres1d", "spheres2d"],
        dataset_models={"g1d": ["resnet"], "spheres2d": ["node", "anode"]}))
    p = plan({"scale": "smoke", "experiments": ["anode_toy"], "config_dir": str(cdir)})
    cells = {(s.dataset, s.model) for s in p.runs}
    assert {m for d, m in cells if d == "g1d"} == {"resnet"}
    assert {m for d, m in cells if d == "spheres2d"} == {"node", "anode"}
    # a dataset it does not name keeps every model of the scale
    assert {m for d, m in cells if d == "spheres1d"} == {"resnet", "node", "anode"}
    resolve_run(RunSpec("smoke", "anode_toy", "g1d", "resnet", 0), cdir)
    with pytest.raises(ConfigError, match="not part of experiment"):
        resolve_run(RunSpec("smoke", "anode_toy", "g1d", "node", 0), cdir)


def test_dataset_models_names_are_checked(tmp_path):
    cdir = _config(tmp_path)
    _edit(cdir / "experiments" / "anode_toy.yaml", lambda d: d["scales"]["smoke"].update(
        dataset_models={"g1dd": ["resnet"], "g1d": ["nodee"]}))
    with pytest.raises(ConfigError) as err:
        plan({"scale": "smoke", "experiments": ["anode_toy"], "config_dir": str(cdir)})
    msg = str(err.value)
    assert "dataset_models.g1dd" in msg and "did you mean 'g1d'" in msg
    assert "'nodee'" in msg and "did you mean 'node'" in msg


# -- figures ---------------------------------------------------------------------------------------
def test_figure_names_are_checked_before_anything_runs(tmp_path):
    cdir = _config(tmp_path)
    _edit(cdir / "experiments" / "affjord_toy.yaml",
          lambda d: d.update(figures=["nll_vs_parameter"]))
    with pytest.raises(ConfigError, match="unknown figure 'nll_vs_parameter'.*did you mean "
                                          "'nll_vs_parameters'"):
        plan({"scale": "smoke", "experiments": ["affjord_toy"], "config_dir": str(cdir)})


def test_an_experiment_draws_its_registered_figures(tmp_path, monkeypatch):
    from odeflows.figures.plot import plot_experiment

    cdir = _config(tmp_path)
    drawn = []

    @register_figure("hook_probe")
    def probe(exp, out_dir):
        drawn.append((exp.id, list(exp.datasets)))
        path = out_dir / "hook_probe.txt"
        path.write_text("ok")
        return [path]

    try:
        _edit(cdir / "experiments" / "node_adjoint.yaml",
              lambda d: d.update(figures=["hook_probe"]))
        monkeypatch.chdir(tmp_path)
        paths = plot_experiment("smoke", "node_adjoint", tmp_path / "figs", cdir)
    finally:
        FIGURES._entries.pop("hook_probe")
    assert drawn == [("node_adjoint", ["spheres2d"])]
    assert tmp_path / "figs" / "hook_probe.txt" in paths
    # the task's own figures are still drawn
    assert tmp_path / "figs" / "memory_vs_steps.png" in paths


def test_figure_modules_stay_out_of_training_code_versions():
    from odeflows import versions

    cfg = resolve_run(RunSpec("smoke", "primer_flows", "8gaussians", "ffjord_xs", 0),
                      ROOT / "config")
    train = versions.code_version("train", cfg)["modules"]
    plot = versions.code_version("plot")["modules"]
    assert not any(m.startswith("odeflows.figures") for m in train)
    assert {"odeflows.figures", "odeflows.figures.named.flows"} <= set(plot)
    assert callable(get_figure("nll_vs_parameters"))


def test_checking_figure_names_imports_no_drawing_code():
    # every process that resolves an experiment naming figures checks the names, training jobs
    # included: that must not cost them matplotlib or the figures' view of the runs
    code = ("import sys; from odeflows.config import plan; "
            "plan({'scale': 'smoke', 'experiments': ['primer_flows'], 'config_dir': 'config'}); "
            "print(*sorted(m for m in sys.modules\n"
            "              if m.startswith(('matplotlib', 'odeflows.fig'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["odeflows.figure_names", "odeflows.figures", "odeflows.figures.named",
                           "odeflows.figures.named.flows"]


# -- columns and families in the tables ---------------------------------------------------------
def _run(root: Path, model: str, base: str, seed: int, solver: dict | None = None, **ev
         ) -> Path:
    path = root / "primer_flows" / "8gaussians" / model / f"seed{seed}"
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model": base, "task": "density",
                                                  **({"solver": solver} if solver else {})}))
    (path / "eval.json").write_text(json.dumps({"status": "completed", **ev}))
    return path


def test_extra_columns_and_families_reach_the_table(tmp_path):
    dirs = [_run(tmp_path, "realnvp_xs", "realnvp", s, test_loss=3.0 + s, density_passes=4,
                 sample_passes=4) for s in (0, 1)]
    dirs += [_run(tmp_path, "ffjord", "ffjord", 0, test_loss=2.0, density_passes=20,
                  sample_passes=22)]
    dirs += [_run(tmp_path, "ffjord_rk4", "ffjord", 0, {"method": "rk4", "steps": 20},
                  test_loss=2.1)]
    runs = run_rows(dirs)
    assert list(runs["base_model"]) == ["realnvp", "realnvp", "ffjord", "ffjord"]
    # the training solver, for the claims' "coarser than the paper's" label
    assert runs["solver_method"].iloc[3] == "rk4" and runs["solver_steps"].iloc[3] == 20
    assert runs[["solver_method", "solver_steps"]].iloc[:3].isna().all().all()
    density = get_task("density")
    task = TableTask([density], {"density_passes": "passes: log p", "sample_passes": "passes: "
                                                                                    "sample"})
    assert task.metrics[-2:] == ("density_passes", "sample_passes")
    table = task.summarise(runs, pd.DataFrame())
    row = table[table["model"] == "realnvp_xs"].iloc[0]
    assert row["base_model"] == "realnvp" and row["test_loss_mean"] == 3.5
    assert row["density_passes_mean"] == 4 and row["density_passes_n"] == 2
    md = task.markdown(table, "t")
    header = [c.strip() for c in md.splitlines()[4].split("|")]
    assert "family" in header and "ours: passes: log p" in header
    # an experiment without variants shows no family column
    plain = summarise(runs[runs["model"] == "ffjord"], density.metrics, pd.DataFrame())
    header = to_markdown(plain, density.metrics, density.labels, "t").splitlines()[4]
    assert "family" not in [c.strip() for c in header.split("|")]
    with pytest.raises(ValueError, match=r"\(dataset, model\) table"):
        TableTask([get_task("memory_profile")], {"x": "y"})


# -- facts of a dataset generator ------------------------------------------------------------------
def test_generator_facts_reach_the_sidecar_and_the_evaluation(tmp_path):
    from odeflows.config import dataset_config
    from odeflows.data.gaussian import entropy
    from odeflows.data.prepared import load_meta, prepare
    from odeflows.evaluate import evaluate
    from odeflows.train import train

    data = tmp_path / "gaussian2d.npz"
    prepare(dataset_config("gaussian2d", "smoke", ROOT / "config"), data)
    params = yaml.safe_load((ROOT / "config" / "datasets.yaml").read_text())["gaussian2d"]
    expected = entropy(**params["params"])
    assert load_meta(data)["facts"] == {"entropy": pytest.approx(expected, rel=1e-12)}
    cfg = resolve_run(RunSpec("smoke", "primer_flows", "gaussian2d", "linear_1", 0),
                      ROOT / "config")
    cfg["train"].update(iterations=5, val_every=5)
    train(cfg, data, tmp_path / "run", progress=False)
    result = evaluate(tmp_path / "run", data)
    assert result["data_entropy"] == pytest.approx(expected, rel=1e-12)
    assert np.isfinite(result["test_loss_se"]) and result["test_loss_se"] > 0
