"""The Snakemake workflow end to end at smoke scale, versioned by DVC: results, rerun behaviour,
push/pull to a fresh clone, table audit, config errors and the paper-scale DAG."""

from __future__ import annotations

import filecmp
import json
import re
import shutil
import subprocess

import pytest
import yaml

from conftest import ROOT

pytestmark = pytest.mark.slow

PROJECT_FILES = ("Snakefile", "workflow", "config", "envs", "profiles", "src", "dvc.yaml",
                 ".dvc/config", ".dvcignore", ".gitignore", "results/.gitignore",
                 "data/prepared/.gitignore", "pyproject.toml")
GIT = ["git", "-c", "user.name=odeflows-test", "-c", "user.email=test@odeflows.invalid"]


def _copy_project(dst):
    for name in PROJECT_FILES:
        src, out = ROOT / name, dst / name
        out.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, out, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(src, out)
    return dst


def _run(cmd, cwd, check=True, timeout=900):
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed:\n{out.stdout[-3000:]}\n"
                             f"{out.stderr[-3000:]}")
    return out


def _snakemake(cwd, *args):
    return _run(["snakemake", *args], cwd, check=False)


def _job_counts(stdout: str) -> dict[str, int]:
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)\s*$", stdout, flags=re.M)}


@pytest.fixture(scope="module")
def smoke_repo(tmp_path_factory):
    """A git + DVC repository of the project where `dvc repro smoke` has run the workflow."""
    base = tmp_path_factory.mktemp("odeflows")
    repo = _copy_project(base / "repo")
    _run(["git", "init", "-q"], repo)
    _run([*GIT, "add", "-A"], repo)
    _run([*GIT, "commit", "-qm", "project"], repo)
    _run(["dvc", "remote", "modify", "--local", "local", "url", str(base / "remote")], repo)
    _run(["dvc", "repro", "smoke"], repo)
    return repo


def test_smoke_workflow_end_to_end(smoke_repo):
    res = smoke_repo / "results" / "smoke"
    for exp in ("anode_toy", "affjord_toy", "node_adjoint", "anode_images", "affjord_images",
                "rnode_images", "rnode_ablation", "affjord_rnode"):
        for suffix in (".csv", ".md", "_runs.csv", ".provenance.json", "_curves.csv"):
            assert (res / "tables" / f"{exp}{suffix}").stat().st_size > 0
        assert list((res / "figures" / exp).glob("*.png"))
        assert list((res / "figures" / exp).glob("*.pdf"))
    assert "| ours | reference code | paper |" in (res / "tables" / "parameters.md").read_text()
    claims = (res / "claims.md").read_text()
    for n in range(1, 11):
        assert f"## Claim {n}:" in claims
    assert "## Beyond the papers: AFFJORD + RNODE" in claims
    metrics = json.loads((res / "metrics.json").read_text())
    assert set(metrics["claims"]) == {str(n) for n in range(1, 11)}
    assert "rnode_images" in metrics and "anode_images" in metrics
    log = (smoke_repo / "logs/smoke/train/anode_toy/g1d/node/seed0.log").read_text()
    assert "it/s" in log or "s/it" in log  # progress bars go to the rule's log
    again = _snakemake(smoke_repo, "-n", "--config", "scale=smoke")
    assert "Nothing to be done" in again.stdout + again.stderr
    report = _snakemake(smoke_repo, "--report", "report.html", "--config", "scale=smoke")
    assert report.returncode == 0, report.stderr[-2000:]
    html = (smoke_repo / "report.html").read_text(errors="replace")
    assert "claims.md" in html and "anode_toy" in html


def test_dvc_pull_in_a_fresh_clone_needs_no_rerun(smoke_repo, tmp_path):
    _run(["dvc", "push", "smoke"], smoke_repo)
    _run([*GIT, "add", "dvc.lock"], smoke_repo)
    _run([*GIT, "commit", "-qm", "results"], smoke_repo)
    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(smoke_repo), str(clone)], tmp_path)
    remote = _run(["dvc", "remote", "list", "--local"], smoke_repo).stdout.split()[1]
    _run(["dvc", "remote", "modify", "--local", "local", "url", remote], clone)
    _run(["dvc", "pull", "smoke"], clone)
    dry = _snakemake(clone, "-n", "--config", "scale=smoke")
    assert dry.returncode == 0
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-3000:]
    tables_a, tables_b = smoke_repo / "results/smoke/tables", clone / "results/smoke/tables"
    names = sorted(p.name for p in tables_a.iterdir())
    match, mismatch, errors = filecmp.cmpfiles(tables_a, tables_b, names, shallow=False)
    assert not mismatch and not errors
    shown = _run(["dvc", "metrics", "show"], clone).stdout
    assert "results/smoke/metrics.json" in shown

    # the audit passes on untouched results and fails on each kind of tampering
    table = "results/smoke/tables/anode_toy.csv"
    ok = _run(["odeflows", "audit", table, "--verify"], clone)
    assert "verify: OK" in ok.stdout
    ev = clone / "results/smoke/runs/anode_toy/g1d/node/seed1/eval.json"
    data = json.loads(ev.read_text())
    data["test_loss"] += 0.5
    ev.write_text(json.dumps(data))
    bad = _run(["odeflows", "audit", table, "--verify"], clone, check=False)
    assert bad.returncode == 1
    assert "cell (g1d/node, test_loss_mean)" in bad.stdout and "eval.json has changed" in bad.stdout
    _run(["dvc", "checkout", "-f", "results/smoke"], clone)
    assert "verify: OK" in _run(["odeflows", "audit", table, "--verify"], clone).stdout
    ckpt = clone / "results/smoke/runs/anode_toy/g1d/anode/seed0/model.pt"
    ckpt.write_bytes(ckpt.read_bytes() + b"tampered")
    bad = _run(["odeflows", "audit", table, "--verify"], clone, check=False)
    assert bad.returncode == 1 and "g1d/anode/seed0/model.pt has changed" in bad.stdout


def test_changing_one_value_reruns_only_its_runs(smoke_repo):
    path = smoke_repo / "config" / "experiments" / "affjord_toy.yaml"
    data = yaml.safe_load(path.read_text())
    data["scales"]["smoke"]["overrides"]["train"]["iterations"] = 31
    path.write_text(yaml.safe_dump(data))
    dry = _snakemake(smoke_repo, "-n", "--config", "scale=smoke")
    assert _job_counts(dry.stdout).get("train") == 8  # 2 datasets x 2 models x 2 seeds
    trained = re.findall(r"output: (results/smoke/runs/\S+)/summary\.json", dry.stdout)
    assert len(trained) == 8 and all("/affjord_toy/" in p for p in trained)
    one = _snakemake(smoke_repo, "-n", "--config", "scale=smoke", "--forcerun", "claims", "--",
                     "results/smoke/claims.md")
    assert one.returncode == 0


def test_paper_scale_dry_run_lists_the_papers_job_matrix(tmp_path):
    wd = _copy_project(tmp_path)
    out = _snakemake(wd, "-n", "--config", "scale=paper")
    assert out.returncode == 0, out.stderr
    counts = _job_counts(out.stdout)
    # toy: 20 repeats x 3 models x 3 datasets + 30 x 2 x 11 + 3 seeds x 2 models of node_adjoint;
    # images: ANODE 5 x 2 models x 4 sets, AFFJORD 5 x 4 x 4, RNODE 1 x 2 x 4, ablation 1 x 4,
    # affjord_rnode 5 x 4 models x (hash + MNIST)
    assert counts["train"] == 180 + 660 + 6 + 40 + 80 + 8 + 4 + 40
    assert counts["evaluate"] == counts["train"]
    assert not (wd / "results" / "paper").exists()


def test_invalid_config_stops_before_any_job(tmp_path):
    wd = _copy_project(tmp_path)
    path = wd / "config" / "experiments" / "anode_toy.yaml"
    data = yaml.safe_load(path.read_text())
    data["models"].append("nodee")
    path.write_text(yaml.safe_dump(data))
    out = _snakemake(wd, "--cores", "1", "--config", "scale=smoke")
    assert out.returncode != 0
    assert "models" in out.stderr and "nodee" in out.stderr and "anode" in out.stderr
    assert not (wd / "results" / "smoke").exists()
    assert not (wd / "data" / "prepared" / "smoke").exists()
    out = _snakemake(wd, "-n", "--config", "scale=huge")
    assert out.returncode != 0 and "allowed values: smoke, laptop, paper" in out.stderr
