"""Seeded generators of 2-D toy density datasets (FFJORD / AFFJORD benchmarks).

Every generator draws *only* from the ``numpy.random.Generator`` it is given, so
identically seeded generators give bit-identical arrays. :func:`sample`
always returns a ``float32`` array of shape ``(n, 2)``.

Sources
-------
* ``swissroll``, ``circles``, ``rings``, ``moons``, ``8gaussians``, ``pinwheel``,
  ``2spirals``, ``checkerboard``: FFJORD ``lib/toy_data.py`` (``inf_train_gen``); the
  scikit-learn generators it calls (``make_swiss_roll``, ``make_circles``,
  ``make_moons``) are re-implemented here with numpy, following their recipes.
* ``hash``, ``checkerboard_affjord``: AFFJORD official code (``hash_gaussian/``).
* ``ty``: our own design, described below.

Where a recipe naturally produces fewer than ``n`` points (e.g. pinwheel makes
``5 * (n // 5)``), a few more are drawn, the rows are shuffled with ``rng`` and the
first ``n`` are kept, so the retained rows are an unbiased subset.

The ``ty`` dataset (ours)
-------------------------
The AFFJORD paper shows a "TY" density (letters T and Y plus Gaussian blobs) but
its code does not define it. Our definition is a mixture of 8 components:

Letter strokes. Each stroke is a rectangle of width ``W = 0.1`` centred on a
segment ``a -> b`` (length ``|b - a|``, extending ``W / 2`` to each side, not past
the end points), sampled uniformly over its area:

* T, horizontal bar: (-1.35, 1.20) -> (-0.15, 1.20), length 1.2
* T, vertical stem (starts under the bar): (-0.75, 1.15) -> (-0.75, -0.20), length 1.35
* Y, vertical stem: (0.75, -0.20) -> (0.75, 0.50), length 0.7
* Y, left arm: (0.75, 0.50) -> (0.15, 1.25), length sqrt(0.6^2 + 0.75^2) = 0.9605
* Y, right arm: (0.75, 0.50) -> (1.35, 1.25), length 0.9605

So T occupies x in [-1.35, -0.15], y in [-0.2, 1.25]; Y occupies roughly
x in [0.11, 1.39], y in [-0.2, 1.28]. Only the Y's arms overlap its stem near the
junction (0.75, 0.5), a small area of doubled density.

Gaussians. Three isotropic Gaussians with std ``0.06`` centred at
``(-0.75, -0.9)``, ``(0, -0.9)`` and ``(0.75, -0.9)``, below the letters.

Weights. The five strokes together get 0.7, each in proportion to its area
(``W * length``, so ink density is uniform across the letters); each Gaussian
gets 0.1 (0.3 in total). Samples are finally clipped to ``[-1.6, 1.6]^2``; the
nearest edge is more than 11 standard deviations from every Gaussian centre, so
the clip never changes a sample in practice and only guarantees the stated bound.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from numbers import Integral

import numpy as np

__all__ = ["sample"]

DATASETS: tuple[str, ...] = (
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

# Geometry of the ``ty`` dataset; see the module docstring (the spec users cite).
TY_STROKE_WIDTH = 0.1
TY_STROKES: tuple[tuple[tuple[float, float], tuple[float, float]], ...] = (
    ((-1.35, 1.20), (-0.15, 1.20)),  # T bar
    ((-0.75, 1.15), (-0.75, -0.20)),  # T stem
    ((0.75, -0.20), (0.75, 0.50)),  # Y stem
    ((0.75, 0.50), (0.15, 1.25)),  # Y left arm
    ((0.75, 0.50), (1.35, 1.25)),  # Y right arm
)
TY_GAUSSIAN_CENTRES: tuple[tuple[float, float], ...] = ((-0.75, -0.9), (0.0, -0.9), (0.75, -0.9))
TY_GAUSSIAN_STD = 0.06
TY_LETTER_WEIGHT = 0.7
TY_BOUND = 1.6


def _shuffle_take(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(x)[:n]


def _swissroll(n: int, rng: np.random.Generator) -> np.ndarray:
    """FFJORD lib/toy_data.py: sklearn make_swiss_roll(noise=1.0), columns (x, z), / 5."""
    t = 1.5 * np.pi * (1 + 2 * rng.uniform(size=n))
    y = 21 * rng.uniform(size=n)
    x3 = np.vstack((t * np.cos(t), y, t * np.sin(t)))
    x3 += 1.0 * rng.standard_normal(size=(3, n))
    return x3.T[:, [0, 2]] / 5


def _circles(n: int, rng: np.random.Generator) -> np.ndarray:
    """FFJORD lib/toy_data.py: sklearn make_circles(factor=0.5, noise=0.08), x 3."""
    n_out = n // 2
    n_in = n - n_out
    lin_out = np.linspace(0, 2 * np.pi, n_out, endpoint=False)
    lin_in = np.linspace(0, 2 * np.pi, n_in, endpoint=False)
    x = np.vstack(
        [
            np.append(np.cos(lin_out), 0.5 * np.cos(lin_in)),
            np.append(np.sin(lin_out), 0.5 * np.sin(lin_in)),
        ]
    ).T
    x = rng.permutation(x)
    x = x + rng.normal(scale=0.08, size=x.shape)
    return x * 3


def _rings(n: int, rng: np.random.Generator) -> np.ndarray:
    """FFJORD lib/toy_data.py: 4 concentric circles (radii 1, .75, .5, .25) x 3 + noise."""
    n4 = n3 = n2 = n // 4
    n1 = n - n4 - n3 - n2
    xs, ys = [], []
    for count, radius in ((n4, 1.0), (n3, 0.75), (n2, 0.5), (n1, 0.25)):
        # endpoint=False so that the first and last points of a ring do not coincide
        lin = np.linspace(0, 2 * np.pi, count, endpoint=False)
        xs.append(np.cos(lin) * radius)
        ys.append(np.sin(lin) * radius)
    x = np.vstack([np.hstack(xs), np.hstack(ys)]).T * 3.0
    x = rng.permutation(x)
    return x + rng.normal(scale=0.08, size=x.shape)


def _moons(n: int, rng: np.random.Generator) -> np.ndarray:
    """FFJORD lib/toy_data.py: sklearn make_moons(noise=0.1), x 2, shifted by (-1, -0.2)."""
    n_out = n // 2
    n_in = n - n_out
    th_out = np.linspace(0, np.pi, n_out)
    th_in = np.linspace(0, np.pi, n_in)
    x = np.vstack(
        [
            np.append(np.cos(th_out), 1 - np.cos(th_in)),
            np.append(np.sin(th_out), 1 - np.sin(th_in) - 0.5),
        ]
    ).T
    x = rng.permutation(x)
    x = x + rng.normal(scale=0.1, size=x.shape)
    return x * 2 + np.array([-1.0, -0.2])


EIGHT_GAUSSIAN_CENTRES = 4.0 * np.array(
    [(math.cos(k * math.pi / 4), math.sin(k * math.pi / 4)) for k in range(8)]
)


def _8gaussians(n: int, rng: np.random.Generator) -> np.ndarray:
    """FFJORD lib/toy_data.py: 8 Gaussians (std 0.5) on a radius-4 circle, / 1.414."""
    points = rng.standard_normal((n, 2)) * 0.5
    idx = rng.integers(0, 8, size=n)
    return (points + EIGHT_GAUSSIAN_CENTRES[idx]) / 1.414


def _pinwheel(n: int, rng: np.random.Generator) -> np.ndarray:
    """FFJORD lib/toy_data.py: 5-arm pinwheel (radial std .3, tangential .1, rate .25)."""
    radial_std, tangential_std, num_classes, rate = 0.3, 0.1, 5, 0.25
    per_class = -(-n // num_classes)  # ceil, so that truncation can give exactly n rows
    rads = np.linspace(0, 2 * np.pi, num_classes, endpoint=False)
    features = rng.standard_normal((num_classes * per_class, 2)) * np.array(
        [radial_std, tangential_std]
    )
    features[:, 0] += 1.0
    labels = np.repeat(np.arange(num_classes), per_class)
    angles = rads[labels] + rate * np.exp(features[:, 0])
    rotations = np.stack([np.cos(angles), -np.sin(angles), np.sin(angles), np.cos(angles)])
    rotations = np.reshape(rotations.T, (-1, 2, 2))
    x = 2 * np.einsum("ti,tij->tj", features, rotations)
    return _shuffle_take(x, n, rng)


def _2spirals(n: int, rng: np.random.Generator) -> np.ndarray:
    """FFJORD lib/toy_data.py: two interleaved spirals, / 3, + N(0, 0.1^2)."""
    m = -(-n // 2)
    r = np.sqrt(rng.random((m, 1))) * 540 * (2 * np.pi) / 360
    d1x = -np.cos(r) * r + rng.random((m, 1)) * 0.5
    d1y = np.sin(r) * r + rng.random((m, 1)) * 0.5
    x = np.vstack((np.hstack((d1x, d1y)), np.hstack((-d1x, -d1y)))) / 3
    x += rng.standard_normal(x.shape) * 0.1
    return _shuffle_take(x, n, rng)


def _checkerboard(n: int, rng: np.random.Generator) -> np.ndarray:
    """FFJORD lib/toy_data.py: 4x4 checkerboard on [-4, 4]^2 (8 filled squares)."""
    x1 = rng.random(n) * 4 - 2
    x2_ = rng.random(n) - rng.integers(0, 2, n) * 2
    x2 = x2_ + (np.floor(x1) % 2)
    return np.concatenate([x1[:, None], x2[:, None]], 1) * 2


HASH_BARS: tuple[tuple[float, float, float, float], ...] = (
    # (x_min, x_max, y_min, y_max)
    (0.4, 0.5, -1.25, 1.25),
    (-0.5, -0.4, -1.25, 1.25),
    (-1.25, 1.25, 0.4, 0.5),
    (-1.25, 1.25, -0.5, -0.4),
)
HASH_GAUSSIAN_CENTRES: tuple[tuple[float, float], ...] = (
    (1.25, 1.25),
    (1.25, -1.25),
    (-1.25, 1.25),
    (-1.25, -1.25),
    (0.0, 0.0),
)
HASH_GAUSSIAN_VAR = 0.02


def _uniform_box(
    box: tuple[float, float, float, float], n: int, rng: np.random.Generator
) -> np.ndarray:
    x0, x1, y0, y1 = box
    u = rng.random((n, 2))
    return np.column_stack((x0 + (x1 - x0) * u[:, 0], y0 + (y1 - y0) * u[:, 1]))


def _hash(n: int, rng: np.random.Generator) -> np.ndarray:
    """AFFJORD official code hash_gaussian/: '#' of 4 uniform bars + 5 Gaussians (var 0.02)."""
    parts = [_uniform_box(box, n, rng) for box in HASH_BARS]
    std = math.sqrt(HASH_GAUSSIAN_VAR)
    parts += [np.asarray(c) + std * rng.standard_normal((n, 2)) for c in HASH_GAUSSIAN_CENTRES]
    return _shuffle_take(np.concatenate(parts), n, rng)


CHECKERBOARD_AFFJORD_CORNERS: tuple[tuple[float, float], ...] = (
    (-1.5, 0.75),
    (0.0, 0.75),
    (-0.75, 0.0),
    (0.75, 0.0),
    (-1.5, -0.75),
    (0.0, -0.75),
    (-0.75, -1.5),
    (0.75, -1.5),
)
CHECKERBOARD_AFFJORD_SIDE = 0.75


def _checkerboard_affjord(n: int, rng: np.random.Generator) -> np.ndarray:
    """AFFJORD official code hash_gaussian/: 8 uniform squares of side 0.75."""
    s = CHECKERBOARD_AFFJORD_SIDE
    parts = [
        _uniform_box((x0, x0 + s, y0, y0 + s), n, rng) for x0, y0 in CHECKERBOARD_AFFJORD_CORNERS
    ]
    return _shuffle_take(np.concatenate(parts), n, rng)


def _ty_weights() -> np.ndarray:
    lengths = np.array([math.dist(a, b) for a, b in TY_STROKES])
    # Stroke areas are W * length; W cancels once normalised.
    stroke_w = TY_LETTER_WEIGHT * lengths / lengths.sum()
    n_g = len(TY_GAUSSIAN_CENTRES)
    gauss_w = np.full(n_g, (1.0 - TY_LETTER_WEIGHT) / n_g)
    return np.concatenate([stroke_w, gauss_w])


def _ty(n: int, rng: np.random.Generator) -> np.ndarray:
    """Ours: letters 'T' and 'Y' of uniform thin strokes plus 3 Gaussians (see module doc)."""
    weights = _ty_weights()
    n_strokes = len(TY_STROKES)
    comp = rng.choice(len(weights), size=n, p=weights)
    u = rng.random((n, 2))
    z = rng.standard_normal((n, 2))

    a = np.array([s[0] for s in TY_STROKES])
    b = np.array([s[1] for s in TY_STROKES])
    direction = b - a
    unit = direction / np.linalg.norm(direction, axis=1, keepdims=True)
    normal = np.column_stack((-unit[:, 1], unit[:, 0]))
    centres = np.asarray(TY_GAUSSIAN_CENTRES)

    is_stroke = comp < n_strokes
    s_idx = np.where(is_stroke, comp, 0)
    g_idx = np.where(is_stroke, 0, comp - n_strokes)
    stroke_pts = (
        a[s_idx] + u[:, :1] * direction[s_idx] + (u[:, 1:] - 0.5) * TY_STROKE_WIDTH * normal[s_idx]
    )
    gauss_pts = centres[g_idx] + TY_GAUSSIAN_STD * z
    x = np.where(is_stroke[:, None], stroke_pts, gauss_pts)
    return np.clip(x, -TY_BOUND, TY_BOUND)


_GENERATORS: dict[str, Callable[[int, np.random.Generator], np.ndarray]] = {
    "swissroll": _swissroll,
    "circles": _circles,
    "rings": _rings,
    "moons": _moons,
    "8gaussians": _8gaussians,
    "pinwheel": _pinwheel,
    "2spirals": _2spirals,
    "checkerboard": _checkerboard,
    "hash": _hash,
    "checkerboard_affjord": _checkerboard_affjord,
    "ty": _ty,
}
assert tuple(_GENERATORS) == DATASETS


def sample(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``n`` points of the 2-D toy dataset ``name`` using only ``rng``.

    Returns a ``float32`` array of shape ``(n, 2)``. Raises ``ValueError`` for an
    unknown name or a non-positive / non-integer ``n``, and ``TypeError`` if ``rng``
    is not a ``numpy.random.Generator`` (the legacy global state would break seeding).
    """
    if name not in _GENERATORS:
        raise ValueError(f"unknown toy2d dataset {name!r}; allowed: {', '.join(DATASETS)}")
    if isinstance(n, bool) or not isinstance(n, Integral) or n <= 0:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    x = _GENERATORS[name](int(n), rng)
    assert x.shape == (n, 2), (name, x.shape)
    return np.ascontiguousarray(x, dtype=np.float32)


def _register() -> None:
    from odeflows.data import register_sampler

    for name in DATASETS:
        def draw(n: int, rng: np.random.Generator, _name: str = name) -> np.ndarray:
            return sample(_name, n, rng)
        draw.__module__ = __name__
        register_sampler(name, description=f"2-D toy density {name!r}")(draw)


_register()
