"""Training: determinism, resume after kill -9, failed runs, evaluation and the user API."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
import torch

from odeflows.api import load_run
from odeflows.evaluate import evaluate
from odeflows.train import train

# training, resume after kill -9 (the slow tier)
pytestmark = pytest.mark.slow


def _metrics(run_dir):
    with open(run_dir / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        r.pop("step_time")  # wall-clock time is the one column allowed to differ
    return rows


@pytest.mark.parametrize("kind", ["flow", "regression"])
def test_same_seed_same_numbers(tmp_path, toy_data, flow_cfg, reg_cfg, kind):
    if kind == "flow":
        cfg, data = flow_cfg("affjord"), toy_data("hash")
    else:
        cfg, data = reg_cfg("anode", model_options={"augment_dim": 2}), toy_data("spheres2d")
    a = train(cfg, data, tmp_path / "a", progress=False)
    b = train(cfg, data, tmp_path / "b", progress=False)
    assert a["status"] == b["status"] == "completed"
    assert _metrics(tmp_path / "a") == _metrics(tmp_path / "b")
    train({**cfg, "seed": 1}, data, tmp_path / "c", progress=False)
    assert _metrics(tmp_path / "c") != _metrics(tmp_path / "a")
    assert not (tmp_path / "a" / "checkpoint.pt").exists()  # removed once the run completes
    # identical numbers hold on one machine; the record names what they depend on across machines
    host = json.loads((tmp_path / "a" / "record.json").read_text())["host"]
    assert host["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert host["cpu_model"] and host["torch_threads"] == torch.get_num_threads()


def _train_cli(cfg, data, out, env=None):
    """Train in a subprocess through the real config files so that it can be killed."""
    code = ("import json,sys; from odeflows.train import train; "
            "train(json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], progress=False)")
    return subprocess.run([sys.executable, "-c", code, json.dumps(cfg), str(data), str(out)],
                          env={**os.environ, **(env or {})}, capture_output=True, text=True)


def _train_here(cfg, data, out):
    """The same training in this process (a fresh process is only needed for the kill): the
    numbers must not depend on which process trains, so comparing the two also checks that."""
    return train(json.loads(json.dumps(cfg)), data, out, progress=False)


@pytest.mark.parametrize("kind", ["flow", "regression"])
def test_resume_after_kill_gives_identical_numbers(tmp_path, toy_data, flow_cfg, reg_cfg, kind):
    if kind == "flow":
        cfg, data = flow_cfg("ffjord", train={"iterations": 10, "checkpoint_every": 3}), \
            toy_data("hash")
    else:
        cfg, data = reg_cfg("node", train={"epochs": 2, "checkpoint_every": 3},
                            solver={"method": "rk4", "steps": 4}), \
            toy_data("spheres2d", n=300)
    assert _train_here(cfg, data, tmp_path / "full")["status"] == "completed"
    killed = _train_cli(cfg, data, tmp_path / "resumed", {"ODEFLOWS_FAULT_AT_ITER": "7"})
    assert killed.returncode == -9  # a real SIGKILL, not a clean exit
    assert (tmp_path / "resumed" / "checkpoint.pt").exists()
    assert not (tmp_path / "resumed" / "summary.json").exists()
    rows_before = len(_metrics(tmp_path / "resumed"))
    assert rows_before == 7  # rows 7 was written after the last checkpoint (6)
    summary = _train_here(cfg, data, tmp_path / "resumed")
    assert summary["resumed_from_iteration"] == 6
    assert _metrics(tmp_path / "resumed") == _metrics(tmp_path / "full")
    a = torch.load(tmp_path / "full" / "model.pt", weights_only=False)["final_state"]
    b = torch.load(tmp_path / "resumed" / "model.pt", weights_only=False)["final_state"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_of_another_config_is_not_resumed(tmp_path, toy_data, flow_cfg):
    data = toy_data("hash")
    cfg = flow_cfg("ffjord", train={"iterations": 8, "checkpoint_every": 2})
    killed = _train_cli(cfg, data, tmp_path / "r", {"ODEFLOWS_FAULT_AT_ITER": "5"})
    assert killed.returncode == -9
    changed = flow_cfg("ffjord", train={"iterations": 8, "checkpoint_every": 2, "lr": 5e-3})
    summary = train(changed, data, tmp_path / "r", progress=False)
    assert summary["resumed_from_iteration"] is None
    assert len(_metrics(tmp_path / "r")) == 8


def test_nan_loss_ends_run_as_failed_seed(tmp_path, toy_data, reg_cfg, monkeypatch):
    from odeflows.tasks.regression import RegressionTask

    def nan_loss(self, model, x, y, generator):
        return model(x).sum() * float("nan"), {}

    monkeypatch.setattr(RegressionTask, "loss", nan_loss)
    data = toy_data("g1d")
    summary = train(reg_cfg("node"), data, tmp_path / "run", progress=False)
    assert summary["status"] == "failed" and "non-finite loss" in summary["reason"]
    result = evaluate(tmp_path / "run", data)
    assert result["status"] == "failed"
    with pytest.raises(RuntimeError, match="did not complete"):
        load_run(tmp_path / "run")


def test_evaluate_and_api(tmp_path, toy_data, flow_cfg):
    data = toy_data("ty")
    cfg = flow_cfg("affjord")
    train(cfg, data, tmp_path / "run", progress=False)
    result = evaluate(tmp_path / "run", data)
    assert result["status"] == "completed"
    assert 0.5 < result["grid_mass"] < 1.01
    assert set(result["hutchinson"]) >= {"gaussian", "rademacher"}
    run = load_run(tmp_path / "run")
    x = torch.randn(5, 2)
    logp = run.log_prob(x)
    assert logp.shape == (5,) and run.nfe == 16
    assert run.sample(7).shape == (7, 2)
    assert run.record["config_hash"] == result["config_hash"]
    assert len(run.record["data"]["sha256"]) == 64
