"""plot_experiment on a tiny hand-written results tree: every figure is written, readable as an
image, and failed or missing runs are drawn around rather than crashing the workflow."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import yaml

from odeflows.figures.plot import plot_experiment
from odeflows.figures.view import Experiment

REPO = Path(__file__).resolve().parents[1]
SCALE = "smoke"

EXPECTED = {
    # the smoke scale's sets (spheres1d, the same code path as spheres2d, runs from laptop up)
    "anode_toy": [f"{kind}_{ds}" for kind in ("loss", "nfe") for ds in ("g1d", "spheres2d")]
    + ["trajectories_g1d", "features_spheres2d"],
    "affjord_toy": ["densities", "val_loss", "samples"],
    "node_adjoint": ["memory_vs_steps", "time_vs_steps"],
}
REGRESSION = {"g1d": 1, "spheres1d": 1, "spheres2d": 2}  # dataset -> input dimension
DENSITY = ("hash", "ty")


def _run_dir(experiment: str, dataset: str, model: str, seed: int) -> Path:
    path = Path("results") / SCALE / "runs" / experiment / dataset / model / f"seed{seed}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _eval(path: Path, status: str = "completed", **extra: object) -> None:
    reason = None if status == "completed" else "solver underflow"
    (path / "eval.json").write_text(json.dumps({"status": status, "reason": reason, **extra}))


def _metrics(path: Path, rng: np.random.Generator, iterations: int = 6, epochs: int = 2,
             val_every: int = 2, nfe: int = 14) -> None:
    it = np.arange(1, iterations + 1)
    val = np.where(it % val_every == 0, 3.0 / it + rng.random(iterations) * 0.1, np.nan)
    pd.DataFrame({
        "iteration": it, "epoch": (it - 1) * epochs // iterations, "loss": 2.0 / it,
        "nll": np.nan, "kinetic": np.nan, "jacobian": np.nan,
        "nfe_forward": nfe + rng.integers(0, 6, iterations), "nfe_backward": 0,
        "step_time": 0.01, "val_loss": val, "val_accuracy": np.nan,
        "val_nfe": np.where(np.isnan(val), np.nan, float(nfe)), "end_time": np.nan,
    }).to_csv(path / "metrics.csv", index=False)


def _prepared(name: str, rng: np.random.Generator, dim: int, labels: bool) -> None:
    path = Path("data") / "prepared" / SCALE
    path.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split in ("train", "val", "test"):
        x = rng.uniform(-1.5, 1.5, (40, dim)).astype(np.float32)
        arrays[f"x_{split}"] = x
        if labels:
            arrays[f"y_{split}"] = np.where(np.linalg.norm(x, axis=1, keepdims=True) < 0.8,
                                            -1.0, 1.0).astype(np.float32)
    np.savez(path / f"{name}.npz", **arrays)


def _regression_runs(rng: np.random.Generator) -> None:
    for dataset, dim in REGRESSION.items():
        _prepared(dataset, rng, dim, labels=True)
        for model in ("resnet", "node", "anode"):
            for seed in (0, 1):
                path = _run_dir("anode_toy", dataset, model, seed)
                _metrics(path, rng, nfe=0 if model == "resnet" else 14)
                _eval(path, test_loss=0.5, test_accuracy=0.8, test_nfe=14.0)
                width = dim + (2 if model == "anode" else 0)
                steps = 6 if model == "resnet" else 11
                times = np.arange(steps) if model == "resnet" else np.linspace(0, 1, steps)
                x = rng.uniform(-1, 1, (12, dim)).astype(np.float32)
                y = np.sign(x[:, :1] + 1e-3).astype(np.float32)
                states = rng.normal(size=(steps, 12, width)).astype(np.float32)
                states[0, :, :dim] = x
                np.savez(path / "trajectories.npz", times=times.astype(np.float32),
                         states=states, x=x, y=y, output=states[-1, :, :1])


def _density_runs(rng: np.random.Generator) -> None:
    axis = np.linspace(-1.6, 1.6, 12, dtype=np.float32)
    xx, yy = np.meshgrid(axis, axis, indexing="xy")
    logp = (-(xx**2 + yy**2) - np.log(np.pi)).astype(np.float32)
    for dataset in DENSITY:
        _prepared(dataset, rng, 2, labels=False)
        for model in ("ffjord", "affjord"):
            for seed in (0, 1):
                path = _run_dir("affjord_toy", dataset, model, seed)
                _metrics(path, rng, iterations=8, epochs=1, val_every=2, nfe=32)
                _eval(path, best_val_loss=2.5, test_loss=2.6, grid_mass=0.9)
                np.savez(path / "density.npz", axis=axis, logp=logp, mass=np.float64(0.9),
                         samples=rng.normal(0, 0.5, (50, 2)).astype(np.float32))


def _profile_runs(rng: np.random.Generator) -> None:
    for model in ("node", "ffjord"):
        path = _run_dir("node_adjoint", "spheres2d", model, 0)
        rows = [{"mode": mode, "steps": steps, "repeat": rep,
                 "peak_saved_bytes": (steps * 1e5 if mode == "direct" else 2e5) * (1 + rep / 10),
                 "seconds": 0.01 * steps * (1 + rng.random()), "nfe_forward": 4 * steps,
                 "nfe_backward": 4 * steps if mode == "adjoint" else 0, "loss": 0.5,
                 "cuda_peak_bytes": np.nan}
                for mode in ("direct", "adjoint") for steps in (2, 4, 8) for rep in (0, 1)]
        pd.DataFrame(rows).to_csv(path / "profile.csv", index=False)
        _eval(path)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(REPO / "config", tmp_path / "config")
    # two seeds per toy experiment (the real smoke scale runs one): failed and missing seeds
    # are drawn around the ones that completed
    for experiment in EXPECTED:
        path = tmp_path / "config" / "experiments" / f"{experiment}.yaml"
        doc = yaml.safe_load(path.read_text())
        doc["scales"][SCALE]["seeds"] = 2
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _fail(path: Path) -> None:
    for name in ("trajectories.npz", "density.npz", "metrics.csv", "profile.csv"):
        (path / name).unlink(missing_ok=True)
    _eval(path, status="failed")


@pytest.fixture
def results(workdir: Path) -> Path:
    rng = np.random.default_rng(0)
    _regression_runs(rng)
    _density_runs(rng)
    _profile_runs(rng)
    # failed seeds are part of every tree: seed 0 failing must not break the seed-0 panels (the
    # next completed seed stands in) and a model whose every seed failed leaves an empty panel
    _fail(_run_dir("anode_toy", "g1d", "node", 0))
    _fail(_run_dir("affjord_toy", "hash", "affjord", 0))
    _fail(_run_dir("node_adjoint", "spheres2d", "ffjord", 0))
    return workdir


def _check_figures(paths: list[Path], out: Path, names: list[str]) -> None:
    expected = {out / f"{n}.{ext}" for n in names for ext in ("png", "pdf")}
    assert set(paths) == expected
    for path in expected:
        assert path.is_file() and path.stat().st_size > 0, path
        if path.suffix == ".png":
            image = mpimg.imread(path)
            assert image.ndim == 3 and min(image.shape[:2]) > 100, path
        else:
            assert path.read_bytes().startswith(b"%PDF"), path


@pytest.mark.parametrize("experiment", list(EXPECTED))
def test_all_figures_written_despite_failed_runs(results: Path, experiment: str) -> None:
    out = results / "figures" / experiment
    paths = plot_experiment(SCALE, experiment, out, "config")
    _check_figures(paths, out, EXPECTED[experiment])


def test_failed_runs_skipped_and_counted(results: Path) -> None:
    exp = Experiment(SCALE, "anode_toy", "config")
    assert exp.group("g1d", "node").label() == "node (1 seed, 1 failed)"
    assert exp.group("g1d", "anode").label() == "anode (2 seeds)"
    assert exp.group("g1d", "node").first_completed("trajectories.npz").spec.seed == 1
    exp = Experiment(SCALE, "node_adjoint", "config")
    assert exp.group("spheres2d", "ffjord").completed == []


def test_no_runs_at_all(workdir: Path) -> None:
    # nothing has run yet (and no prepared data): every figure still exists and says so
    for experiment, names in EXPECTED.items():
        out = workdir / "figures" / experiment
        _check_figures(plot_experiment(SCALE, experiment, out, "config"), out, names)
    exp = Experiment(SCALE, "affjord_toy", "config")
    assert exp.group("hash", "ffjord").label() == "ffjord (0 seeds, 2 missing)"
