"""Tests of the seeded toy data generators (odeflows.data.toy2d, odeflows.data.anode_toy)."""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path

import numpy as np
import pytest

try:
    toy2d = importlib.import_module("odeflows.data.toy2d")
except ModuleNotFoundError:
    # Allow running the tests from a plain checkout without installing the package.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    toy2d = importlib.import_module("odeflows.data.toy2d")
anode_toy = importlib.import_module("odeflows.data.anode_toy")


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# --------------------------------------------------------------------------- toy2d


def test_dataset_names_in_order() -> None:
    assert toy2d.DATASETS == (
        "swissroll",
        "circles",
        "rings",
        "moons",
        "8gaussians",
        "pinwheel",
        "2spirals",
        "checkerboard",
        "hash",
        "checkerboard_affjord",
        "ty",
    )


@pytest.mark.parametrize("name", toy2d.DATASETS)
@pytest.mark.parametrize("n", [1, 7, 1000])
def test_toy2d_shape_dtype(name: str, n: int) -> None:
    x = toy2d.sample(name, n, _rng(n))
    assert x.shape == (n, 2)
    assert x.dtype == np.float32
    assert np.all(np.isfinite(x))


@pytest.mark.parametrize("name", toy2d.DATASETS)
def test_toy2d_seeding(name: str) -> None:
    a = toy2d.sample(name, 257, _rng(123))
    b = toy2d.sample(name, 257, _rng(123))
    c = toy2d.sample(name, 257, _rng(124))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("name", toy2d.DATASETS)
def test_toy2d_ignores_global_numpy_state(name: str) -> None:
    np.random.seed(1)
    a = toy2d.sample(name, 50, _rng(5))
    np.random.seed(2)
    b = toy2d.sample(name, 50, _rng(5))
    np.testing.assert_array_equal(a, b)


def test_toy2d_unknown_name() -> None:
    with pytest.raises(ValueError, match="8gaussians"):
        toy2d.sample("9gaussians", 10, _rng())


@pytest.mark.parametrize("n", [0, -3, 2.5, True, "10", None])
def test_toy2d_bad_n(n: object) -> None:
    with pytest.raises(ValueError):
        toy2d.sample("moons", n, _rng())  # type: ignore[arg-type]


def test_toy2d_accepts_numpy_int() -> None:
    assert toy2d.sample("rings", np.int64(9), _rng()).shape == (9, 2)


def test_toy2d_rejects_legacy_random_state() -> None:
    with pytest.raises(TypeError):
        toy2d.sample("moons", 10, np.random.RandomState(0))  # type: ignore[arg-type]


def test_8gaussians_near_centres() -> None:
    x = toy2d.sample("8gaussians", 20000, _rng(1)).astype(np.float64)
    centres = 4.0 * np.array(
        [(math.cos(k * math.pi / 4), math.sin(k * math.pi / 4)) for k in range(8)]
    )
    centres /= 1.414
    d = np.linalg.norm(x[:, None, :] - centres[None], axis=2)
    nearest = d.argmin(axis=1)
    # E|N(0, 0.25 I_2)| = 0.5 * sqrt(pi / 2) ~ 0.627 before dividing by 1.414 -> ~0.443.
    assert abs(d.min(axis=1).mean() - 0.5 * math.sqrt(math.pi / 2) / 1.414) < 0.02
    freq = np.bincount(nearest, minlength=8) / len(x)
    np.testing.assert_allclose(freq, 1 / 8, atol=0.015)


def test_checkerboard_parity() -> None:
    x = toy2d.sample("checkerboard", 20000, _rng(2)).astype(np.float64)
    assert np.all(x >= -4) and np.all(x < 4)
    parity = (np.floor(x[:, 0] / 2) + np.floor(x[:, 1] / 2)) % 2
    assert np.all(parity == 0)
    # All 8 filled cells of the 4x4 board are populated roughly evenly.
    cells = np.floor(x / 2).astype(int) + 2
    counts = np.bincount(cells[:, 0] * 4 + cells[:, 1], minlength=16)
    filled = counts[counts > 0]
    assert len(filled) == 8
    np.testing.assert_allclose(filled / len(x), 1 / 8, atol=0.015)


def test_checkerboard_affjord_support() -> None:
    x = toy2d.sample("checkerboard_affjord", 16000, _rng(3)).astype(np.float64)
    corners = np.array(toy2d.CHECKERBOARD_AFFJORD_CORNERS)
    inside = (
        (x[:, None, 0] >= corners[None, :, 0])
        & (x[:, None, 0] <= corners[None, :, 0] + 0.75)
        & (x[:, None, 1] >= corners[None, :, 1])
        & (x[:, None, 1] <= corners[None, :, 1] + 0.75)
    )
    assert np.all(inside.any(axis=1))
    np.testing.assert_allclose(inside.mean(axis=0), 1 / 8, atol=0.015)


def _in_hash_bars(x: np.ndarray) -> np.ndarray:
    inside = np.zeros(len(x), dtype=bool)
    for x0, x1, y0, y1 in toy2d.HASH_BARS:
        inside |= (x[:, 0] >= x0) & (x[:, 0] <= x1) & (x[:, 1] >= y0) & (x[:, 1] <= y1)
    return inside


def test_hash_support() -> None:
    x = toy2d.sample("hash", 18000, _rng(4)).astype(np.float64)
    in_bars = _in_hash_bars(x)
    # 4 of 9 equally weighted components are the bars; Gaussian tails add only ~0.5 %.
    assert abs(in_bars.mean() - 4 / 9) < 0.02
    centres = np.array(toy2d.HASH_GAUSSIAN_CENTRES)
    d = np.linalg.norm(x[:, None, :] - centres[None], axis=2).min(axis=1)
    near_gauss = d < 4 * math.sqrt(0.02)
    assert (in_bars | near_gauss).mean() > 0.995
    # Gaussian spread: variance 0.02 per coordinate around each centre.
    blob = x[(~in_bars) & (np.linalg.norm(x - [1.25, 1.25], axis=1) < 0.7)] - [1.25, 1.25]
    assert abs(blob.var(axis=0).mean() - 0.02) < 0.004


def test_rings_radii() -> None:
    x = toy2d.sample("rings", 20000, _rng(5)).astype(np.float64)
    r = np.linalg.norm(x, axis=1)
    radii = np.array([3.0, 2.25, 1.5, 0.75])
    dist = np.abs(r[:, None] - radii[None])
    assert np.mean(dist.min(axis=1) < 0.3) > 0.99
    assert np.median(dist.min(axis=1)) < 0.08
    freq = np.bincount(dist.argmin(axis=1), minlength=4) / len(x)
    np.testing.assert_allclose(freq, 0.25, atol=0.01)


def test_circles_radii() -> None:
    x = toy2d.sample("circles", 10000, _rng(6)).astype(np.float64)
    r = np.linalg.norm(x, axis=1)
    # Noise is added before the x3, so its std is 0.24 and the two rings slightly overlap.
    dist = np.abs(r[:, None] - np.array([3.0, 1.5])[None])
    assert np.mean(dist.min(axis=1) < 0.75) > 0.99
    assert np.median(dist.min(axis=1)) < 0.25
    assert abs(np.mean(dist.argmin(axis=1) == 0) - 0.5) < 0.02


def test_swissroll_radius_range() -> None:
    x = toy2d.sample("swissroll", 10000, _rng(7)).astype(np.float64) * 5
    r = np.linalg.norm(x, axis=1)
    # t in [1.5 pi, 4.5 pi] plus unit Gaussian noise on each coordinate.
    assert np.quantile(r, 0.01) > 1.5 * np.pi - 3 and np.quantile(r, 0.99) < 4.5 * np.pi + 3
    assert abs(np.median(r) - 3 * np.pi) < 1.5


def test_moons_and_spirals_and_pinwheel_shape() -> None:
    m = toy2d.sample("moons", 10000, _rng(8)).astype(np.float64)
    # Undo the x2 and shift; the two moons are centred at (0, 0.63) and (1, -0.13) on average.
    u = (m - [-1.0, -0.2]) / 2
    assert abs(u[:, 0].mean() - 0.5) < 0.03 and abs(u[:, 1].mean() - 0.25) < 0.03
    s = toy2d.sample("2spirals", 10000, _rng(9)).astype(np.float64)
    # arm2 = -arm1: the mixture is point-symmetric about the origin.
    assert np.linalg.norm(s.mean(axis=0)) < 0.05
    assert np.linalg.norm(s, axis=1).max() < (3 * np.pi + 1) / 3 + 0.6
    p = toy2d.sample("pinwheel", 10000, _rng(10)).astype(np.float64)
    # |rotated feature| = |feature| ~ |(1 + 0.3 z1, 0.1 z2)|, scaled by 2.
    assert abs(np.linalg.norm(p, axis=1).mean() - 2.0) < 0.05


def _dist_to_rect_strokes(x: np.ndarray) -> np.ndarray:
    """Signed-free distance from each point to the union of the ty stroke rectangles."""
    w = toy2d.TY_STROKE_WIDTH
    out = np.full(len(x), np.inf)
    for a, b in toy2d.TY_STROKES:
        a_, b_ = np.asarray(a), np.asarray(b)
        length = np.linalg.norm(b_ - a_)
        t = (b_ - a_) / length
        nrm = np.array([-t[1], t[0]])
        rel = x - a_
        s = rel @ t
        q = rel @ nrm
        ds = np.maximum(np.maximum(-s, s - length), 0)
        dq = np.maximum(np.abs(q) - w / 2, 0)
        out = np.minimum(out, np.hypot(ds, dq))
    return out


def test_ty_geometry() -> None:
    n = 20000
    x = toy2d.sample("ty", n, _rng(11)).astype(np.float64)
    assert np.all(np.abs(x) <= 1.6)
    centres = np.array(toy2d.TY_GAUSSIAN_CENTRES)
    d = np.linalg.norm(x[:, None, :] - centres[None], axis=2)
    near_gauss = d.min(axis=1) < 5 * toy2d.TY_GAUSSIAN_STD
    assert abs(near_gauss.mean() - 0.3) < 0.02
    np.testing.assert_allclose(np.bincount(d.argmin(axis=1)[near_gauss]) / n, 0.1, atol=0.015)
    letters = x[~near_gauss]
    assert np.all(_dist_to_rect_strokes(letters) < 1e-6)
    # Uniform ink: the T (left) gets 0.7 * (1.2 + 1.35) / total stroke length.
    lengths = [math.dist(a, b) for a, b in toy2d.TY_STROKES]
    expected_t = 0.7 * (lengths[0] + lengths[1]) / sum(lengths)
    assert abs(np.mean(letters[:, 0] < 0) - expected_t / 0.7) < 0.02
    # Density along the T stem is flat: compare halves of the stem.
    stem = letters[(np.abs(letters[:, 0] + 0.75) <= 0.05) & (letters[:, 1] < 1.15)]
    lower = np.mean(stem[:, 1] < (1.15 - 0.2) / 2)
    assert abs(lower - 0.5) < 0.05


# ----------------------------------------------------------------------- anode_toy


def test_anode_names() -> None:
    assert anode_toy.DATASETS == ("g1d", "spheres1d", "spheres2d", "shifted_sines")


@pytest.mark.parametrize(
    ("name", "d"), [("g1d", 1), ("spheres1d", 1), ("spheres2d", 2), ("shifted_sines", 2)]
)
@pytest.mark.parametrize("n", [1, 7, 1000])
def test_anode_shapes(name: str, d: int, n: int) -> None:
    x, y = anode_toy.sample(name, n, _rng(n))
    assert x.shape == (n, d) and y.shape == (n, 1)
    assert x.dtype == np.float32 and y.dtype == np.float32
    assert set(np.unique(y)) <= {-1.0, 1.0}


@pytest.mark.parametrize("name", anode_toy.DATASETS)
def test_anode_seeding(name: str) -> None:
    a = anode_toy.sample(name, 300, _rng(7))
    b = anode_toy.sample(name, 300, _rng(7))
    c = anode_toy.sample(name, 300, _rng(8))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_anode_errors() -> None:
    with pytest.raises(ValueError, match="spheres2d"):
        anode_toy.sample("spheres3d", 10, _rng())
    with pytest.raises(ValueError, match="r1"):
        anode_toy.sample("spheres2d", 10, _rng(), radius=2.0)
    with pytest.raises(ValueError):
        anode_toy.sample("spheres2d", 10, _rng(), r1=1.2)  # r1 >= r2
    with pytest.raises(ValueError):
        anode_toy.sample("spheres2d", 10, _rng(), n_inner=5)  # conflicts with n
    with pytest.raises(ValueError):
        anode_toy.sample("spheres1d", None, _rng(), n_inner=0, n_outer=0)
    with pytest.raises(ValueError):
        anode_toy.sample("shifted_sines", 10, _rng(), noise=-0.1)
    with pytest.raises(ValueError):
        anode_toy.sample("g1d", None, _rng())
    with pytest.raises(ValueError):
        anode_toy.sample("g1d", 0, _rng())


def test_g1d_targets() -> None:
    x, y = anode_toy.sample("g1d", 4000, _rng(1))
    assert set(np.unique(x)) == {-1.0, 1.0}
    np.testing.assert_array_equal(y, -x)
    assert abs(np.mean(x > 0) - 0.5) < 0.03
    xn, yn = anode_toy.sample("g1d", 4000, _rng(1), noise_scale=0.01)
    np.testing.assert_array_equal(yn, -np.sign(np.round(xn)))


@pytest.mark.parametrize(("name", "d"), [("spheres1d", 1), ("spheres2d", 2)])
def test_spheres_geometry(name: str, d: int) -> None:
    x, y = anode_toy.sample(name, 3000, _rng(2))
    r = np.linalg.norm(x.astype(np.float64), axis=1)
    inner = y[:, 0] == -1
    assert inner.sum() == 1000 and (~inner).sum() == 2000
    assert np.all(r[inner] <= 0.5 + 1e-6)
    assert np.all((r[~inner] >= 1.0 - 1e-6) & (r[~inner] <= 1.5 + 1e-6))
    # Shuffled: the labels are not in contiguous blocks.
    assert np.any(inner[:1000] != inner[0])
    xd, yd = anode_toy.sample(name, None, _rng(2))
    assert xd.shape == (3000, d) and (yd == -1).sum() == 1000
    _, ys = anode_toy.sample(name, None, _rng(2), n_inner=10, n_outer=5)
    assert (ys == -1).sum() == 10 and (ys == 1).sum() == 5


def test_spheres1d_both_signs() -> None:
    x, y = anode_toy.sample("spheres1d", 3000, _rng(3))
    outer = x[y[:, 0] == 1, 0]
    assert abs(np.mean(outer > 0) - 0.5) < 0.05


def test_spheres2d_inner_uniform_in_disk() -> None:
    x, y = anode_toy.sample("spheres2d", None, _rng(4), n_inner=8000, n_outer=10)
    r = np.linalg.norm(x[y[:, 0] == -1].astype(np.float64), axis=1)
    # Uniform in a disk of radius R: P(r < R / sqrt 2) = 1/2 (a uniform radius would give 0.71).
    assert abs(np.mean(r < 0.5 / math.sqrt(2)) - 0.5) < 0.03
    angle = np.arctan2(x[y[:, 0] == -1, 1], x[y[:, 0] == -1, 0])
    hist = np.histogram(angle, bins=8, range=(-np.pi, np.pi))[0] / len(angle)
    np.testing.assert_allclose(hist, 1 / 8, atol=0.02)


def test_shifted_sines_labels() -> None:
    x, y = anode_toy.sample("shifted_sines", 4001, _rng(5))
    x = x.astype(np.float64)
    assert np.all(np.abs(x[:, 0]) <= 1)
    resid = x[:, 1] - np.sin(np.pi * x[:, 0])
    # shift/2 = 0.7 is 7 noise stds away from the other curve.
    np.testing.assert_array_equal(np.sign(resid), y[:, 0])
    assert (y == 1).sum() == 2001
    assert abs(np.abs(resid).mean() - 0.7) < 0.01
    assert abs(np.std(resid - 0.7 * y[:, 0]) - 0.1) < 0.01
