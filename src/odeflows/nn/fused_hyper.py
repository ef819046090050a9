"""The whole fixed-grid RK4 solve of a hypernet CNF as one autograd node with a hand-written
backward: AFFJORD's toy model (``AugmentedHyperField`` + ``AugmentedDynamics``) and its FFJORD
baseline (``TimeHyperField``), exact trace, backpropagation through the solver.

Why: at the paper setting (batch 512, width 64, D = 2, RK4 40 steps = 160 evaluations) every
evaluation of the generic path is a few dozen tiny autograd nodes, and backpropagation through
torchdiffeq adds its per-step bookkeeping: per-operation overhead, not arithmetic, sets the time.

What makes one node possible: the field's weights depend only on the conditioning c (the time t,
or the augmented state a(t) shared by all samples), never on x. a(t) follows its own ODE
da/dt = g(a), independent of x, so the conditioning at every RK4 stage is known before x is
integrated. Hence:

1. the conditioning at all S = 4·steps stages (the stage times, or a at the stage inputs of the
   same RK4 grid) — ordinary autograd on a (1, A) state;
2. the hypernet evaluated once for all S stages as a batch, and the per-stage weights of the
   x-field derived from it (ordinary batched autograd ops);
3. the x-solve (x, Δ and RNODE's K, J) on the fixed grid with closed-form value and trace: one
   ``torch.autograd.Function`` whose backward runs the RK4 recursion in reverse with the
   hand-written vector-Jacobian product of each stage, returning the gradients of the per-stage
   weights; autograd then carries them through 2 and 1.

Maths of one stage (HyperUnits, width W): f(x) = (1/W) Σ_i u'_i tanh(w_iᵀ[x; a] + b_i) over the
output components, u' = u ⊙ σ(g). With q = 2·(x w_xᵀ + b') (b' = b + w_a a; the factor 2 because
tanh(z) = 2σ(2z) − 1 and a sigmoid costs a fraction of a tanh on CPU), σ = sigmoid(q), s = σ − σ²
(so 1 − tanh² = 4s):

    f = σ (2U) − Σ_i U_i,    tr ∂f/∂x = s · c4,    ∂f_j/∂x_k = s · M4[:, j, k]

with U = u'/W (first D components), c4_i = 4 Σ_k U_ik w_ik and M4_ijk = 4 U_ij w_ik. The RK4 step
is torchdiffeq's (``rk4_alt_step_func``, the 3/8 rule) on torchdiffeq's grid, so the states, the
evaluation times and the NFE are those of ``odeint`` with the same options.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from odeflows.nn.fields import AugmentedDynamics, AugmentedHyperField, HyperUnits, TimeHyperField
from odeflows.ode import CountedField, Solver

# RK4 3/8 rule (torchdiffeq rk4_alt_step_func): stage inputs y0 + h·Σ_j A[i][j] k_j and the
# combination weights of the step
_ONE_THIRD, _TWO_THIRDS = 1 / 3, 2 / 3
_B = (0.125, 0.375, 0.375, 0.125)


def supports(field: nn.Module, aug_dynamics: nn.Module | None) -> bool:
    """Whether the fused RK4 solve reproduces this field (and augmented dynamics) exactly."""
    if type(field) is TimeHyperField:
        return aug_dynamics is None
    if type(field) is AugmentedHyperField:
        return type(aug_dynamics) is AugmentedDynamics and _elu_mlp(aug_dynamics) is not None
    return False


def _elu_mlp(g: AugmentedDynamics) -> tuple[nn.Linear, nn.Linear] | None:
    net = g.net
    if (len(net) == 3 and isinstance(net[0], nn.Linear) and type(net[1]) is nn.ELU
            and net[1].alpha == 1.0 and isinstance(net[2], nn.Linear)):
        return net[0], net[2]
    return None


def applies(solver: Solver, times: torch.Tensor) -> bool:
    """The fused solve covers RK4 with backpropagation through the solver (or no gradient) on a
    fixed time vector of two points."""
    return (solver.method == "rk4" and not solver.adjoint and times.numel() == 2
            and not times.requires_grad)


def time_grid(times: torch.Tensor, solver: Solver) -> torch.Tensor:
    """torchdiffeq's fixed grid for ``times`` (two points) in increasing internal time: negated
    when integrating backwards, as ``odeint`` does."""
    t = -times if times[0] > times[1] else times
    step_size = solver.options(float(times[0]), float(times[-1])).get("step_size")
    if step_size is None:
        return t
    # torchdiffeq FixedGridODESolver._grid_constructor_from_step_size, op for op
    niters = torch.ceil((t[-1] - t[0]) / step_size + 1).item()
    grid = torch.arange(0, niters, dtype=t.dtype, device=t.device) * step_size + t[0]
    grid[-1] = t[-1]
    return grid


def stage_times(grid: torch.Tensor, reversed_: bool) -> torch.Tensor:
    """The times at which RK4 evaluates the field, (steps, 4), as the field sees them."""
    t0, t1 = grid[:-1], grid[1:]
    dt = t1 - t0
    st = torch.stack([t0, t0 + dt * _ONE_THIRD, t0 + dt * _TWO_THIRDS, t1], dim=1)
    return -st if reversed_ else st


# -- per-stage weights of the x-field --------------------------------------------------------
def stage_weights(units: HyperUnits, cond: torch.Tensor, a: torch.Tensor | None,
                  need_jacobian: bool) -> list[torch.Tensor]:
    """[A2 (S, D, W), beff2 (S, W), U2 (S, W, D), u0 (S, D), c4 (S, W), (M4 (S, W, D·D))] of the
    module docstring, for the hypernet inputs ``cond`` (S, cond_dim) and, for AFFJORD, the
    augmented state ``a`` (S, A) entering the field as extra inputs. Differentiable."""
    S = cond.shape[0]
    W, n_in, D = units.width, units.in_dim, units.out_dim
    p = units.hyper(cond)
    n = W * n_in
    w = p[:, :n].view(S, W, n_in)
    ug = p[:, n:2 * n].view(S, W, n_in)[..., :D] * torch.sigmoid(
        p[:, 2 * n:3 * n].view(S, W, n_in)[..., :D])
    b = p[:, 3 * n:]
    U = ug / W
    wx = w[..., :D]
    if a is not None:  # the augmented inputs enter like a bias shared by the batch
        b = b + torch.bmm(w[..., D:], a.unsqueeze(-1)).squeeze(-1)
    out = [2 * wx.transpose(1, 2), 2 * b, 2 * U, -U.sum(1), 4 * (U * wx).sum(-1)]
    if need_jacobian:
        out.append(4 * (U.unsqueeze(-1) * wx.unsqueeze(-2)).reshape(S, W, D * D))
    return out


# -- the augmented state along the grid ------------------------------------------------------
def augmented_stages(g: AugmentedDynamics, a0: torch.Tensor, hs: Sequence[float]
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """RK4 of da/dt = g(a) from ``a0`` (1, A) with signed steps ``hs``: the stage inputs
    (4·steps, A) and the final state (1, A); ordinary autograd (a is tiny)."""
    lin1, lin2 = _elu_mlp(g)
    w1, b1, w2, b2 = lin1.weight, lin1.bias, lin2.weight, lin2.bias

    def rhs(a: torch.Tensor) -> torch.Tensor:
        return F.linear(F.elu(F.linear(a, w1, b1)), w2, b2)

    stages: list[torch.Tensor] = []
    a = a0
    for h in hs:
        k1 = rhs(a)
        a2 = a + h * k1 * _ONE_THIRD
        k2 = rhs(a2)
        a3 = a + h * (k2 - k1 * _ONE_THIRD)
        k3 = rhs(a3)
        a4 = a + h * (k1 - k2 + k3)
        k4 = rhs(a4)
        stages += [a, a2, a3, a4]
        a = a + (k1 + 3 * (k2 + k3) + k4) * h * 0.125
    return torch.cat(stages), a


# -- the x-solve ---------------------------------------------------------------------------
class _Config:
    __slots__ = ("hs", "reg")

    def __init__(self, hs: list[float], reg: tuple[float, float] | None):
        self.hs, self.reg = hs, reg


def _stage(x: torch.Tensor, A2: torch.Tensor, beff2: torch.Tensor, U2: torch.Tensor,
           u0: torch.Tensor, c4: torch.Tensor, M4: torch.Tensor | None,
           reg: tuple[float, float] | None, sig_out: torch.Tensor | None = None,
           s_out: torch.Tensor | None = None
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """One evaluation: (f (B, D), extras [−tr, (kin, frob)] (B, E), σ, s, J or None)."""
    sig = torch.sigmoid(torch.addmm(beff2, x, A2), out=sig_out)
    s = torch.addcmul(sig, sig, sig, value=-1, out=s_out)
    f = torch.addmm(u0, sig, U2)
    ntr = torch.mv(s, c4).neg_().unsqueeze(1)
    if reg is None:
        return f, ntr, sig, s, None
    J = torch.mm(s, M4)
    extras = torch.cat([ntr, f.square().sum(1, keepdim=True).mul_(reg[0]),
                        J.square().sum(1, keepdim=True).mul_(reg[1])], dim=1)
    return f, extras, sig, s, J


def _solve_forward(cfg: _Config, x: torch.Tensor, e: torch.Tensor,
                   weights: Sequence[torch.Tensor], save: bool) -> tuple[torch.Tensor, ...]:
    A2, beff2, U2, u0, c4 = weights[:5]
    M4 = weights[5] if cfg.reg is not None else None
    S = A2.shape[0]
    B, D = x.shape
    W = A2.shape[2]
    if save:
        xs = x.new_empty(S, B, D)
        sigs = x.new_empty(S, B, W)
        ss = x.new_empty(S, B, W)
        fs = x.new_empty(S, B, D) if cfg.reg is not None else None
        Js = x.new_empty(S, B, D * D) if cfg.reg is not None else None
    for n, h in enumerate(cfg.hs):
        ks, es = [], []
        y = x
        for j in range(4):
            i = 4 * n + j
            if j == 1:
                y = torch.add(x, ks[0], alpha=h * _ONE_THIRD)
            elif j == 2:
                y = torch.add(x, torch.add(ks[1], ks[0], alpha=-_ONE_THIRD), alpha=h)
            elif j == 3:
                y = torch.add(x, ks[0].sub(ks[1]).add_(ks[2]), alpha=h)
            if save:
                xs[i] = y
                f, ext, _, _, J = _stage(y, A2[i], beff2[i], U2[i], u0[i], c4[i],
                                         None if M4 is None else M4[i], cfg.reg,
                                         sigs[i], ss[i])
                if fs is not None:
                    fs[i] = f
                    Js[i] = J
            else:
                f, ext, _, _, _ = _stage(y, A2[i], beff2[i], U2[i], u0[i], c4[i],
                                         None if M4 is None else M4[i], cfg.reg)
            ks.append(f)
            es.append(ext)
        x = x + (ks[0] + 3 * (ks[1] + ks[2]) + ks[3]) * (h * 0.125)
        e = e + (es[0] + 3 * (es[1] + es[2]) + es[3]) * (h * 0.125)
    if not save:
        return x, e
    return x, e, xs, sigs, ss, fs, Js


class _HyperRK4(torch.autograd.Function):
    """(x0, extras0, per-stage weights) → (x_T, extras_T) with the reverse RK4 by hand."""

    @staticmethod
    def forward(ctx: Any, cfg: _Config, x0: torch.Tensor, e0: torch.Tensor,
                *weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, e, xs, sigs, ss, fs, Js = _solve_forward(cfg, x0, e0, weights, save=True)
        ctx.cfg = cfg
        saved = [xs, sigs, ss, *weights]
        if cfg.reg is not None:
            saved += [fs, Js]
        ctx.save_for_backward(*saved)
        return x, e

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, gx: torch.Tensor | None, ge: torch.Tensor | None) -> tuple:
        cfg: _Config = ctx.cfg
        saved = ctx.saved_tensors
        xs, sigs, ss = saved[:3]
        reg = cfg.reg
        n_w = 6 if reg is not None else 5
        weights = saved[3:3 + n_w]
        A2, beff2, U2, u0, c4 = weights[:5]
        M4 = weights[5] if reg is not None else None
        fs, Js = (saved[3 + n_w], saved[4 + n_w]) if reg is not None else (None, None)
        S, B, D = xs.shape
        if gx is None:
            gx = xs.new_zeros(B, D)
        if ge is None:
            ge = xs.new_zeros(B, 3 if reg is not None else 1)
        gA2, gbeff2, gU2 = torch.empty_like(A2), torch.empty_like(beff2), torch.empty_like(U2)
        gu0, gc4 = torch.empty_like(u0), torch.empty_like(c4)
        gM4 = torch.empty_like(M4) if M4 is not None else None
        g_ntr = ge[:, :1]
        if reg is not None:  # kin = k‖f‖², frob = c‖J‖²: their gradients scale f and J
            g_f2 = ge[:, 1:2] * (2 * reg[0])
            g_J2 = ge[:, 2:3] * (2 * reg[1])

        def stage_vjp(i: int, gk: torch.Tensor, w: float) -> torch.Tensor:
            """The stage's VJP for gk (w.r.t. f) and w·ge (w.r.t. its extras); fills the
            gradients of stage i's weights and returns the gradient w.r.t. its input."""
            sig, s = sigs[i], ss[i]
            gtr = g_ntr * (-w)  # (B, 1): w.r.t. tr
            if reg is not None:
                gk = gk.addcmul(fs[i], g_f2, value=w)
                gJ = Js[i] * (g_J2 * w)
                gs = torch.addmm(gtr * c4[i], gJ, M4[i].t())
                torch.mm(s.t(), gJ, out=gM4[i])
            else:
                gs = gtr * c4[i]
            # σ → f through 2U, → s = σ − σ² through 1 − 2σ
            gsig = torch.addmm(gs.addcmul(gs, sig, value=-2), gk, U2[i].t())
            gq = gsig.mul_(s)
            torch.mm(sig.t(), gk, out=gU2[i])
            torch.sum(gk, 0, out=gu0[i])
            torch.mv(s.t(), gtr.squeeze(1), out=gc4[i])
            torch.mm(xs[i].t(), gq, out=gA2[i])
            torch.sum(gq, 0, out=gbeff2[i])
            return torch.mm(gq, A2[i].t())

        for n in range(len(cfg.hs) - 1, -1, -1):
            h = cfg.hs[n]
            base = 4 * n
            b8 = h * 0.125
            gyD = stage_vjp(base + 3, gx * b8, b8)
            gyC = stage_vjp(base + 2, (gx * (3 * b8)).add_(gyD, alpha=h), 3 * b8)
            gk2 = (gx * (3 * b8)).add_(gyC, alpha=h).sub_(gyD, alpha=h)
            gyB = stage_vjp(base + 1, gk2, 3 * b8)
            gk1 = (gx * b8).add_(gyD, alpha=h).add_(gyB.sub(gyC), alpha=h * _ONE_THIRD)
            gyA = stage_vjp(base, gk1, b8)
            gx = gx + gyA + gyB + gyC + gyD
        grads = [gA2, gbeff2, gU2, gu0, gc4] + ([gM4] if reg is not None else [])
        return (None, gx, ge, *grads)


# -- the model-facing solve ------------------------------------------------------------------
class FusedHyperRK4:
    """The fused RK4 solve bound to one hypernet field (and AFFJORD's augmented dynamics).

    A plain object, not a module, so that the field's parameters are not registered twice.
    """

    def __init__(self, field: nn.Module, aug_dynamics: nn.Module | None):
        if not supports(field, aug_dynamics):
            raise ValueError("the fused RK4 solve needs a TimeHyperField, or an "
                             "AugmentedHyperField with AugmentedDynamics (ELU MLP)")
        self.field, self.aug_dynamics = field, aug_dynamics

    def solve(self, counted: CountedField, state: Sequence[torch.Tensor], times: torch.Tensor,
              solver: Solver, reg: tuple[float, float] | None) -> list[torch.Tensor]:
        """The CNF's solve: ``state`` = [x (B, D), (a (1, A)), Δ (B, 1), (K, J (B, 1))]; returns
        every part at both times, stacked (2, ...), as :func:`odeflows.ode.solve` does."""
        reversed_ = bool(times[0] > times[1])
        grid = time_grid(times, solver)
        # the step as odeint sees it (internal time, t.dtype), signed for the original time
        sign = -1.0 if reversed_ else 1.0
        hs = [sign * float(d) for d in (grid[1:] - grid[:-1])]
        x0 = state[0]
        augmented = self.aug_dynamics is not None
        extras0 = torch.cat(list(state[2 if augmented else 1:]), dim=1)
        units: HyperUnits = self.field.units
        if augmented:
            a0 = state[1]
            cond, a_end = augmented_stages(self.aug_dynamics, a0.to(x0.dtype), hs)
            a_in = cond
        else:
            cond = stage_times(grid, reversed_).reshape(-1, 1).to(x0.dtype)
            a_in = None
        counted.nfe += 4 * len(hs)
        weights = stage_weights(units, cond, a_in, need_jacobian=reg is not None)
        cfg = _Config(hs, reg)
        if torch.is_grad_enabled() and (x0.requires_grad or extras0.requires_grad
                                        or any(w.requires_grad for w in weights)):
            xT, eT = _HyperRK4.apply(cfg, x0, extras0, *weights)
        else:
            xT, eT = _solve_forward(cfg, x0, extras0, weights, save=False)
        out = [torch.stack([x0, xT])]
        if augmented:
            out.append(torch.stack([state[1], a_end]))
        for j, e in enumerate(state[2 if augmented else 1:]):
            out.append(torch.stack([e, eT[:, j:j + 1]]))
        return out
