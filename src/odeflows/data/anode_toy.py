"""Seeded generators of the Augmented Neural ODE (ANODE) toy regression datasets.

Definitions follow ANODE's official ``experiments/dataloaders.py`` (Dupont et al.,
2019), re-implemented with numpy and a ``numpy.random.Generator`` so that identical
seeds give bit-identical arrays. :func:`sample` returns ``(x, y)`` with ``x`` of
shape ``(n, d)`` and targets ``y`` of shape ``(n, 1)``, both ``float32``.

* ``g1d``: ``x = +-1`` with probability 1/2 each, ``y = -x`` (the function
  ``g_1d(-1) = 1, g_1d(1) = -1`` that a plain neural ODE cannot represent).
  Parameter ``noise_scale`` (as in ANODE's ``Data1D``) adds ``N(0, s^2)`` noise to
  ``x``; targets use the noiseless sign. ANODE defaults it to ``1e-6``; we default
  to ``0`` so that ``x`` is exactly ``+-1``.
* ``spheres1d`` / ``spheres2d``: concentric spheres in ``d = 1`` / ``2``. Inner
  points (target ``-1``) have radius in ``[0, r1]``, outer points (target ``+1``)
  radius in ``[r2, r3]``; radius ``= (r_max - r_min) * U^(1/d) + r_min`` and the
  direction is a normalised ``N(0, I_d)`` draw (a random sign when ``d = 1``).
  This is uniform in the inner ball but, as in ANODE, not uniform in the outer
  shell. Parameters: ``r1=0.5, r2=1.0, r3=1.5``; counts either from ``n`` (split
  1:2, ``n // 3`` inner) or, when ``n is None``, from ``n_inner=1000,
  n_outer=2000``.
* ``shifted_sines``: ``x1 ~ U[-1, 1]``, ``x2 = sin(pi x1) + N(0, noise^2) +- shift/2``.
  The upper curve (``+shift/2``) has label ``+1`` and the lower curve label ``-1``,
  as in ANODE's ``ShiftedSines`` (``if i < num_points_upper: label = 1``).
  Parameters: ``shift=1.4, noise=0.1``; ``n`` is split evenly (the upper curve gets
  the extra point when ``n`` is odd). ``d = 2``.

Rows are shuffled with ``rng`` so that class blocks do not appear in order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from numbers import Integral, Real
from typing import Any

import numpy as np

__all__ = ["sample"]

DATASETS: tuple[str, ...] = ("g1d", "spheres1d", "spheres2d", "shifted_sines")

_DEFAULTS: dict[str, dict[str, Any]] = {
    "g1d": {"noise_scale": 0.0},
    "spheres1d": {"r1": 0.5, "r2": 1.0, "r3": 1.5, "n_inner": 1000, "n_outer": 2000},
    "spheres2d": {"r1": 0.5, "r2": 1.0, "r3": 1.5, "n_inner": 1000, "n_outer": 2000},
    "shifted_sines": {"shift": 1.4, "noise": 0.1},
}


def _check_count(name: str, value: Any, *, allow_zero: bool) -> int:
    ok = isinstance(value, Integral) and not isinstance(value, bool)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be a {kind} int, got {value!r}")
    return int(value)


def _check_real(name: str, value: Any, *, min_value: float = -math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    if value < min_value:
        raise ValueError(f"{name} must be >= {min_value}, got {value!r}")
    return float(value)


def _g1d(n: int | None, rng: np.random.Generator, p: Mapping[str, Any]) -> tuple:
    """ANODE experiments/dataloaders.py Data1D(target_flip=True): x = +-1, y = -x."""
    if n is None:
        raise ValueError("g1d needs n (a positive int)")
    noise_scale = _check_real("noise_scale", p["noise_scale"], min_value=0.0)
    sign = np.where(rng.random((n, 1)) < 0.5, -1.0, 1.0)
    x = sign + (noise_scale * rng.standard_normal((n, 1)) if noise_scale > 0 else 0.0)
    return x, -sign


def _point_in_shell(
    n: int, d: int, r_min: float, r_max: float, rng: np.random.Generator
) -> np.ndarray:
    radius = (r_max - r_min) * rng.random((n, 1)) ** (1.0 / d) + r_min
    direction = rng.standard_normal((n, d))
    norm = np.linalg.norm(direction, axis=1, keepdims=True)
    # A standard normal draw is exactly zero with probability ~0; guard the division anyway.
    norm = np.where(norm == 0, 1.0, norm)
    return radius * direction / norm


def _spheres(d: int) -> Callable[[int | None, np.random.Generator, Mapping[str, Any]], tuple]:
    def gen(n: int | None, rng: np.random.Generator, p: Mapping[str, Any]) -> tuple:
        """ANODE experiments/dataloaders.py ConcentricSphere: inner ball -1, outer shell +1."""
        r1 = _check_real("r1", p["r1"], min_value=0.0)
        r2 = _check_real("r2", p["r2"], min_value=0.0)
        r3 = _check_real("r3", p["r3"], min_value=0.0)
        if not r1 < r2 < r3:
            raise ValueError(f"need 0 <= r1 < r2 < r3, got r1={r1}, r2={r2}, r3={r3}")
        if n is None:
            n_inner = _check_count("n_inner", p["n_inner"], allow_zero=True)
            n_outer = _check_count("n_outer", p["n_outer"], allow_zero=True)
            if n_inner + n_outer == 0:
                raise ValueError("n_inner + n_outer must be positive")
        else:
            n_inner = n // 3
            n_outer = n - n_inner
        x = np.concatenate(
            [_point_in_shell(n_inner, d, 0.0, r1, rng), _point_in_shell(n_outer, d, r2, r3, rng)]
        )
        y = np.concatenate([-np.ones((n_inner, 1)), np.ones((n_outer, 1))])
        return x, y

    return gen


def _shifted_sines(n: int | None, rng: np.random.Generator, p: Mapping[str, Any]) -> tuple:
    """ANODE experiments/dataloaders.py ShiftedSines(dim=2): upper curve +1, lower -1."""
    if n is None:
        raise ValueError("shifted_sines needs n (a positive int)")
    shift = _check_real("shift", p["shift"])
    noise = _check_real("noise", p["noise"], min_value=0.0)
    n_upper = n - n // 2
    label = np.concatenate([np.ones(n_upper), -np.ones(n - n_upper)])
    x1 = 2 * rng.random(n) - 1
    x2 = np.sin(np.pi * x1) + noise * rng.standard_normal(n) + label * shift / 2
    return np.column_stack((x1, x2)), label[:, None]


_GENERATORS: dict[str, Callable[[int | None, np.random.Generator, Mapping[str, Any]], tuple]] = {
    "g1d": _g1d,
    "spheres1d": _spheres(1),
    "spheres2d": _spheres(2),
    "shifted_sines": _shifted_sines,
}


def sample(
    name: str, n: int | None, rng: np.random.Generator, **params: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Draw the ANODE toy dataset ``name`` using only ``rng``.

    Returns ``(x, y)``: ``x`` float32 of shape ``(n, d)``, ``y`` float32 of shape
    ``(n, 1)``. ``n=None`` is accepted only by the spheres datasets (counts then come
    from ``n_inner`` / ``n_outer``). Unknown names, unknown parameters, conflicting
    counts and out-of-range values raise ``ValueError``.
    """
    if name not in _GENERATORS:
        raise ValueError(f"unknown ANODE toy dataset {name!r}; allowed: {', '.join(DATASETS)}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    allowed = _DEFAULTS[name]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {unknown} for {name!r}; allowed: {', '.join(allowed)}"
        )
    if n is not None:
        n = _check_count("n", n, allow_zero=False)
        conflicting = sorted({"n_inner", "n_outer"} & set(params))
        if conflicting:
            raise ValueError(f"give either n or {conflicting}, not both")
    x, y = _GENERATORS[name](n, rng, {**allowed, **params})
    perm = rng.permutation(len(x))
    return (
        np.ascontiguousarray(x[perm], dtype=np.float32),
        np.ascontiguousarray(y[perm], dtype=np.float32),
    )


_PARAM_SCHEMA: dict[str, dict[str, Any]] = {
    "noise_scale": {"type": "number", "minimum": 0},
    "r1": {"type": "number", "exclusiveMinimum": 0},
    "r2": {"type": "number", "exclusiveMinimum": 0},
    "r3": {"type": "number", "exclusiveMinimum": 0},
    "n_inner": {"type": "integer", "minimum": 0},
    "n_outer": {"type": "integer", "minimum": 0},
    "shift": {"type": "number"},
    "noise": {"type": "number", "minimum": 0},
}


def _register() -> None:
    from odeflows.data import register_sampler

    for name, defaults in _DEFAULTS.items():
        def draw(n: int, rng: np.random.Generator, _name: str = name,
                 **params: Any) -> tuple[np.ndarray, np.ndarray]:
            return sample(_name, n, rng, **params)
        draw.__module__ = __name__
        register_sampler(name, targets="regression",
                         params={k: _PARAM_SCHEMA[k] for k in defaults},
                         description=f"ANODE toy regression set {name!r}")(draw)


_register()
