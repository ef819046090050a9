"""torchdiffeq's ``dopri5`` for one flat state and two time points, without its per-step overhead.

Why: in the fused adjoint of the toy CNF (:mod:`odeflows.nn.fused`) an evaluation of the field
costs a fraction of a millisecond, and torchdiffeq's adaptive solver spends about as much again per
stage around it: an autograd Function per stage to fill the stage matrix, the perturbation and
time-reversal wrappers (another Function for ``nextafter``), assertions, and the interpolation
polynomial fitted at every accepted step although only the last one is evaluated.

This module takes the same steps: the same initial step selection, Butcher tableau, stage sums,
error ratio, step-size update and final interpolation as torchdiffeq 0.2.x
(``RKAdaptiveStepsizeODESolver`` with the Dormand–Prince tableau), written with the same tensor
operations in the same order and dtypes (state in its dtype, time-like quantities in float64,
stage times in the state's dtype, the last stages evaluated at ``nextafter(t1, t0)``), so the
trajectories are bitwise those of ``torchdiffeq.odeint`` and so are the number of evaluations.
Tested against ``torchdiffeq.odeint`` (``tests/test_lean_dopri5.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torchdiffeq._impl.dopri5 import _DORMAND_PRINCE_SHAMPINE_TABLEAU as _TABLEAU
from torchdiffeq._impl.dopri5 import DPS_C_MID

from odeflows.ode import SolverFailure

__all__ = ["dopri5"]

Norm = Callable[[torch.Tensor], torch.Tensor]
Field = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_ORDER = 5


class _Tableau:
    """The Dormand–Prince tableau in the state's dtype (as torchdiffeq converts it)."""

    def __init__(self, like: torch.Tensor):
        kw = dict(dtype=like.dtype, device=like.device)
        self.alpha = _TABLEAU.alpha.to(**kw)
        self.alpha_list = [float(a) for a in _TABLEAU.alpha]
        self.beta = [b.to(**kw) for b in _TABLEAU.beta]
        self.c_error = _TABLEAU.c_error.to(**kw)
        self.mid = DPS_C_MID.to(**kw)


def dopri5(func: Field, y0: torch.Tensor, t0: float, t1: float, rtol: float, atol: float,
           norm: Norm, max_num_steps: int | None = None) -> torch.Tensor:
    """y(t1) for dy/dt = func(t, y), y(t0) = y0 (a 1-D tensor), as
    ``torchdiffeq.odeint(func, y0, torch.tensor([t0, t1]), rtol, atol, method="dopri5",
    options={"norm": norm})[-1]`` computes it, with ``t0``/``t1`` given as float32 values."""
    reverse = t0 > t1
    dtype = torch.promote_types(torch.float64, y0.abs().dtype)
    dev = y0.device
    # odeint: times as a float32 tensor (the caller's), negated when decreasing, then float64
    t = torch.tensor([t0, t1], dtype=torch.float32, device=dev)
    if reverse:
        t = -t
    t = t.to(dtype)
    t_start, t_end = t[0], t[1]
    rtol_t = torch.as_tensor(rtol, dtype=dtype, device=dev)
    atol_t = torch.as_tensor(atol, dtype=dtype, device=dev)
    safety = torch.as_tensor(0.9, dtype=dtype, device=dev)
    ifactor = torch.as_tensor(10.0, dtype=dtype, device=dev)
    dfactor = torch.as_tensor(0.2, dtype=dtype, device=dev)
    min_step = torch.as_tensor(0, dtype=dtype, device=dev)
    max_step = torch.as_tensor(float("inf"), dtype=dtype, device=dev)
    tab = _Tableau(y0)
    t_dtype = y0.abs().dtype

    def f(tt: torch.Tensor, y: torch.Tensor, prev: bool = False) -> torch.Tensor:
        """torchdiffeq's _PerturbFunc(_ReverseFunc(func)): time in the state's dtype, just
        below the step's end for its last stages, negated back for a decreasing solve."""
        tt = tt.to(t_dtype)
        if prev:
            tt = torch.nextafter(tt, tt - 1)
        return -func(-tt, y) if reverse else func(tt, y)

    # -- _before_integrate: f0 and the initial step (_select_initial_step) -----------------
    f0 = f(t_start, y0)
    scale = atol_t + torch.abs(y0) * rtol_t
    d0 = norm(y0 / scale).abs()
    d1 = norm(f0 / scale).abs()
    if d0 < 1e-5 or d1 < 1e-5:
        h0 = torch.tensor(1e-6, dtype=y0.dtype, device=dev)
    else:
        h0 = 0.01 * d0 / d1
    h0 = h0.abs()
    f1 = f(t_start + h0, y0 + h0 * f0)
    d2 = torch.abs(norm((f1 - f0) / scale) / h0)
    if d1 <= 1e-15 and d2 <= 1e-15:
        h1 = torch.max(torch.tensor(1e-6, dtype=y0.dtype, device=dev), h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1. / float(_ORDER - 1 + 1))
    dt = torch.min(100 * h0, h1.abs()).to(dtype)

    # -- _advance: adaptive steps until the end time is passed -----------------------------
    y, fy, t_prev, t_cur = y0, f0, t_start, t_start
    last_k: torch.Tensor | None = None
    last_dt: torch.Tensor | None = None
    y_last0: torch.Tensor | None = None
    n_steps = 0
    while t_end > t_cur:
        if max_num_steps is not None and n_steps >= max_num_steps:
            raise SolverFailure(f"max_num_steps exceeded ({n_steps}>={max_num_steps})")
        n_steps += 1
        t0s = t_cur
        if not torch.isfinite(dt):
            dt = min_step
        dt = dt.clamp(min_step, max_step)
        t1s = t0s + dt
        if not t0s + dt > t0s:
            raise SolverFailure(f"underflow in dt {dt.item()}")
        if not torch.isfinite(y).all():
            raise SolverFailure(f"non-finite values in state `y`: {y}")
        # _runge_kutta_step
        t0c, dtc, t1c = t0s.to(t_dtype), dt.to(t_dtype), t1s.to(t_dtype)
        k = torch.empty(*fy.shape, 7, dtype=y.dtype, device=dev)
        k[..., 0] = fy
        yi = y
        for i, (alpha_i, beta_i) in enumerate(zip(tab.alpha_list, tab.beta, strict=True)):
            last = alpha_i == 1.
            ti = t1c if last else t0c + tab.alpha[i] * dtc
            yi = y + torch.sum(k[..., :i + 1] * (beta_i * dtc), dim=-1).view_as(fy)
            k[..., i + 1] = f(ti, yi, prev=last)
        y1 = yi  # Dormand–Prince: the last stage's input is the solution
        y1_error = torch.sum(k * (dtc * tab.c_error), dim=-1)
        error_tol = atol_t + rtol_t * torch.max(y.abs(), y1.abs())
        error_ratio = norm(y1_error / error_tol).abs()
        accept = bool(error_ratio <= 1)
        if dt > max_step:
            accept = False
        if dt <= min_step:
            accept = True
        if accept:
            y_last0, last_k, last_dt = y, k, dt
            t_prev, t_cur = t0s, t1s
            y, fy = y1, k[..., -1]
        # _optimal_step_size
        if error_ratio == 0:
            dt = dt * ifactor
        else:
            dfac = dfactor if not error_ratio < 1 else torch.ones((), dtype=dtype, device=dev)
            er = error_ratio.type_as(dt)
            exponent = torch.tensor(_ORDER, dtype=dtype, device=dev).reciprocal()
            dt = dt * torch.min(ifactor, torch.max(safety / er ** exponent, dfac))
        dt = dt.clamp(min_step, max_step)
    if last_k is None:  # t_end == t_start
        return y0
    # _interp_fit of the last accepted step, evaluated at the end time (_interp_evaluate)
    dtm = last_dt.type_as(y_last0)
    y_mid = y_last0 + torch.sum(last_k * (dtm * tab.mid), dim=-1).view_as(y_last0)
    k0, k1 = last_k[..., 0], last_k[..., -1]
    a = 2 * dtm * (k1 - k0) - 8 * (y + y_last0) + 16 * y_mid
    b = dtm * (5 * k0 - 3 * k1) + 18 * y_last0 + 14 * y - 32 * y_mid
    c = dtm * (k1 - 4 * k0) - 11 * y_last0 - 5 * y + 16 * y_mid
    d = dtm * k0
    x = ((t_end - t_prev) / (t_cur - t_prev)).to(y_last0.dtype)
    total = y_last0 + x * d
    x_power = x
    for coefficient in (c, b, a):
        x_power = x_power * x
        total = total + x_power * coefficient
    return total
