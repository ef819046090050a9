"""docs/extending.md, done for real: its files are extracted from the page, written into a copy
of the project, and a new model, dataset, experiment and scale run through the CLI and the
workflow exactly as the page says — with no edit to src/."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import ROOT

DOC = ROOT / "docs" / "extending.md"
BLOCK = re.compile(r"<!-- (file|append): (\S+) -->\s*```\w*\n(.*?)```", re.S)


def doc_files() -> list[tuple[str, str, str]]:
    """(mode, path, content) of every file the page shows."""
    return [(m.group(1), m.group(2), m.group(3)) for m in BLOCK.finditer(DOC.read_text())]


def apply_doc(root: Path) -> None:
    for mode, rel, text in doc_files():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if mode == "append":
            path.write_text(path.read_text().rstrip("\n") + "\n\n" + text)
        else:
            path.write_text(text)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for name in ("config", "Snakefile", "workflow", "envs", "profiles"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    apply_doc(tmp_path)
    return tmp_path


def _run(cmd: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_the_page_shows_all_four_entries():
    paths = {p for _, p, _ in doc_files()}
    assert {"extensions/toy_extension.py", "config/datasets.yaml", "config/scales.yaml",
            "config/experiments/blobs_vs_ffjord.yaml"} <= paths
    for mode, _, text in doc_files():
        if mode == "append" or _.endswith(".yaml"):
            yaml.safe_load(text)  # every configuration snippet is valid YAML


def test_new_entries_validate_and_train_through_the_cli(project: Path):
    odeflows = [sys.executable, "-m", "odeflows"]
    ok = _run([*odeflows, "validate", "--scale", "tiny", "--experiments", "blobs_vs_ffjord"],
              project)
    assert ok.returncode == 0, ok.stderr
    assert "4 runs" in ok.stdout
    listed = _run([*odeflows, "models", "--modules", "extensions/toy_extension.py"], project)
    assert "diag_gauss [vectors; density; samples]" in listed.stdout
    prep = _run([*odeflows, "prepare", "--dataset", "blobs", "--scale", "tiny",
                 "--out", "data/prepared/tiny/blobs.npz", "--modules",
                 "extensions/toy_extension.py"], project)
    assert prep.returncode == 0, prep.stderr
    run = "results/tiny/runs/blobs_vs_ffjord/blobs/diag_gauss/seed0"
    train = _run([*odeflows, "train", "--scale", "tiny", "--experiment", "blobs_vs_ffjord",
                  "--dataset", "blobs", "--model", "diag_gauss", "--seed", "0", "--data",
                  "data/prepared/tiny/blobs.npz", "--quiet"], project)
    assert train.returncode == 0, train.stderr
    ev = _run([*odeflows, "evaluate", "--run", run, "--data", "data/prepared/tiny/blobs.npz"],
              project)
    assert ev.returncode == 0, ev.stderr
    assert '"grid_mass"' in ev.stdout and '"hutchinson"' not in ev.stdout  # not a CNF
    # a typo in the new model's options is named, with the closest option
    exp = project / "config" / "experiments" / "blobs_vs_ffjord.yaml"
    exp.write_text(exp.read_text().replace("init_std: 0.5", "init_sd: 0.5"))
    bad = _run([*odeflows, "validate", "--scale", "tiny", "--experiments", "blobs_vs_ffjord"],
               project)
    assert bad.returncode == 2 and "model_options.init_sd" in bad.stderr
    assert "did you mean 'init_std'" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
@pytest.mark.long_running(minutes=2.5)
def test_new_experiment_runs_through_the_workflow(project: Path):
    out = _run(["snakemake", "--cores", "2", "--config", "scale=tiny",
                "experiments=[blobs_vs_ffjord]"], project, timeout=1200)
    assert out.returncode == 0, out.stderr[-3000:]
    res = project / "results" / "tiny"
    table = pd.read_csv(res / "tables" / "blobs_vs_ffjord.csv")
    assert set(table["model"]) == {"diag_gauss", "ffjord"} and (table["seeds_ok"] == 2).all()
    assert "diag_gauss" in (res / "tables" / "blobs_vs_ffjord.md").read_text()
    figures = {p.stem for p in (res / "figures" / "blobs_vs_ffjord").glob("*.png")}
    assert figures == {"densities", "val_loss", "samples"}
    assert (res / "claims.md").exists()
    audit = _run([sys.executable, "-m", "odeflows", "audit",
                  "results/tiny/tables/blobs_vs_ffjord.csv", "--verify"], project)
    assert audit.returncode == 0 and "verify: OK" in audit.stdout, audit.stdout[-2000:]
    again = _run(["snakemake", "-n", "--config", "scale=tiny", "experiments=[blobs_vs_ffjord]"],
                 project)
    assert "Nothing to be done" in again.stdout + again.stderr
    # the user's module is code the runs depend on: editing it makes them out of date
    module = project / "extensions" / "toy_extension.py"
    module.write_text(module.read_text() + "\n# a change to the extension's code\n")
    dry = _run(["snakemake", "-n", "--config", "scale=tiny", "experiments=[blobs_vs_ffjord]"],
               project)
    trained = re.findall(r"output: (results/tiny/runs/\S+)/summary\.json", dry.stdout)
    assert len(trained) == 4 and "prepare code" in dry.stdout
