"""Fused CNF dynamics for FFJORD's concatsquash-tanh MLP with the exact trace.

Why: on CPU at toy sizes (batch 100, width 64, D = 2) an evaluation of the dynamics is dominated
by per-operation overhead, not arithmetic: the autograd trace builds hundreds of small graph nodes
per evaluation, and the adjoint differentiates through all of them again at every backward
evaluation. Here an evaluation is a handful of batched matrix products and its vector-Jacobian
product (VJP) is written out by hand, so

- with backpropagation through the solver, an evaluation is one ``torch.autograd.Function`` node;
- with the adjoint method (:func:`solve_adjoint`), the backward solve calls the hand-written VJP
  directly on one flat augmented state, without autograd and without torchdiffeq's per-tensor
  handling of the (time, state, adjoint, 20 parameter tensors) tuple. It integrates exactly the
  system that ``torchdiffeq.odeint_adjoint`` integrates, with the same solver, tolerances and
  error norm (the max over tensors of their RMS), so it takes the same steps.

Maths. Layer l of the field is ``pre_l = (W_l h + b_l) ⊙ g_l + c_l`` with the time gates
``g_l = σ(a_l t + a0_l)`` and ``c_l = d_l t`` (FFJORD's ConcatSquashLinear), i.e.
``pre_l = h Wg_lᵀ + beff_l`` with ``Wg_l = diag(g_l) W_l`` and ``beff_l = b_l ⊙ g_l + c_l``;
``h_l = tanh(pre_l)`` between layers. The Jacobian is pushed forward alongside the value: with
``J_0 = I``, the pre-activation tangents are ``P_l = J_{l-1} Wg_lᵀ`` and ``J_l = s_l ⊙ P_l`` with
``s_l = 1 − h_l²``, so ``∂f/∂x = P_L``, the trace is its diagonal sum and ‖∂f/∂x‖²_F its sum of
squares. Value and the D tangents share one ``(1+D, B, H)`` tensor (index 0: value, 1+k: ∂/∂x_k),
so each layer is a single matrix product for all of them. The VJP runs the recursion in reverse;
besides the usual terms the chain rule through ``s_l`` adds
``∂L/∂h_l −= 2 h_l ⊙ Σ_k ∂L/∂J_l[k] ⊙ P_l[k]``. Finally the gradients of ``Wg_l, beff_l`` are mapped
to ``W_l, b_l``, the gate parameters and ``t``.

Two CPU-specific choices: hidden layers are evaluated at twice their pre-activation (``Q' = 2·pre``,
``tanh(pre) = 2σ(Q') − 1``: a sigmoid costs a fraction of a tanh; the 2 is folded into the gates),
and the gate parameters of all layers are packed into single vectors (one operation per
evaluation for all layers' gates). The packed copy is rebuilt when a parameter's version counter
or storage changes and whenever :meth:`FusedMLP.refresh` is called (the CNF does so at the start
of every solve, which also covers changes made through ``.data``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from odeflows.nn import lean_dopri5
from odeflows.nn.fields import MLPField
from odeflows.nn.layers import ConcatSquashLinear
from odeflows.ode import CountedField, Solver, solve

__all__ = ["FusedMLP", "adjoint_applies", "solve_adjoint", "supports"]

PARAMS_PER_LAYER = 5  # linear.weight, linear.bias, hyper_gate.weight, hyper_gate.bias, hyper_bias

# (x, t) → (outputs, what the VJP needs)
Saved = tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor], list[torch.Tensor],
              list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]


def supports(field: nn.Module) -> bool:
    """Whether ``field`` is an MLP that the fused kernel reproduces exactly."""
    return (isinstance(field, MLPField) and field.nonlinearity == "tanh"
            and len(field.layers) > 0
            and all(type(layer) is ConcatSquashLinear for layer in field.layers))


class _Packed:
    """Detached parameters, packed over layers, and the constants the kernels need.

    Flat gradient layout (``n_flat`` numbers, see ``param_grads``): the weights W_0 … W_{L-1}
    flattened, then the linear biases, the gate weights, the gate biases and the time-bias
    weights of all layers (ΣH numbers each).
    """

    __slots__ = ("key", "weights", "a", "a0", "c", "b", "mult", "bm", "cm", "sizes", "one",
                 "half", "neg_one", "eye", "w_numel", "w_shapes", "n_flat")

    def __init__(self, key: tuple, layers: list[ConcatSquashLinear]):
        self.key = key
        with torch.no_grad():
            self.weights = [m.linear.weight.detach() for m in layers]
            self.a = torch.cat([m.hyper_gate.weight.reshape(-1) for m in layers])
            self.a0 = torch.cat([m.hyper_gate.bias for m in layers])
            self.c = torch.cat([m.hyper_bias.weight.reshape(-1) for m in layers])
            self.b = torch.cat([m.linear.bias for m in layers])
            # the factor 2 of hidden layers (Q' = 2·pre, see the module docstring)
            self.mult = torch.cat([torch.full_like(m.linear.bias, 1.0 if i == len(layers) - 1
                                                   else 2.0) for i, m in enumerate(layers)])
            self.bm, self.cm = self.b * self.mult, self.c * self.mult
        self.sizes = [m.linear.out_features for m in layers]
        self.one, self.half, self.neg_one = (self.a.new_full((), v) for v in (1.0, 0.5, -1.0))
        self.eye: dict[int, torch.Tensor] = {}  # batch size → tangent_rows
        self.w_numel = [w.numel() for w in self.weights]
        self.w_shapes = [tuple(w.shape) for w in self.weights]
        self.n_flat = sum(self.w_numel) + 4 * sum(self.sizes)

    def tangent_rows(self, x: torch.Tensor) -> torch.Tensor:
        """The input's tangents ∂x/∂x_k: (D, B, D), row k of every sample is e_k."""
        B, D = x.shape
        eye = self.eye.get(B)
        if eye is None:
            eye = torch.eye(D, dtype=x.dtype, device=x.device).unsqueeze(1).repeat(1, B, 1)
            self.eye[B] = eye
        return eye

    def param_grads(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Views of a flat gradient as one tensor per parameter, in ``FusedMLP.params`` order."""
        n_w = sum(self.w_numel)
        ws = [w.view(s) for w, s in zip(flat[:n_w].split_with_sizes(self.w_numel),
                                        self.w_shapes, strict=True)]
        b, a, a0, c = flat[n_w:].view(4, -1)
        cols = a.unsqueeze(1).split_with_sizes(self.sizes), c.unsqueeze(1).split_with_sizes(
            self.sizes)
        out: list[torch.Tensor] = []
        for parts in zip(ws, b.split_with_sizes(self.sizes), cols[0],
                         a0.split_with_sizes(self.sizes), cols[1], strict=True):
            out += parts
        return out

    def segment_lengths(self) -> list[int]:
        """Lengths of the per-parameter segments of the flat gradient (for the error norm)."""
        return [*self.w_numel, *(self.sizes * 4)]


class FusedMLP:
    """The fused evaluator bound to one :class:`MLPField`.

    A plain object rather than a module, so the field's parameters are not registered twice by
    the module that owns it (state dicts stay unchanged).
    """

    def __init__(self, field: MLPField):
        if not supports(field):
            raise ValueError("the fused kernel needs an MLPField of concatsquash layers with tanh")
        self.field = field
        self._packed: _Packed | None = None
        self._params: list[torch.Tensor] | None = None
        self.layouts: dict[tuple, _Layout] = {}  # flat adjoint state layouts, by shape

    def params(self) -> list[torch.Tensor]:
        """The field's parameters, in the order in which gradients are returned."""
        out = []
        for m in self.field.layers:
            out += [m.linear.weight, m.linear.bias, m.hyper_gate.weight, m.hyper_gate.bias,
                    m.hyper_bias.weight]
        return out

    def refresh(self) -> None:
        """Re-read the field's parameters: the list (looked up once per solve, not per
        evaluation, as module attribute access is slow) and the packed copies."""
        self._packed = None
        self._params = self.params()

    def current_params(self) -> list[torch.Tensor]:
        if self._params is None:
            self.refresh()
        return self._params

    def packed(self, params: Sequence[torch.Tensor] | None = None) -> _Packed:
        params = self.current_params() if params is None else params
        # in-place updates (optimizer steps, load_state_dict) bump _version, and .to()/.double()
        # swap the storage: either rebuilds the packed copy
        key = tuple((p._version, p.data_ptr()) for p in params)
        if self._packed is None or self._packed.key != key:
            self._packed = _Packed(key, list(self.field.layers))
        return self._packed

    def cnf_rhs(self, x: torch.Tensor, t: torch.Tensor, kinetic_scale: float | None = None,
                frob_scale: float | None = None) -> tuple[torch.Tensor, ...]:
        """The CNF's state derivative pieces: ``f`` (B, D), ``−tr ∂f/∂x`` (B, 1) and, with the
        scales given, ``kinetic_scale·‖f‖²`` and ``frob_scale·‖∂f/∂x‖²_F`` (B, 1) each;
        differentiable w.r.t. x, t and the field's parameters."""
        params = self.current_params()
        if t.dim() or t.dtype != x.dtype:
            t = t.reshape(()).to(x.dtype)
        reg = None if kinetic_scale is None else (kinetic_scale, frob_scale)
        if not torch.is_grad_enabled() or not (
                x.requires_grad or t.requires_grad or any(p.requires_grad for p in params)):
            # e.g. the adjoint's forward solve: no graph, nothing saved, no Function overhead
            out = _forward(self.packed(params), x, t, reg, save=False)[0]
        else:
            out = _FusedFn.apply(self, reg, x, t, *params)
        return out if reg is not None else out[:2]

    def __call__(self, x: torch.Tensor, t: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """f(x, t), tr(∂f/∂x) and ‖∂f/∂x‖²_F, each per sample."""
        self.refresh()
        f, ntr, _, frob = self.cnf_rhs(x, t, 0.0, 1.0)
        return f, -ntr.squeeze(1), frob.squeeze(1)


# -- kernels ---------------------------------------------------------------------------------
def _forward(pk: _Packed, x: torch.Tensor, t: torch.Tensor, reg: tuple[float, float] | None,
             save: bool) -> tuple[tuple[torch.Tensor, ...], Saved | None]:
    """(f, −tr, [kinetic, Frobenius]) and, with ``save``, what :func:`_vjp` needs."""
    g = torch.sigmoid(torch.addcmul(pk.a0, pk.a, t))
    ge = torch.mul(g, pk.mult).unsqueeze(1)  # effective gates as a column (×2 on hidden layers)
    be = torch.addcmul(pk.cm * t, pk.bm, g)  # effective biases (b ⊙ g + c t)·mult
    ges, bes = ge.split_with_sizes(pk.sizes), be.split_with_sizes(pk.sizes)
    S = torch.cat([x.unsqueeze(0), pk.tangent_rows(x)])  # (1+D, B, D)
    last = len(ges) - 1
    S2s: list[torch.Tensor] = []  # layer inputs as ((1+D)·B, H) matrices
    Qs: list[torch.Tensor] = []
    ss: list[torch.Tensor] = []
    hss: list[torch.Tensor] = []
    Wgs: list[torch.Tensor] = []
    Q = S
    for i, W in enumerate(pk.weights):
        Wg = W * ges[i]
        Q = F.linear(S, Wg)  # S Wgᵀ: value and tangents in one product
        Q[0].add_(bes[i])
        if save:
            S2s.append(S.flatten(0, 1))
            Qs.append(Q)
            Wgs.append(Wg)
        if i == last:
            break
        # tanh(pre) = 2σ(Q') − 1 with Q' = 2·pre; J = dh/dQ' ⊙ (tangents of Q')
        h = torch.addcmul(pk.neg_one, torch.sigmoid(Q[0]), pk.one, value=2)
        s = torch.addcmul(pk.half, h, h, value=-0.5)  # dh/dQ' = (1 − h²)/2
        S = Q * s  # right for the tangent rows; the value row is then overwritten with h
        S[0] = h
        if save:
            ss.append(s)
            hss.append(h * s)
    f, P = Q[0], Q[1:]  # P[k, b, i] = ∂f_i/∂x_k
    ntr = P.diagonal(0, 0, 2).sum(1, keepdim=True).neg_()
    if reg is None:
        out: tuple[torch.Tensor, ...] = (f, ntr)
    else:
        kin = f.square().sum(1, keepdim=True).mul_(reg[0])
        frob = P.square().sum((0, 2)).unsqueeze(1).mul_(reg[1])
        out = (f, ntr, kin, frob)
    return out, ((t, g, ge, S2s, Qs, ss, hss, Wgs) if save else None)


def _vjp(pk: _Packed, saved: Saved, gf: torch.Tensor | None, gntr: torch.Tensor | None,
         gkin: torch.Tensor | None, gfrob: torch.Tensor | None, reg: tuple[float, float] | None,
         sign: float, flat: torch.Tensor, gx_out: torch.Tensor | None = None,
         need_x: bool = True, need_t: bool = True
         ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``sign``·(gf, gntr, gkin, gfrob)ᵀ ∂(f, −tr, kin, frob)/∂(x, t, θ). The parameter part is
    written into ``flat`` (the ``_Packed`` gradient layout), x's into ``gx_out`` if given;
    returns (gx, gt)."""
    t, g, ge, S2s, Qs, ss, hss, Wgs = saved
    L = len(Qs)
    QL = Qs[-1]

    # gradient w.r.t. the last layer's output [f; P]
    GQ = torch.zeros_like(QL)
    if gf is not None:
        torch.mul(gf, sign, out=GQ[0])
    if reg is not None and gkin is not None:  # kin = k‖f‖²
        GQ[0].addcmul_(QL[0], gkin, value=2 * reg[0] * sign)
    if gntr is not None:  # ntr = −Σ_k P[k, :, k]
        GQ[1:].diagonal(0, 0, 2).sub_(gntr, alpha=sign)
    if reg is not None and gfrob is not None:  # frob = c‖P‖²
        GQ[1:].addcmul_(QL[1:], gfrob, value=2 * reg[1] * sign)

    # back through the layers; GQ is the gradient w.r.t. a layer's output Q' (1+D, B, H)
    n_w = sum(pk.w_numel)
    gWs = flat[:n_w].split_with_sizes(pk.w_numel)
    gb, ga, gz, gc = flat[n_w:].view(4, -1)
    gbe = torch.empty_like(g)
    gbes = gbe.split_with_sizes(pk.sizes)
    gge = torch.empty_like(g)
    gges = gge.split_with_sizes(pk.sizes)
    ges = ge.split_with_sizes(pk.sizes)
    gx = None
    for i in range(L - 1, -1, -1):
        GQ2, S2 = GQ.flatten(0, 1), S2s[i]
        # GQ2ᵀ S2; for a narrow input (the first layer) as (S2ᵀ GQ2)ᵀ, which MKL does ~3× faster
        gWg = torch.mm(S2.t(), GQ2).t() if S2.shape[1] < GQ2.shape[1] else torch.mm(GQ2.t(), S2)
        torch.mul(gWg, ges[i], out=gWs[i].view(pk.w_shapes[i]))  # Wg = W ⊙ ge
        torch.linalg.vecdot(gWg, pk.weights[i], out=gges[i])
        torch.sum(GQ[0], 0, out=gbes[i])
        if i == 0:
            if need_x:
                gx = torch.mm(GQ[0], Wgs[0], out=gx_out) if gx_out is not None else \
                    torch.mm(GQ[0], Wgs[0])
            break
        GS = torch.matmul(GQ, Wgs[i])  # w.r.t. the layer input [h; J]
        Gs = torch.linalg.vecdot(GS[1:], Qs[i - 1][1:], dim=0)  # J = s ⊙ (tangents of Q')
        # dh/dQ' = s and ds/dh = −h: value row (GS₀ − h ⊙ Gs) ⊙ s, tangent rows GS ⊙ s
        GQ = GS.mul_(ss[i - 1])
        GQ[0].addcmul_(hss[i - 1], Gs, value=-1)

    # (ge, be) → gate parameters and t, with ge = g·mult and be = (b ⊙ g + c t)·mult
    gbeff = gbe.mul_(pk.mult)  # w.r.t. b ⊙ g + c t
    gge.mul_(pk.mult).addcmul_(gbeff, pk.b)  # w.r.t. g
    torch.mul(gge, torch.addcmul(g, g, g, value=-1), out=gz)  # σ' = σ(1 − σ)
    torch.mul(gbeff, g, out=gb)
    torch.mul(gz, t, out=ga)
    torch.mul(gbeff, t, out=gc)
    gt = (torch.dot(gz, pk.a) + torch.dot(gbeff, pk.c)) if need_t else None
    return gx, gt


class _FusedFn(torch.autograd.Function):
    """(x, t, params) → (f, −tr, kinetic, Frobenius) with the VJP by hand."""

    @staticmethod
    def forward(ctx: Any, fused: FusedMLP, reg: tuple[float, float] | None, x: torch.Tensor,
                t: torch.Tensor, *params: torch.Tensor) -> tuple[torch.Tensor, ...]:
        pk = fused.packed(params)
        out, saved = _forward(pk, x, t, reg, save=True)
        _, g, ge, S2s, Qs, ss, hss, Wgs = saved
        ctx.pk, ctx.L, ctx.reg = pk, len(Qs), reg
        ctx.save_for_backward(t, g, ge, *params, *S2s, *Qs, *ss, *hss, *Wgs)
        if reg is None:  # a Function returns a fixed number of tensors: empty placeholders
            empty = x.new_empty(0)
            ctx.mark_non_differentiable(empty)
            out = (*out, empty, empty)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, gf: torch.Tensor | None, gntr: torch.Tensor | None,
                 gkin: torch.Tensor | None, gfrob: torch.Tensor | None) -> tuple:
        L, pk = ctx.L, ctx.pk
        saved = ctx.saved_tensors
        n = PARAMS_PER_LAYER * L
        t, g, ge = saved[:3]
        # saved[3:3 + n] are the parameters: kept so that autograd checks their versions
        rest = saved[3 + n:]
        S2s, Qs = list(rest[:L]), list(rest[L:2 * L])
        ss, hss = list(rest[2 * L:3 * L - 1]), list(rest[3 * L - 1:4 * L - 2])
        Wgs = list(rest[4 * L - 2:])
        flat = g.new_empty(pk.n_flat)
        gx, gt = _vjp(pk, (t, g, ge, S2s, Qs, ss, hss, Wgs), gf, gntr, gkin, gfrob, ctx.reg,
                      1.0, flat, need_x=ctx.needs_input_grad[2],
                      need_t=ctx.needs_input_grad[3])
        return (None, None, gx, None if gt is None else gt.reshape(t.shape),
                *pk.param_grads(flat))


# -- adjoint ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _NormedSolver(Solver):
    """A Solver whose options carry an error norm (torchdiffeq takes it as ``options['norm']``)."""

    norm: Callable[[torch.Tensor], torch.Tensor] | None = None

    def options(self, t0: float, t1: float) -> dict[str, Any]:
        opts = super().options(t0, t1)
        return opts if self.norm is None else {**opts, "norm": self.norm}


class _SegmentNorm:
    """Max over consecutive segments of a flat vector of each segment's RMS: torchdiffeq's
    error norm of a tuple state (``_mixed_norm``) in a few operations instead of a few per
    tensor."""

    def __init__(self, lengths: Sequence[int], like: torch.Tensor):
        lens = torch.tensor(list(lengths), device=like.device)
        self.index = torch.repeat_interleave(torch.arange(len(lens), device=like.device), lens)
        self.inv_len = 1.0 / lens.to(like.dtype)
        self.n = len(lens)

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        sums = v.new_zeros(self.n).index_add_(0, self.index, v * v)
        return sums.mul_(self.inv_len).max().sqrt()


class _Layout:
    """The flat CNF state [x (B·D), Δ (B), K (B), J (B)] (torchdiffeq's order for the tuple) and
    the adjoint's augmented state [vjp_t (1), state (N), adjoint (N), parameter gradients]."""

    def __init__(self, B: int, D: int, n_state: int, pk: _Packed, like: torch.Tensor):
        self.B, self.D, self.n_state = B, D, n_state
        self.N = B * D + B * (n_state - 1)
        self.state_lengths = [B * D] + [B] * (n_state - 1)
        self.state_norm = _SegmentNorm(self.state_lengths, like)
        self.aug_norm = _SegmentNorm([1, *self.state_lengths, *self.state_lengths,
                                      *pk.segment_lengths()], like)

    def split_state(self, y: torch.Tensor) -> list[torch.Tensor]:
        B = self.B
        parts = y.split_with_sizes(self.state_lengths, dim=-1)
        return [parts[0].unflatten(-1, (B, self.D))] + [p.unflatten(-1, (B, 1))
                                                         for p in parts[1:]]


class _FusedAdjoint(torch.autograd.Function):
    """Forward: solve the CNF state without a graph. Backward: the adjoint solve, as
    torchdiffeq's ``OdeintAdjointMethod.backward`` does it, on one flat augmented state."""

    @staticmethod
    def forward(ctx: Any, driver: _AdjointDriver, y0: torch.Tensor, t: torch.Tensor,
                *params: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            ys = driver.solve_state(y0, t)
        ctx.driver = driver
        ctx.save_for_backward(t, ys, *params)
        return ys

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_ys: torch.Tensor) -> tuple:
        driver: _AdjointDriver = ctx.driver
        t, ys = ctx.saved_tensors[:2]
        lay, pk = driver.layout, driver.pk
        N = lay.N
        with torch.no_grad():
            aug = ys.new_zeros(1 + 2 * N + pk.n_flat)
            aug[1:1 + N] = ys[-1]
            aug[1 + N:1 + 2 * N] = grad_ys[-1]
            for i in range(len(t) - 1, 0, -1):
                aug = driver.integrate(driver.counted_aug, aug, t[i - 1:i + 1].flip(0),
                                       lay.aug_norm)[1]
                aug[1:1 + N] = ys[i - 1]  # continue from the forward pass's state
                aug[1 + N:1 + 2 * N] += grad_ys[i - 1]
        return (None, aug[1 + N:1 + 2 * N], None, *pk.param_grads(aug[1 + 2 * N:]))


class _AdjointDriver:
    """The flat right-hand sides of the state and of the adjoint's augmented system."""

    def __init__(self, fused: FusedMLP, counted: CountedField, solver: Solver, layout: _Layout,
                 reg: tuple[float, float] | None):
        self.fused, self.counted, self.solver, self.layout, self.reg = (
            fused, counted, solver, layout, reg)
        self.pk = fused.packed()
        self.counted_aug = _Counted(counted, self.augmented)
        self.step_size: float | None = None

    def solver_for(self, norm: _SegmentNorm) -> _NormedSolver:
        fields = {f.name: getattr(self.solver, f.name) for f in dataclasses.fields(Solver)}
        fields.update(adjoint=False, steps=None, step_size=self.step_size)
        return _NormedSolver(**fields, norm=norm)

    def solve_state(self, y0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # a fixed grid's step comes from the whole interval, also for the adjoint's pieces
        self.step_size = self.solver.options(float(t[0]), float(t[-1])).get("step_size")
        return self.integrate(_Counted(self.counted, self.state), y0, t, self.layout.state_norm)

    def integrate(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                  y0: torch.Tensor, t: torch.Tensor, norm: _SegmentNorm) -> torch.Tensor:
        """The solution at every time in ``t``, as :func:`odeflows.ode.solve` gives it; dopri5
        between two times by :mod:`odeflows.nn.lean_dopri5` (the same steps, less overhead)."""
        solver = self.solver
        if solver.method == "dopri5" and len(t) == 2:
            y1 = lean_dopri5.dopri5(fn, y0, float(t[0]), float(t[1]), solver.rtol, solver.atol,
                                    norm, solver.max_num_steps)
            return torch.stack([y0, y1])
        return solve(fn, y0, t, self.solver_for(norm))

    def state(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        lay = self.layout
        x = y[:lay.B * lay.D].view(lay.B, lay.D)
        out, _ = _forward(self.pk, x, t, self.reg, save=False)
        return torch.cat([o.reshape(-1) for o in out])

    def augmented(self, t: torch.Tensor, aug: torch.Tensor) -> torch.Tensor:
        """d/dt [vjp_t, y, a, vjp_θ] = [−aᵀ∂f/∂t, f, −aᵀ∂f/∂y, −aᵀ∂f/∂θ] (torchdiffeq's
        ``augmented_dynamics``); f ignores Δ, K, J, so their adjoints are constant."""
        lay, pk = self.layout, self.pk
        N, B, BD = lay.N, lay.B, lay.B * lay.D
        x = aug[1:1 + BD].view(B, lay.D)
        adj = aug[1 + N:1 + 2 * N]
        out_vals, saved = _forward(pk, x, t, self.reg, save=True)
        d = torch.empty_like(aug)
        torch.cat([o.reshape(-1) for o in out_vals], out=d[1:1 + N])
        d[1 + N + BD:1 + 2 * N].zero_()
        a_parts = [adj[:BD].view(B, lay.D)] + [adj[BD + j * B:BD + (j + 1) * B].view(B, 1)
                                               for j in range(lay.n_state - 1)]
        gkin, gfrob = (a_parts[2], a_parts[3]) if self.reg is not None else (None, None)
        _, gt = _vjp(pk, saved, a_parts[0], a_parts[1], gkin, gfrob, self.reg, -1.0,
                     d[1 + 2 * N:], gx_out=d[1 + N:1 + N + BD].view(B, lay.D))
        d[0] = gt
        return d


class _Counted:
    """Counts evaluations on the CNF's own counter, so NFE are reported as on the generic path
    (a plain callable: torchdiffeq needs no module without the adjoint, and a module call costs
    microseconds per evaluation)."""

    def __init__(self, counted: CountedField, fn: Callable[[torch.Tensor, torch.Tensor],
                                                           torch.Tensor]):
        self.counted, self.fn = counted, fn

    def __call__(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.counted.nfe += 1
        return self.fn(t, y)


def adjoint_applies(fused: FusedMLP, counted: CountedField, t: torch.Tensor) -> bool:
    """The fused adjoint reproduces torchdiffeq's when the adjoint parameters are exactly the
    field's (all trainable) and the times need no gradient; otherwise the generic adjoint runs
    (with the fused Function as its dynamics)."""
    if t.requires_grad or not torch.is_grad_enabled():
        return False
    params = fused.current_params()
    own = list(counted.parameters())
    return (len(own) == len(params) and all(p is q for p, q in zip(own, params, strict=True))
            and all(p.requires_grad for p in params))


def solve_adjoint(fused: FusedMLP, counted: CountedField, state: Sequence[torch.Tensor],
                  t: torch.Tensor, solver: Solver, reg: tuple[float, float] | None
                  ) -> list[torch.Tensor]:
    """The CNF solve with the adjoint method: ``state`` = [x (B, D), Δ (B, 1), (K, J)], returns the
    solution of every part at every time in ``t``, as :func:`odeflows.ode.solve` does."""
    x = state[0]
    B, D = x.shape
    pk = fused.packed()
    key = (B, D, len(state), x.dtype, x.device)
    layout = fused.layouts.get(key)
    if layout is None:  # the norms' segment indices depend only on the shapes: built once
        layout = fused.layouts[key] = _Layout(B, D, len(state), pk, x)
    driver = _AdjointDriver(fused, counted, solver, layout, reg)
    y0 = torch.cat([s.reshape(-1) for s in state])
    ys = _FusedAdjoint.apply(driver, y0, t, *fused.current_params())
    return layout.split_state(ys)
