"""The per-pixel histogram baseline: a closed-form fit whose bits/dim equal an independent
categorical computation, a normalised density on the dequantised cube, and its run through the
real training loop (fitted, not optimised)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import ROOT
from odeflows.config import complete_config
from odeflows.models.pixel_baseline import PixelHistogram
from odeflows.tasks.image_density import bits_per_dim, dequantize


def _images(n=200, shape=(1, 3, 3), seed=0):
    rng = np.random.default_rng(seed)
    # pixel i takes few levels, with pixel-dependent frequencies
    levels = np.array([0, 16, 128, 255])
    probs = rng.dirichlet(np.ones(4), size=int(np.prod(shape)))
    idx = np.stack([rng.choice(4, n, p=p) for p in probs], 1)
    return torch.from_numpy(levels[idx].reshape(n, *shape).astype(np.uint8))


@pytest.mark.parametrize("bits", [8, 5])
def test_bits_per_dim_equal_an_independent_categorical(bits):
    train, test = _images(seed=0), _images(n=50, seed=1)
    model = PixelHistogram(train.shape[1:], bits=bits, smoothing=0.5)
    model.fit(train)
    x = dequantize(test, bits, "uniform", torch.Generator().manual_seed(0), torch.device("cpu"))
    bpd = bits_per_dim(model.log_prob(x), x[0].numel(), bits).mean().item()
    k_tr = train.numpy().reshape(len(train), -1) // 2 ** (8 - bits)
    k_te = test.numpy().reshape(len(test), -1) // 2 ** (8 - bits)
    counts = np.full((k_tr.shape[1], 2 ** bits), 0.5)
    for i in range(k_tr.shape[1]):
        np.add.at(counts[i], k_tr[:, i], 1)
    p = counts / counts.sum(1, keepdims=True)
    expected = -np.mean([np.log2(p[np.arange(len(k)), k]).sum() / len(k) for k in k_te])
    assert bpd == pytest.approx(expected, rel=1e-6)


def test_density_integrates_to_one_and_samples_sit_in_their_bins():
    model = PixelHistogram((1, 1, 1), bits=3)
    model.fit(_images(shape=(1, 1, 1)))
    # a 1-pixel image: integrate p over [0, 1] on a fine grid
    x = (torch.arange(8000, dtype=torch.float32) + 0.5) / 8000
    mass = model.log_prob(x.reshape(-1, 1, 1, 1)).exp().mean().item()
    assert mass == pytest.approx(1.0, abs=1e-5)
    s = model.sample(500, torch.Generator().manual_seed(0))
    assert s.shape == (500, 1, 1, 1)
    assert torch.allclose((s * 8 - 0.5), (s * 8 - 0.5).round())  # bin centres
    assert model.log_prob(s).isfinite().all()


def test_the_loop_fits_it_in_closed_form(tmp_path):
    from test_image_tasks import _image_npz

    from odeflows.evaluate import evaluate
    from odeflows.train import train

    data = _image_npz(tmp_path / "img.npz")
    cfg = complete_config({"experiment": "x", "dataset": "digits8x8", "model":
                           "pixel_histogram", "seed": 0, "scale": "smoke",
                           "solver": {"method": "rk4", "steps": 1},
                           "train": {"lr": 1e-3, "batch_size": 8, "epochs": 3},
                           "eval": {"batch_size": 64, "samples": 4}}, ROOT / "config")
    summary = train(cfg, data, tmp_path / "run", progress=False)
    assert summary["status"] == "completed" and summary["iterations"] == 0
    assert math.isfinite(summary["best_val_loss"]) and summary["num_parameters"] == 0
    result = evaluate(tmp_path / "run", data)
    assert result["status"] == "completed" and 0 < result["test_bpd"] < 9  # noise images
