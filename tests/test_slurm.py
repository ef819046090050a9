"""The smoke workflow through a real SLURM scheduler (tests/cluster/slurm.sh, profile local-slurm).

Needs root and the Debian packages slurm-wlm and munge (`bash tests/cluster/slurm.sh install`).
Skipped where SLURM is not installed, except in CI (CI=true), where that is an error.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, SLURM_CONF

pytestmark = [pytest.mark.slow, pytest.mark.long_running(minutes=5)]

SLURM_SH = ROOT / "tests" / "cluster" / "slurm.sh"
# every kind of job (prepare, train, evaluate, tables, plot, claims and, for an image
# experiment, parameter counts) through the scheduler on one experiment: 10 SLURM jobs, each a
# Snakemake process and an odeflows process inside the job (the rest of the smoke scale runs in
# test_workflow.py)
EXPERIMENTS = ("anode_images",)


def _slurm_missing() -> str | None:
    if shutil.which("slurmctld") is None:
        return "slurmctld is not installed (bash tests/cluster/slurm.sh install)"
    if os.geteuid() != 0:
        return "the test cluster needs root"
    return None


@pytest.fixture(scope="module")
def slurm_cluster():
    missing = _slurm_missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the SLURM test, but {missing}", pytrace=False)
        pytest.skip(missing)
    start = subprocess.run(["bash", str(SLURM_SH), "start"], capture_output=True, text=True,
                           timeout=180, env=_slurm_env())
    try:
        assert start.returncode == 0, start.stdout + start.stderr
        yield
    finally:
        stop = subprocess.run(["bash", str(SLURM_SH), "stop"], capture_output=True, text=True,
                              timeout=120, env=_slurm_env())
        assert stop.returncode == 0, stop.stdout + stop.stderr


def _workflow_copy(tmp_path: Path) -> Path:
    # as tests/test_workflow.py, plus profiles/: the workflow profile profiles/default that
    # Snakemake loads next to the Snakefile in a checkout, and the cluster profiles
    for name in ("Snakefile", "workflow", "config", "envs", "profiles"):
        src = ROOT / name
        if src.exists():
            (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    return tmp_path


def _slurm_env() -> dict[str, str]:
    """This process's environment with the session's SLURM configuration (conftest points every
    other test at an empty one)."""
    env = dict(os.environ)
    env.pop("SLURM_CONF", None)
    if SLURM_CONF is not None:
        env["SLURM_CONF"] = SLURM_CONF
    return env


def _job_env() -> dict[str, str]:
    # sbatch exports the submitting environment (--export=ALL): with this virtualenv's bin first
    # on PATH, the jobs' shell commands find the same `odeflows` (and Python) as this process.
    env = _slurm_env()
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("MPLBACKEND", "Agg")
    return env


def test_smoke_workflow_through_slurm(slurm_cluster, tmp_path):
    wd = _workflow_copy(tmp_path)
    profile = wd / "profiles" / "local-slurm"
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", str(profile),
         "--config", "scale=smoke", f"experiments=[{','.join(EXPERIMENTS)}]"],
        cwd=wd, env=_job_env(), capture_output=True, text=True, timeout=900,
    )
    elapsed = time.monotonic() - started
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-5000:]
    print(f"smoke workflow through SLURM: {elapsed:.0f} s")

    res = wd / "results" / "smoke"
    for experiment in EXPERIMENTS:
        for suffix in (".csv", ".md", "_runs.csv", ".provenance.json"):
            assert (res / "tables" / f"{experiment}{suffix}").stat().st_size > 0
        assert list((res / "figures" / experiment).glob("*.png"))
    claims = (res / "claims.md").read_text()
    assert all(f"## Claim {n}:" in claims for n in (1, 2, 4, 9, 10))

    # Every job but the target rule `all` (run locally) was submitted with sbatch ...
    run_id = re.search(r"SLURM run ID: (\S+)", log)
    assert run_id, log[-3000:]
    job_ids = re.findall(r"has been submitted with SLURM jobid (\d+)", log)
    finished = re.findall(r"^Finished jobid: \d+ \(Rule: (\w+)\)", log, flags=re.M)
    assert set(finished) == {"prepare_data", "train", "evaluate", "tables", "plot", "claims",
                             "parameter_counts", "all"}
    assert len(job_ids) == len(finished) - 1
    # ... SLURM itself reports them completed (squeue keeps finished jobs for MinJobAge = 300 s;
    # the last ones ended moments ago) ...
    queue = subprocess.run(["squeue", "--states=all", "--noheader", "--format=%i|%T",
                            "--name", run_id.group(1)], capture_output=True, text=True, timeout=30,
                           env=_slurm_env())
    assert queue.returncode == 0, queue.stderr
    states = dict(line.split("|") for line in queue.stdout.split())
    assert states and set(states.values()) == {"COMPLETED"} and set(states) <= set(job_ids)
    # ... each wrote its SLURM log <jobid>.log (kept by slurm-keep-successful-logs) ...
    slurm_logs = {p.stem: p for p in (wd / ".snakemake" / "slurm_logs").rglob("*.log")}
    assert set(slurm_logs) == set(job_ids)
    train_log = next((wd / ".snakemake" / "slurm_logs" / "rule_train").rglob("*.log"))
    assert "rule train:" in train_log.read_text()
    # ... and the jobs ran this virtualenv's `odeflows`, found on the PATH that sbatch exported
    record = json.loads(next((res / "runs").rglob("record.json")).read_text())
    assert record["host"]["argv"][0] == str(Path(sys.executable).parent / "odeflows")
