"""The Snakemake workflow end to end at smoke scale, rerun behaviour, config errors, paper DAG."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from conftest import ROOT

pytestmark = pytest.mark.slow


def _workflow_copy(tmp_path):
    for name in ("Snakefile", "workflow", "config", "envs"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    return tmp_path


def _snakemake(cwd, *args):
    return subprocess.run(["snakemake", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=900)


def _job_counts(stdout: str) -> dict[str, int]:
    counts = {}
    for rule, n in re.findall(r"^(\w+)\s+(\d+)\s*$", stdout, flags=re.M):
        counts[rule] = int(n)
    return counts


def test_paper_scale_dry_run_lists_the_papers_job_matrix(tmp_path):
    wd = _workflow_copy(tmp_path)
    out = _snakemake(wd, "-n", "--config", "scale=paper")
    assert out.returncode == 0, out.stderr
    counts = _job_counts(out.stdout)
    # 20 repeats x 3 models x 3 datasets + 30 x 2 x 11 + 3 seeds x 2 models of node_adjoint
    assert counts["train"] == 180 + 660 + 6
    assert counts["evaluate"] == counts["train"]
    assert not (wd / "results").exists()


def test_invalid_config_stops_before_any_job(tmp_path):
    wd = _workflow_copy(tmp_path)
    path = wd / "config" / "experiments" / "anode_toy.yaml"
    data = yaml.safe_load(path.read_text())
    data["models"].append("nodee")
    path.write_text(yaml.safe_dump(data))
    out = _snakemake(wd, "--cores", "1", "--config", "scale=smoke")
    assert out.returncode != 0
    assert "models" in out.stderr and "nodee" in out.stderr and "anode" in out.stderr
    assert not (wd / "results").exists() and not (wd / "data" / "prepared").exists()
    out = _snakemake(wd, "-n", "--config", "scale=huge")
    assert out.returncode != 0 and "allowed values: smoke, laptop, paper" in out.stderr


def test_smoke_workflow_end_to_end(tmp_path):
    wd = _workflow_copy(tmp_path)
    out = _snakemake(wd, "--cores", "2", "--config", "scale=smoke")
    assert out.returncode == 0, out.stderr[-3000:]
    res = wd / "results" / "smoke"
    for exp in ("anode_toy", "affjord_toy", "node_adjoint"):
        for suffix in (".csv", ".md", "_runs.csv", ".provenance.json"):
            assert (res / "tables" / f"{exp}{suffix}").stat().st_size > 0
        assert list((res / "figures" / exp).glob("*.png"))
        assert list((res / "figures" / exp).glob("*.pdf"))
    claims = (res / "claims.md").read_text()
    for n in (1, 2, 4, 9, 10):
        assert f"## Claim {n}:" in claims
    # progress bars went to the rule's log
    assert "it/s" in (wd / "logs/smoke/train/anode_toy/g1d/node/seed0.log").read_text() or \
        "s/it" in (wd / "logs/smoke/train/anode_toy/g1d/node/seed0.log").read_text()

    # nothing to do afterwards
    again = _snakemake(wd, "-n", "--config", "scale=smoke")
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr

    # changing one value re-runs only what depends on it
    path = wd / "config" / "experiments" / "affjord_toy.yaml"
    data = yaml.safe_load(path.read_text())
    data["scales"]["smoke"]["overrides"]["train"]["iterations"] = 31
    path.write_text(yaml.safe_dump(data))
    dry = _snakemake(wd, "-n", "--config", "scale=smoke")
    counts = _job_counts(dry.stdout)
    assert counts.get("train") == 8  # 2 datasets x 2 models x 2 seeds of affjord_toy only
    trained = re.findall(r"output: (results/smoke/runs/\S+)/summary\.json", dry.stdout)
    assert len(trained) == 8 and all("/affjord_toy/" in p for p in trained)

    # re-running one stage the Snakemake way
    one = _snakemake(wd, "-n", "--config", "scale=smoke", "--forcerun", "claims", "--",
                     "results/smoke/claims.md")
    assert one.returncode == 0
