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

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from odeflows.nn.fields import AugmentedDynamics, AugmentedHyperField, HyperUnits, TimeHyperField
from odeflows.ode import CountedField, Solver

__all__ = ["FusedHyperRK4", "applies", "augmented_stages", "stage_times", "stage_weights",
           "supports", "time_grid"]

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
    """The x-field's weights at every stage, for the hypernet inputs ``cond`` (S, cond_dim) and,
    for AFFJORD, the augmented state ``a`` (S, A) entering the field as extra inputs:

    - ``A`` (S, W, D + 1): q = A [xᵀ; 1] (twice the pre-activation; last column the bias);
    - ``C`` (S, R, 2W + 1): the stage's outputs as rows, [fᵀ; 0; −tr; (J)] = C [σ; s; 1],
      R = D + 2 (+ D² with the Jacobian, row D + 2 + jD + k holding ∂f_j/∂x_k). The zero row
      keeps the constant row of the state constant.

    Biases ride on constant rows of ones because ``addmm`` with a broadcast bias costs twice a
    plain product here. Ordinary differentiable ops, batched over the stages."""
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
    A = 2 * torch.cat([wx, b.unsqueeze(-1)], dim=2)
    z = U.new_zeros(())
    rows = [torch.cat([2 * U.transpose(1, 2), z.expand(S, D, W), -U.sum(1).unsqueeze(-1)], dim=2),
            z.expand(S, 1, 2 * W + 1),
            torch.cat([z.expand(S, 1, W), -4 * (U * wx).sum(-1).unsqueeze(1), z.expand(S, 1, 1)],
                      dim=2)]
    if need_jacobian:
        M4T = 4 * (U.unsqueeze(-1) * wx.unsqueeze(-2)).reshape(S, W, D * D).transpose(1, 2)
        rows.append(torch.cat([z.expand(S, D * D, W), M4T, z.expand(S, D * D, 1)], dim=2))
    return [A, torch.cat(rows, dim=1)]


# -- the augmented state along the grid ------------------------------------------------------
def _g_eval(a: list[float], w1: list[list[float]], b1: list[float], w2: list[list[float]],
            b2: list[float]) -> tuple[list[float], list[float], list[float]]:
    """g(a) = W₂ ELU(W₁ a + b₁) + b₂ on Python floats: (g, pre-activation, ELU output)."""
    z = [bi + sum(wi * ai for wi, ai in zip(row, a, strict=True))
         for row, bi in zip(w1, b1, strict=True)]
    e = [v if v > 0 else math.expm1(v) for v in z]
    g = [bi + sum(wi * ei for wi, ei in zip(row, e, strict=True))
         for row, bi in zip(w2, b2, strict=True)]
    return g, z, e


class _AugmentedTrajectory(torch.autograd.Function):
    """RK4 of da/dt = g(a) (AFFJORD's augmented state, one (1, A) vector shared by the batch):
    (a0, W₁, b₁, W₂, b₂) → (a at every stage input (S, A), a at the end (1, A)).

    a has a couple of coordinates and g a few hidden units: a tensor operation would cost
    microseconds of overhead for a handful of flops, so both directions run on Python floats
    (float64) and the results are cast to the model's dtype."""

    @staticmethod
    def forward(ctx: Any, hs: list[float], a0: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor,
                w2: torch.Tensor, b2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        P = [w1.tolist(), b1.tolist(), w2.tolist(), b2.tolist()]
        a = a0.reshape(-1).tolist()
        stages: list[list[float]] = []
        hidden: list[tuple[list[float], list[float]]] = []
        for h in hs:
            y = a
            ks: list[list[float]] = []
            for j in range(4):
                if j == 1:
                    y = [ai + h * k * _ONE_THIRD for ai, k in zip(a, ks[0], strict=True)]
                elif j == 2:
                    y = [ai + h * (k2 - k1 * _ONE_THIRD)
                         for ai, k1, k2 in zip(a, *ks[:2], strict=True)]
                elif j == 3:
                    y = [ai + h * (k1 - k2 + k3) for ai, k1, k2, k3 in zip(a, *ks[:3], strict=True)]
                k, z, e = _g_eval(y, *P)
                stages.append(y)
                hidden.append((z, e))
                ks.append(k)
            a = [ai + (k1 + 3 * (k2 + k3) + k4) * h * 0.125
                 for ai, k1, k2, k3, k4 in zip(a, *ks, strict=True)]
        ctx.hs, ctx.P, ctx.stages, ctx.hidden = hs, P, stages, hidden
        ctx.like = w1
        return (torch.tensor(stages, dtype=a0.dtype, device=a0.device),
                torch.tensor([a], dtype=a0.dtype, device=a0.device))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, g_stages: torch.Tensor | None, g_end: torch.Tensor | None) -> tuple:
        w1, _, w2, _ = ctx.P
        H, A = len(w1), len(w1[0])
        gw1 = [[0.0] * A for _ in range(H)]
        gb1 = [0.0] * H
        gw2 = [[0.0] * H for _ in range(A)]
        gb2 = [0.0] * A
        gst = g_stages.tolist() if g_stages is not None else [[0.0] * A] * len(ctx.stages)
        ga = g_end.reshape(-1).tolist() if g_end is not None else [0.0] * A

        def vjp(i: int, gk: list[float]) -> list[float]:
            """gkᵀ ∂g/∂(a, θ) at stage i, plus the stage input's own gradient."""
            y, (z, e) = ctx.stages[i], ctx.hidden[i]
            for r in range(A):
                gb2[r] += gk[r]
                row = gw2[r]
                for c in range(H):
                    row[c] += gk[r] * e[c]
            gz = [sum(w2[r][c] * gk[r] for r in range(A)) * (1.0 if z[c] > 0 else e[c] + 1.0)
                  for c in range(H)]
            for c in range(H):
                gb1[c] += gz[c]
                row = gw1[c]
                for r in range(A):
                    row[r] += gz[c] * y[r]
            return [gi + sum(w1[c][r] * gz[c] for c in range(H)) for r, gi in enumerate(gst[i])]

        for n in range(len(ctx.hs) - 1, -1, -1):
            h = ctx.hs[n]
            b8 = h * 0.125
            gD = vjp(4 * n + 3, [b8 * g for g in ga])
            gC = vjp(4 * n + 2, [3 * b8 * g + h * d for g, d in zip(ga, gD, strict=True)])
            gB = vjp(4 * n + 1, [3 * b8 * g + h * (c - d)
                                 for g, c, d in zip(ga, gC, gD, strict=True)])
            gA = vjp(4 * n, [b8 * g + h * d + h * _ONE_THIRD * (b - c)
                             for g, b, c, d in zip(ga, gB, gC, gD, strict=True)])
            ga = [g + p + q + r + s for g, p, q, r, s in zip(ga, gA, gB, gC, gD, strict=True)]
        like = ctx.like

        def t(v: list) -> torch.Tensor:
            return torch.tensor(v, dtype=like.dtype, device=like.device)

        return None, t([ga]), t(gw1), t(gb1), t(gw2), t(gb2)


def augmented_stages(g: AugmentedDynamics, a0: torch.Tensor, hs: Sequence[float]
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """RK4 of da/dt = g(a) from ``a0`` (1, A) with signed steps ``hs``: the stage inputs
    (4·steps, A) and the final state (1, A), differentiable w.r.t. a0 and g's parameters."""
    lin1, lin2 = _elu_mlp(g)
    return _AugmentedTrajectory.apply(list(hs), a0, lin1.weight, lin1.bias, lin2.weight,
                                      lin2.bias)


# -- the x-solve ---------------------------------------------------------------------------
class _Config:
    __slots__ = ("hs", "reg")

    def __init__(self, hs: list[float], reg: tuple[float, float] | None):
        self.hs, self.reg = hs, reg


class _Solve:
    """The x-solve on the state as rows Y = [xᵀ; 1; Δ; (K; J)] (D + 1 + E, B): the layout in
    which the products with a narrow side (D = 2) are fast on CPU (MKL is several times slower
    on (B, W)·(W, 2) than on (2, W)·(W, B))."""

    def __init__(self, cfg: _Config, weights: Sequence[torch.Tensor], like: torch.Tensor,
                 save: bool):
        self.cfg = cfg
        self.A, self.C = (w.unbind(0) for w in weights)
        S, W, D1 = weights[0].shape
        self.D, self.W, self.B = D1 - 1, W, like.shape[0]
        self.save = save
        # one buffer per stage: small blocks come from the heap, reused across iterations; one
        # S-stage buffer would be a fresh mmap (page faults on first touch) every solve
        self.Z = [self._buffer(like) for _ in range(S)] if save else None
        self.ys: list[torch.Tensor] = []
        self.outs: list[torch.Tensor] = []

    def _buffer(self, like: torch.Tensor) -> torch.Tensor:
        Z = like.new_empty(2 * self.W + 1, self.B)
        Z[-1] = 1
        return Z

    def stage(self, i: int, y: torch.Tensor) -> torch.Tensor:
        """dY/dt at stage i for the state rows y (reads the x rows and the row of ones)."""
        D, W, reg = self.D, self.W, self.cfg.reg
        x = y[:D + 1]
        Z = self.Z[i] if self.save else self._buffer(y)
        sig, s = Z[:W], Z[W:2 * W]
        torch.mm(self.A[i], x, out=sig).sigmoid_()
        torch.addcmul(sig, sig, sig, value=-1, out=s)
        out = torch.mm(self.C[i], Z)
        if self.save:
            self.ys.append(x)
            if reg is not None:
                self.outs.append(out)
        if reg is None:
            return out
        kin = out[:D].square().sum(0, keepdim=True).mul_(reg[0])
        frob = out[D + 2:].square().sum(0, keepdim=True).mul_(reg[1])
        return torch.cat([out[:D + 2], kin, frob])

    def run(self, Y: torch.Tensor) -> torch.Tensor:
        for n, h in enumerate(self.cfg.hs):
            i = 4 * n
            k1 = self.stage(i, Y)
            k2 = self.stage(i + 1, torch.add(Y, k1, alpha=h * _ONE_THIRD))
            k3 = self.stage(i + 2, torch.add(Y, torch.add(k2, k1, alpha=-_ONE_THIRD), alpha=h))
            k4 = self.stage(i + 3, torch.add(Y, k1.sub(k2).add_(k3), alpha=h))
            Y = torch.add(Y, torch.add(k2, k3).mul_(3).add_(k1).add_(k4), alpha=h * 0.125)
        return Y


def _rows(x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    return torch.cat([x.t(), x.new_ones(1, x.shape[0]), e.t()])


class _HyperRK4(torch.autograd.Function):
    """(x0 (B, D), extras0 (B, E), per-stage weights) → (x_T, extras_T), the reverse RK4 by
    hand."""

    @staticmethod
    def forward(ctx: Any, cfg: _Config, x0: torch.Tensor, e0: torch.Tensor,
                *weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        D = x0.shape[1]
        solve = _Solve(cfg, weights, x0, save=True)
        Y = solve.run(_rows(x0, e0))
        # the per-stage activations go through save_for_backward too (version checks, and
        # saved-tensor hooks see the memory the solve holds)
        ctx.cfg, ctx.shape = cfg, (solve.D, solve.W, solve.B, len(solve.Z))
        ctx.save_for_backward(*weights, *solve.Z, *solve.ys, *solve.outs)
        return Y[:D].t().contiguous(), Y[D + 1:].t().contiguous()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, gx: torch.Tensor | None, ge: torch.Tensor | None) -> tuple:
        cfg = ctx.cfg
        D, W, B, S = ctx.shape
        saved = ctx.saved_tensors
        A, C = saved[:2]
        Zs, ys, outs = saved[2:2 + S], saved[2 + S:2 + 2 * S], saved[2 + 2 * S:]
        reg = cfg.reg
        E = 1 if reg is None else 3
        # the chain runs on the x rows and the row of ones (whose gradient goes nowhere)
        gY = A.new_zeros(D + 1, B)
        if gx is not None:
            gY[:D] = gx.t()
        gE = ge.t() if ge is not None else A.new_zeros(E, B)
        gA = A.new_empty(A.shape[0], D + 1, A.shape[1])  # transposed: the fast product
        gC = torch.empty_like(C)
        gAs, gCs, As, Cs = gA.unbind(0), gC.unbind(0), A.unbind(0), C.unbind(0)
        if reg is not None:  # d(k‖f‖²)/df = 2k f, d(c‖J‖²)/dJ = 2c J
            g_f2 = gE[1:2] * (2 * reg[0])
            g_J2 = gE[2:3] * (2 * reg[1])

        def vjp(i: int, gk: torch.Tensor, w: float) -> torch.Tensor:
            """Stage i's VJP for gk (w.r.t. [f; 0], rows) and w·gE (w.r.t. its extras): fills
            the gradients of its weights, returns the gradient w.r.t. its input rows."""
            if reg is None:
                gout = torch.cat([gk, gE * w])
            else:
                out = outs[i]
                gout = torch.cat([gk[:D].addcmul(out[:D], g_f2, value=w), gk[D:], gE[:1] * w,
                                  out[D + 2:] * (g_J2 * w)])
            Z = Zs[i]
            gZ = torch.mm(Cs[i].t(), gout)
            torch.mm(gout, Z.t(), out=gCs[i])
            # σ feeds the outputs directly and through s = σ − σ² (ds/dσ = 1 − 2σ)
            gq = torch.add(gZ[:W], gZ[W:2 * W]).addcmul_(gZ[W:2 * W], Z[:W], value=-2)
            gq.mul_(Z[W:2 * W])
            torch.mm(ys[i], gq.t(), out=gAs[i])
            return torch.mm(As[i].t(), gq)

        for n in range(len(cfg.hs) - 1, -1, -1):
            h = cfg.hs[n]
            i, b8 = 4 * n, h * 0.125
            gyD = vjp(i + 3, gY * b8, b8)
            gyC = vjp(i + 2, (gY * (3 * b8)).add_(gyD, alpha=h), 3 * b8)
            gyB = vjp(i + 1, (gY * (3 * b8)).add_(gyC, alpha=h).sub_(gyD, alpha=h), 3 * b8)
            gyA = vjp(i, (gY * b8).add_(gyD, alpha=h).add_(gyB - gyC, alpha=h * _ONE_THIRD), b8)
            gY = (gyA + gyB).add_(gyC).add_(gyD).add_(gY)
        return (None, gY[:D].t(), ge, gA.transpose(1, 2), gC)


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
        else:  # no graph: nothing saved
            Y = _Solve(cfg, weights, x0, save=False).run(_rows(x0, extras0))
            xT, eT = Y[:x0.shape[1]].t(), Y[x0.shape[1] + 1:].t()
        out = [torch.stack([x0, xT])]
        if augmented:
            out.append(torch.stack([state[1], a_end]))
        for j, e in enumerate(state[2 if augmented else 1:]):
            out.append(torch.stack([e, eT[:, j:j + 1]]))
        return out
