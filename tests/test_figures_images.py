"""Figures of the image experiments on a hand-written results tree (the laptop scale, pinned by the
fixture to 2 seeds and digits8x8 so that retuning the real laptop scale does not move the test):
every figure is written as PNG and PDF, failed and missing seeds are drawn around, and an
experiment with no runs at all still gets every figure."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import yaml

from odeflows.figures.draw import montage
from odeflows.figures.plot import plot_experiment
from odeflows.figures.view import Experiment

REPO = Path(__file__).resolve().parents[1]
SCALE = "laptop"
FLOW_FIGURES = ("samples", "bpd_vs_wallclock", "training_bpd", "nfe", "regularisers")
CLASSIFIER_FIGURES = ("loss", "nfe", "nfe_vs_loss", "accuracy_vs_nfe")
EXPECTED = {
    "affjord_images": [f"{f}_digits8x8" for f in FLOW_FIGURES],
    "rnode_images": [f"{f}_digits8x8" for f in FLOW_FIGURES],
    "rnode_ablation": [f"{f}_digits8x8" for f in FLOW_FIGURES],
    # toy figures for hash only, image figures for digits8x8
    "affjord_rnode": ["densities", "val_loss", "samples"]
    + [f"{f}_digits8x8" for f in FLOW_FIGURES],
    "anode_images": [f"{f}_digits8x8" for f in CLASSIFIER_FIGURES],
}
EPOCHS, PER_EPOCH = 6, 5


def _run_dir(experiment: str, dataset: str, model: str, seed: int) -> Path:
    path = Path("results") / SCALE / "runs" / experiment / dataset / model / f"seed{seed}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _eval(path: Path, status: str = "completed", **extra: object) -> None:
    reason = None if status == "completed" else "SolverFailure: step size underflow"
    (path / "eval.json").write_text(json.dumps({"status": status, "reason": reason, **extra}))


def _metrics(path: Path, rng: np.random.Generator, *, classifier: bool, tracked: bool,
             adjoint: bool, iterations: int | None = None, epochs: int = EPOCHS) -> None:
    n = iterations or EPOCHS * PER_EPOCH
    per_epoch = max(1, n // epochs)
    it = np.arange(1, n + 1)
    decay = 1.0 / np.sqrt(it)
    val = np.where(it % per_epoch == 0, 1.0 + decay + rng.random(n) * 0.05, np.nan)
    nfe_f = (20 + 2 * np.sqrt(it) + rng.integers(0, 6, n)).astype(float)
    cols = {
        "iteration": it, "epoch": (it - 1) // per_epoch,
        "loss": 2.0 * decay + rng.random(n) * 0.05,
        "nll": np.nan if classifier else 1.5 + decay, "bpd": np.nan if classifier else 1.5 + decay,
        "accuracy": 1 - 0.8 * decay if classifier else np.nan,
        "kinetic": 5.0 * decay + 0.1 if tracked else np.nan,
        "jacobian": 50.0 * decay + 0.2 if tracked else np.nan,
        "nfe_forward": nfe_f, "nfe_backward": nfe_f * 1.3 if adjoint else 0.0,
        "step_time": 0.4 + rng.random(n) * 0.1, "lr": 1e-3, "grad_norm": np.nan,
        "val_loss": val,
        "val_accuracy": np.where(np.isnan(val), np.nan, 1 - 0.7 * decay) if classifier else np.nan,
        "val_nfe": np.where(np.isnan(val), np.nan, 26.0), "end_time": np.nan,
    }
    pd.DataFrame(cols).to_csv(path / "metrics.csv", index=False)


def _image_flow_runs(experiment: str, rng: np.random.Generator) -> None:
    exp = Experiment(SCALE, experiment, "config")
    images = exp.image_datasets()
    for dataset in images:
        for model in exp.models:
            for seed in range(exp.seeds):
                path = _run_dir(experiment, dataset, model, seed)
                tracked = model not in ("ffjord", "affjord") or experiment == "rnode_ablation"
                _metrics(path, rng, classifier=False, tracked=tracked, adjoint=model == "rnode")
                samples = 0 if experiment == "rnode_ablation" else 16
                (path / "config.json").write_text(json.dumps(
                    {"task": "image_density", "eval": {"samples": samples}}))  # only what's read
                _eval(path, best_val_loss=1.6, test_bpd=1.7, test_nfe=30.0)
                if samples:
                    np.savez(path / "samples.npz",
                             images=rng.integers(0, 256, (samples, 1, 8, 8), dtype=np.uint8),
                             data=rng.integers(0, 256, (samples, 1, 8, 8), dtype=np.uint8))


def _toy_density_runs(experiment: str, rng: np.random.Generator) -> None:
    exp = Experiment(SCALE, experiment, "config")
    axis = np.linspace(-1.6, 1.6, 12, dtype=np.float32)
    xx, yy = np.meshgrid(axis, axis, indexing="xy")
    logp = (-(xx**2 + yy**2) - np.log(np.pi)).astype(np.float32)
    for dataset in set(exp.datasets) - set(exp.image_datasets()):
        for model in exp.models:
            for seed in range(exp.seeds):
                path = _run_dir(experiment, dataset, model, seed)
                _metrics(path, rng, classifier=False, tracked=False, adjoint=False,
                         iterations=8, epochs=1)
                _eval(path, best_val_loss=2.5, test_loss=2.6, grid_mass=0.9)
                np.savez(path / "density.npz", axis=axis, logp=logp, mass=np.float64(0.9),
                         samples=rng.normal(0, 0.5, (50, 2)).astype(np.float32))


def _classifier_runs(rng: np.random.Generator) -> None:
    exp = Experiment(SCALE, "anode_images", "config")
    for dataset in exp.datasets:
        for model in exp.models:
            for seed in range(exp.seeds):
                path = _run_dir("anode_images", dataset, model, seed)
                _metrics(path, rng, classifier=True, tracked=False, adjoint=True)
                _eval(path, test_loss=0.3, test_accuracy=0.9, test_nfe=26.0)


def _fail(path: Path) -> None:
    for name in ("metrics.csv", "samples.npz", "density.npz"):
        (path / name).unlink(missing_ok=True)
    _eval(path, status="failed")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(REPO / "config", tmp_path / "config")
    for experiment in EXPECTED:
        path = tmp_path / "config" / "experiments" / f"{experiment}.yaml"
        doc = yaml.safe_load(path.read_text())
        laptop = doc["scales"][SCALE]
        laptop["seeds"] = 2
        if experiment == "affjord_rnode":
            laptop["datasets"] = ["hash", "digits8x8"]
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    return tmp_path


# seed 0 failing must not break the first-seed panels; a model whose only seed failed leaves an
# empty panel; a run without eval.json counts as missing
FAILED = {
    "affjord_images": [("digits8x8", "ffjord", 0)],
    "rnode_images": [("digits8x8", "rnode", 1)],
    "rnode_ablation": [("digits8x8", "rk4_both", 0)],
    "affjord_rnode": [("digits8x8", "affjord", 0), ("hash", "ffjord", 0)],
    "anode_images": [("digits8x8", "node", 0)],
}
MISSING = {"affjord_images": [("digits8x8", "affjord_concat", 1)]}


def _results(experiment: str) -> None:
    """The laptop-scale run tree of one experiment, with its failed and missing seeds."""
    rng = np.random.default_rng(0)
    if experiment == "anode_images":
        _classifier_runs(rng)
    else:
        _image_flow_runs(experiment, rng)
        _toy_density_runs(experiment, rng)
    for dataset, model, seed in FAILED.get(experiment, []):
        _fail(_run_dir(experiment, dataset, model, seed))
    for dataset, model, seed in MISSING.get(experiment, []):
        (_run_dir(experiment, dataset, model, seed) / "eval.json").unlink()


def _check_figures(paths: list[Path], out: Path, names: list[str]) -> None:
    expected = {out / f"{n}.{ext}" for n in names for ext in ("png", "pdf")}
    assert set(paths) == expected
    assert len(paths) == len(expected)
    for path in expected:
        assert path.is_file() and path.stat().st_size > 5000, path
        if path.suffix == ".png":
            image = mpimg.imread(path)
            assert image.ndim == 3 and min(image.shape[:2]) > 300, path
            assert image[..., :3].std() > 0.02, f"{path} is blank"
        else:
            assert path.read_bytes().startswith(b"%PDF"), path


@pytest.mark.parametrize("experiment", list(EXPECTED))
def test_image_figures_despite_failed_and_missing_runs(workdir: Path, experiment: str) -> None:
    _results(experiment)
    out = workdir / "figures" / experiment
    paths = plot_experiment(SCALE, experiment, out, "config")
    _check_figures(paths, out, EXPECTED[experiment])


def test_groups_and_dataset_split(workdir: Path) -> None:
    _results("affjord_images")
    exp = Experiment(SCALE, "affjord_images", "config")
    assert exp.group("digits8x8", "ffjord").label() == "ffjord (1 seed, 1 failed)"
    assert exp.group("digits8x8", "affjord_concat").label() == "affjord_concat (1 seed, 1 missing)"
    assert exp.group("digits8x8", "ffjord").first_completed("samples.npz").spec.seed == 1
    exp = Experiment(SCALE, "affjord_rnode", "config")
    assert exp.datasets == ["hash", "digits8x8"] and exp.image_datasets() == ["digits8x8"]
    assert "not MNIST" in exp.dataset_title("digits8x8")
    assert "not full MNIST" in exp.dataset_title("mnist5k")


def test_montage_greyscale_and_rgb() -> None:
    grey = montage(np.zeros((10, 1, 8, 8), dtype=np.uint8))
    assert grey.shape == (3 * 9 + 1, 4 * 9 + 1)  # 4 columns × 3 rows, 1-pixel gaps
    rgb = montage(np.zeros((4, 3, 5, 5), dtype=np.uint8))
    assert rgb.shape == (2 * 6 + 1, 2 * 6 + 1, 3)


@pytest.mark.parametrize("experiment", ["affjord_rnode", "anode_images"])
def test_no_runs_at_all(workdir: Path, experiment: str) -> None:
    # nothing has run yet (and no prepared data): every figure still exists and says so; these two
    # cover both image plotters and the toy/image split (the others share their code paths)
    out = workdir / "figures" / experiment
    _check_figures(plot_experiment(SCALE, experiment, out, "config"), out, EXPECTED[experiment])
    exp = Experiment(SCALE, experiment, "config")
    assert exp.group("digits8x8", exp.models[0]).label().endswith("(0 seeds, 2 missing)")
