"""Fused CNF dynamics for FFJORD's concatsquash-tanh MLP with the exact trace.

Why: on CPU at toy sizes (batch 100, width 64, D = 2) a dynamics evaluation is dominated by
per-operation overhead, not arithmetic: the autograd trace builds hundreds of small graph nodes
per evaluation, and the adjoint differentiates through all of them again at every backward
evaluation. Here an evaluation is a handful of batched matrix products, and its vector-Jacobian
product is written out by hand in a ``torch.autograd.Function``, so the adjoint's backward
evaluation is one graph node instead of a graph.

Maths. Layer l of the field is ``pre_l = (W_l h + b_l) ⊙ g_l + c_l`` with the time gates
``g_l = σ(a_l t + a0_l)`` and ``c_l = d_l t`` (FFJORD's ConcatSquashLinear), i.e.
``pre_l = h Wg_lᵀ + beff_l`` with ``Wg_l = diag(g_l) W_l`` and ``beff_l = b_l ⊙ g_l + c_l``;
``h_l = tanh(pre_l)`` between layers. The Jacobian is pushed forward alongside the value: with
``J_0 = I``, the pre-activation tangents are ``P_l = J_{l-1} Wg_lᵀ`` and ``J_l = s_l ⊙ P_l`` with
``s_l = 1 − h_l²``, so ``∂f/∂x = P_L``, the trace is its diagonal sum and ‖∂f/∂x‖²_F its sum of
squares. The value and the D tangents share one ``((1+D)·B, H)`` tensor (rows: value, then
∂/∂x_1, …, ∂/∂x_D), so each layer is a single matrix product for all of them. The backward pass
runs the same recursion in reverse; besides the usual terms the chain rule through ``s_l`` adds
``∂L/∂h_l −= 2 h_l ⊙ Σ_k ∂L/∂J_l[k] ⊙ P_l[k]``. Finally the gradients of ``Wg_l, beff_l`` are mapped
to ``W_l, b_l``, the gate parameters and ``t``.

The gate parameters of all layers are packed into single vectors, so the gates of every layer
cost a few operations per evaluation instead of a few per layer. The packed copy is rebuilt when a
parameter's version counter or storage changes and whenever :meth:`FusedMLP.refresh` is called
(the CNF does so at the start of every solve, which also covers changes made through ``.data``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from odeflows.nn.fields import MLPField
from odeflows.nn.layers import ConcatSquashLinear

PARAMS_PER_LAYER = 5  # linear.weight, linear.bias, hyper_gate.weight, hyper_gate.bias, hyper_bias


def supports(field: nn.Module) -> bool:
    """Whether ``field`` is an MLP that the fused kernel reproduces exactly."""
    return (isinstance(field, MLPField) and field.nonlinearity == "tanh"
            and len(field.layers) > 0
            and all(type(layer) is ConcatSquashLinear for layer in field.layers))


class _Packed:
    """Per-layer gate parameters concatenated over layers (detached), and constants.

    Hidden layers are evaluated at twice their pre-activation, ``Q' = 2·pre``, because
    ``tanh(pre) = 2σ(Q') − 1`` and one sigmoid costs a fraction of one tanh on CPU; the factor
    is folded into the gates (``mult`` is 2 on hidden units, 1 on the output layer's), so it
    costs no extra operation per evaluation.
    """

    __slots__ = ("key", "a", "a0", "c", "b", "mult", "bm", "cm", "sizes", "one", "half",
                 "neg_one", "eye")

    def __init__(self, key: tuple, layers: list[ConcatSquashLinear]):
        self.key = key
        with torch.no_grad():
            self.a = torch.cat([m.hyper_gate.weight.reshape(-1) for m in layers])
            self.a0 = torch.cat([m.hyper_gate.bias for m in layers])
            self.c = torch.cat([m.hyper_bias.weight.reshape(-1) for m in layers])
            self.b = torch.cat([m.linear.bias for m in layers])
            self.mult = torch.cat([torch.full_like(m.linear.bias, 1.0 if i == len(layers) - 1
                                                   else 2.0) for i, m in enumerate(layers)])
            self.bm, self.cm = self.b * self.mult, self.c * self.mult
        self.sizes = [m.linear.out_features for m in layers]
        self.one, self.half, self.neg_one = (self.a.new_full((), v) for v in (1.0, 0.5, -1.0))
        self.eye: dict[int, torch.Tensor] = {}  # batch size → (D·B, D) stacked identity tangents

    def tangent_rows(self, x: torch.Tensor) -> torch.Tensor:
        B, D = x.shape
        eye = self.eye.get(B)
        if eye is None:
            eye = torch.eye(D, dtype=x.dtype, device=x.device).repeat_interleave(B, 0)
            self.eye[B] = eye
        return eye


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

    def params(self) -> list[torch.Tensor]:
        """The field's parameters, in the order in which the Function returns their gradients."""
        out = []
        for m in self.field.layers:
            out += [m.linear.weight, m.linear.bias, m.hyper_gate.weight, m.hyper_gate.bias,
                    m.hyper_bias.weight]
        return out

    def refresh(self) -> None:
        """Re-read the field's parameters: the list (looked up once per solve, not per
        evaluation, as module attribute access is slow) and the packed gate parameters."""
        self._packed = None
        self._params = self.params()

    def packed(self, params: list[torch.Tensor]) -> _Packed:
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
        params = self._params
        if params is None:
            self.refresh()
            params = self._params
        if t.dim() or t.dtype != x.dtype:
            t = t.reshape(()).to(x.dtype)
        reg = None if kinetic_scale is None else (kinetic_scale, frob_scale)
        if not torch.is_grad_enabled() or not (
                x.requires_grad or t.requires_grad or any(p.requires_grad for p in params)):
            # e.g. the adjoint's forward solve: no graph, nothing saved, no Function overhead
            out = _forward(self.packed(params), params, x, t, reg, save=False)[0]
        else:
            out = _FusedFn.apply(self, reg, x, t, *params)
        return out if reg is not None else out[:2]

    def __call__(self, x: torch.Tensor, t: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """f(x, t), tr(∂f/∂x) and ‖∂f/∂x‖²_F, each per sample."""
        self.refresh()
        f, ntr, _, frob = self.cnf_rhs(x, t, 0.0, 1.0)
        return f, -ntr.squeeze(1), frob.squeeze(1)


def _forward(pk: _Packed, params: list[torch.Tensor], x: torch.Tensor, t: torch.Tensor,
             reg: tuple[float, float] | None, save: bool) -> tuple[tuple, tuple]:
    B, D = x.shape
    g = torch.sigmoid(torch.addcmul(pk.a0, pk.a, t))
    ge = g * pk.mult  # effective gates (×2 on hidden layers, see _Packed)
    be = torch.addcmul(pk.cm * t, pk.bm, g)  # effective biases (b ⊙ g + c t)·mult
    ges, bes = ge.split(pk.sizes), be.split(pk.sizes)
    S = torch.cat([x, pk.tangent_rows(x)])  # rows: value, then ∂/∂x_k for k = 1..D
    L = len(ges)
    Ss, Qs, ss, Wgs = [], [], [], []
    Q = S
    for i in range(L):
        Wg = params[PARAMS_PER_LAYER * i] * ges[i].unsqueeze(1)
        Q = F.linear(S, Wg)  # S Wgᵀ: value and tangents in one product
        Q[:B] += bes[i]
        if save:
            Ss.append(S)
            Qs.append(Q)
            Wgs.append(Wg)
        if i == L - 1:
            break
        H = Q.shape[1]
        S = torch.empty_like(Q)
        h = torch.sigmoid(Q[:B])
        h = torch.addcmul(pk.neg_one, h, pk.one, value=2, out=S[:B])  # tanh(pre) = 2σ(Q') − 1
        s = torch.addcmul(pk.half, h, h, value=-0.5)  # dh/dQ' = (1 − h²)/2
        torch.mul(Q[B:].view(D, B, H), s, out=S[B:].view(D, B, H))  # J = dh/dQ' ⊙ (Q' tangents)
        if save:
            ss.append(s)
    f = Q[:B]
    P = Q[B:].view(D, B, D)  # P[k, b, i] = ∂f_i/∂x_k
    ntr = P.diagonal(0, 0, 2).sum(1, keepdim=True).neg_()
    if reg is None:
        out: tuple = (f, ntr)
    else:
        kin = f.square().sum(1, keepdim=True).mul_(reg[0])
        frob = P.square().sum((0, 2)).unsqueeze(1).mul_(reg[1])
        out = (f, ntr, kin, frob)
    return out, (g, ge, Ss, Qs, ss, Wgs)


class _FusedFn(torch.autograd.Function):
    """(x, t, params) → (f, −tr, kinetic, Frobenius) with the vector-Jacobian product by hand."""

    @staticmethod
    def forward(ctx: Any, fused: FusedMLP, reg: tuple[float, float] | None, x: torch.Tensor,
                t: torch.Tensor, *params: torch.Tensor) -> tuple[torch.Tensor, ...]:
        params_l = list(params)
        pk = fused.packed(params_l)
        out, (g, ge, Ss, Qs, ss, Wgs) = _forward(pk, params_l, x, t, reg, save=True)
        ctx.pk, ctx.L, ctx.reg = pk, len(Ss), reg
        ctx.save_for_backward(t, g, ge, *params, *Ss, *Qs, *ss, *Wgs)
        if reg is None:  # a Function returns a fixed number of tensors: empty placeholders
            empty = x.new_empty(0)
            ctx.mark_non_differentiable(empty)
            out = (*out, empty, empty)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, gf: torch.Tensor | None, gntr: torch.Tensor | None,
                 gkin: torch.Tensor | None, gfrob: torch.Tensor | None) -> tuple:
        L, pk, reg = ctx.L, ctx.pk, ctx.reg
        saved = ctx.saved_tensors
        n = PARAMS_PER_LAYER * L
        t, g, ge = saved[:3]
        params = saved[3:3 + n]
        Ss = saved[3 + n:3 + n + L]
        Qs = saved[3 + n + L:3 + n + 2 * L]
        ss = saved[3 + n + 2 * L:2 + n + 3 * L]
        Wgs = saved[2 + n + 3 * L:2 + n + 4 * L]
        QL = Qs[-1]
        D = QL.shape[1]
        B = QL.shape[0] // (1 + D)
        f, P = QL[:B], QL[B:].view(D, B, D)

        # gradient w.r.t. the last layer's rows [f; P_L]
        GQ = torch.zeros_like(QL)
        if gf is not None:
            GQ[:B] = gf
        if reg is not None and gkin is not None:  # kin = k‖f‖²
            GQ[:B].addcmul_(f, gkin, value=2 * reg[0])
        GP = GQ[B:].view(D, B, D)
        if gntr is not None:  # ntr = −Σ_k P[k, :, k]
            GP.diagonal(0, 0, 2).sub_(gntr)
        if reg is not None and gfrob is not None:  # frob = c‖P‖²
            GP.addcmul_(P, gfrob.view(1, B, 1), value=2 * reg[1])

        # back through the layers; GQ is the gradient w.r.t. a layer's output rows [Q'; P']
        gWg: list[torch.Tensor] = []
        gbe = g.new_empty(g.shape)
        gbes = gbe.split(pk.sizes)
        gx = None
        for i in range(L - 1, -1, -1):
            S = Ss[i]
            gWg.append(torch.mm(GQ.t(), S))
            torch.sum(GQ[:B], 0, out=gbes[i])
            if i == 0:
                if ctx.needs_input_grad[2]:
                    gx = torch.mm(GQ[:B], Wgs[0])
                break
            GS = torch.mm(GQ, Wgs[i])  # w.r.t. the layer input's rows [h; J]
            H = GS.shape[1]
            h, s = S[:B], ss[i - 1]
            GJ = GS[B:].view(D, B, H)
            Gs = (GJ * Qs[i - 1][B:].view(D, B, H)).sum(0)  # J = s ⊙ P'
            GQ = torch.empty_like(GS)
            torch.mul(GJ, s, out=GQ[B:].view(D, B, H))
            Gh = torch.addcmul(GS[:B], h, Gs, value=-1)  # ds/dh = −h
            torch.mul(Gh, s, out=GQ[:B])  # dh/dQ' = s
        gWg.reverse()

        # (Wg, be) → (W, b, gate parameters, t), with Wg = W ⊙ g·mult, be = (b ⊙ g + c t)·mult
        gge = g.new_empty(g.shape)
        gges = gge.split(pk.sizes)
        ges = ge.split(pk.sizes)
        grads: list[torch.Tensor | None] = [None] * n
        for i in range(L):
            W = params[PARAMS_PER_LAYER * i]
            torch.sum(gWg[i] * W, 1, out=gges[i])
            grads[PARAMS_PER_LAYER * i] = gWg[i] * ges[i].unsqueeze(1)
        gbeff = gbe.mul_(pk.mult)  # w.r.t. b ⊙ g + c t
        gg = gge.mul_(pk.mult).addcmul_(gbeff, pk.b)
        gz = gg.mul_(torch.addcmul(g, g, g, value=-1))  # σ' = σ(1 − σ)
        gb, ga, gc = gbeff * g, gz * t, gbeff * t
        for i, (gb_i, ga_i, gz_i, gc_i) in enumerate(zip(
                gb.split(pk.sizes), ga.split(pk.sizes), gz.split(pk.sizes), gc.split(pk.sizes),
                strict=True)):
            j = PARAMS_PER_LAYER * i
            grads[j + 1:j + 5] = [gb_i, ga_i.unsqueeze(1), gz_i, gc_i.unsqueeze(1)]
        gt = None
        if ctx.needs_input_grad[3]:
            gt = (torch.dot(gz, pk.a) + torch.dot(gbeff, pk.c)).reshape(t.shape)
        return (None, None, gx, gt, *grads)
