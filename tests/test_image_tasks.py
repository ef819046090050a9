"""Image tasks: dequantisation, bits/dim against an independent computation, classification and
image-density training through the real loop (determinism, resume after kill -9)."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT
from odeflows.config import complete_config
from odeflows.registry import UnknownName
from odeflows.tasks import get_task
from odeflows.tasks.image_density import bits_per_dim, dequantize
from odeflows.train import train


def test_dequantize_uniform_and_midpoint_stay_in_their_bins():
    x = torch.tensor([[0, 1, 127, 255]], dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    u = dequantize(x, 8, "uniform", g, torch.device("cpu"))
    assert torch.all(u >= x.float() / 256) and torch.all(u < (x.float() + 1) / 256)
    mid = dequantize(x, 8, "midpoint", None, torch.device("cpu"))
    assert torch.allclose(mid, (x.float() + 0.5) / 256)
    # 5 bits (RNODE CelebA-HQ): 255 → level 31, bins of width 1/32
    five = dequantize(x, 5, "midpoint", None, torch.device("cpu"))
    assert torch.allclose(five, (torch.tensor([[0, 0, 15, 31]]).float() + 0.5) / 32)
    with pytest.raises(ValueError, match="allowed values: uniform, midpoint"):
        dequantize(x, 8, "nearest", None, torch.device("cpu"))


def test_bits_per_dim_against_a_discrete_distribution():
    # a density on [0,1]^D that is constant inside each 1/256 bin is a discrete distribution P
    # over pixel levels with p(x) = P(k)·256^D; bpd must equal −log2 P(k)/D exactly
    rng = np.random.default_rng(0)
    d = 6
    probs = rng.dirichlet(np.ones(256), size=d)  # independent pixels
    k = rng.integers(0, 256, d)
    log_p_discrete = float(np.log(probs[np.arange(d), k]).sum())
    logp_density = torch.tensor([log_p_discrete + d * math.log(256)])
    bpd = float(bits_per_dim(logp_density, d, 8)[0])
    assert bpd == pytest.approx(-log_p_discrete / (d * math.log(2)), rel=1e-6)
    # the uniform density (log p = 0) is exactly 8 bits/dim, and 5 at 5 bits
    assert float(bits_per_dim(torch.zeros(1), 10, 8)[0]) == pytest.approx(8.0)
    assert float(bits_per_dim(torch.zeros(1), 10, 5)[0]) == pytest.approx(5.0)


def _image_npz(path, shape=(1, 8, 8), n=48, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, m in (("train", n), ("val", n // 2), ("test", n // 2)):
        y = rng.integers(0, classes, m)
        # class-dependent brightness so a classifier can learn something in a few steps
        x = np.clip(rng.normal(60 + 70 * y[:, None, None, None], 25, (m, *shape)), 0, 255)
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x.astype(np.uint8), y.astype(np.int64)
    np.savez(path, **arrays)
    path.with_suffix(".json").write_text(json.dumps({"shape": list(shape), "classes": classes,
                                                     "bits": 8, "family": "images"}))
    return path


BASE_IMG_FLOW = {
    "experiment": "affjord_images", "dataset": "digits8x8", "model": "ffjord", "seed": 0,
    "scale": "smoke",
    "model_options": {"hidden_dims": [8, 8], "num_blocks": 1, "alpha": 1e-6, "layer": "concat",
                  "divergence": "hutchinson", "probe": "rademacher"},
    "solver": {"method": "rk4", "steps": 2, "adjoint": False},
    "train": {"lr": 1e-3, "batch_size": 16, "iterations": 6, "val_every": 3,
              "checkpoint_every": 2, "threads": 1, "device": "cpu", "warmup_iters": 4,
              "dequantization": "uniform"},
    "eval": {"batch_size": 32, "dequantization": "midpoint", "samples": 4},
}
BASE_CLS = {
    "experiment": "anode_images", "dataset": "digits8x8", "model": "anode", "seed": 0,
    "scale": "smoke",
    "model_options": {"filters": 4, "augment_channels": 2, "time_dependent": True},
    "solver": {"method": "rk4", "steps": 2, "adjoint": True},
    "train": {"lr": 1e-2, "batch_size": 16, "epochs": 3, "checkpoint_every": 2, "threads": 1,
              "device": "cpu"},
    "eval": {"batch_size": 32},
}


def _cfg(base, **over):
    import copy

    cfg = copy.deepcopy(base)
    for k, v in over.items():
        cfg[k] = {**cfg[k], **v} if isinstance(v, dict) else v
    return complete_config(cfg, ROOT / "config")


def _rows(run_dir):
    with open(run_dir / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        r.pop("step_time")
    return rows


@pytest.mark.slow
@pytest.mark.parametrize("model", ["ffjord", "rnode", "affjord"])
def test_image_flow_trains_deterministically_and_evaluates(tmp_path, model):
    from odeflows.evaluate import evaluate
    from odeflows.train import train

    data = _image_npz(tmp_path / "img.npz")
    over = {"model": model}
    if model == "affjord":
        over["model_options"] = {"aug_hidden": 4, "hyper_in": 2, "layer": "hyper"}
    cfg = _cfg(BASE_IMG_FLOW, **over)
    a = train(cfg, data, tmp_path / "a", progress=False)
    b = train(cfg, data, tmp_path / "b", progress=False)
    assert a["status"] == b["status"] == "completed", a["reason"]
    assert _rows(tmp_path / "a") == _rows(tmp_path / "b")
    rows = _rows(tmp_path / "a")
    # FFJORD's linear warm-up: lr·min((itr+1)/warmup, 1)
    assert [float(r["lr"]) for r in rows][:5] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3])
    assert all(float(r["bpd"]) > 0 for r in rows)
    if model == "rnode":
        assert all(r["kinetic"] and r["jacobian"] for r in rows)
    ev = evaluate(tmp_path / "a", data)
    assert ev["status"] == "completed"
    assert ev["test_dequantization"] == "midpoint"
    assert ev["test_bpd"] == ev["test_bpd_clean"]
    assert math.isfinite(ev["test_bpd_dequantized"])
    samples = np.load(tmp_path / "a" / "samples.npz")
    assert samples["images"].shape == (4, 1, 8, 8) and samples["images"].dtype == np.uint8


@pytest.mark.slow
def test_classifier_learns_and_counts_adjoint_nfe(tmp_path):
    from odeflows.evaluate import evaluate
    from odeflows.train import train

    data = _image_npz(tmp_path / "img.npz", n=96)
    summary = train(_cfg(BASE_CLS), data, tmp_path / "run", progress=False)
    assert summary["status"] == "completed"
    rows = _rows(tmp_path / "run")
    # RK4, 2 steps: 8 evaluations forward; the adjoint re-integrates backward with the same grid
    assert all(int(r["nfe_forward"]) == 8 and int(r["nfe_backward"]) == 8 for r in rows)
    ev = evaluate(tmp_path / "run", data)
    assert ev["test_accuracy"] > 1 / 3 + 0.15  # chance is 1/3 on three brightness classes


@pytest.mark.slow
def test_image_flow_resumes_after_kill_with_identical_numbers(tmp_path):
    data = _image_npz(tmp_path / "img.npz")
    cfg = _cfg(BASE_IMG_FLOW, model="rnode")
    code = ("import json,sys; from odeflows.train import train; "
            "train(json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], progress=False)")

    def run(out, env=None):
        return subprocess.run([sys.executable, "-c", code, json.dumps(cfg), str(data), str(out)],
                              env={**os.environ, **(env or {})}, capture_output=True, text=True)

    # only the killed run needs a process of its own (see test_train._train_here)
    assert train(json.loads(json.dumps(cfg)), data, tmp_path / "full",
                 progress=False)["status"] == "completed"
    killed = run(tmp_path / "resumed", {"ODEFLOWS_FAULT_AT_ITER": "5"})
    assert killed.returncode != 0 and (tmp_path / "resumed" / "checkpoint.pt").exists()
    summary = train(json.loads(json.dumps(cfg)), data, tmp_path / "resumed", progress=False)
    assert summary["resumed_from_iteration"] is not None
    assert _rows(tmp_path / "full") == _rows(tmp_path / "resumed")
    a = torch.load(tmp_path / "full" / "model.pt", weights_only=False)["final_state"]
    b = torch.load(tmp_path / "resumed" / "model.pt", weights_only=False)["final_state"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_unknown_task_lists_the_registered_ones():
    with pytest.raises(UnknownName, match="classification, density, image_density"):
        get_task("segmentation")


def test_the_task_follows_from_model_and_dataset_facts():
    flow = _cfg(BASE_IMG_FLOW)
    assert flow["task"] == "image_density" and flow["data"] == {
        "generator": "digits8x8", "kind": "images", "bits": 4}  # datasets.yaml's bits
    assert _cfg(BASE_CLS)["task"] == "classification"
    assert complete_config({**BASE_CLS, "dataset": "spheres2d", "model": "node",
                            "model_options": {}, "eval": {}}, ROOT / "config")["task"] == \
        "regression"
