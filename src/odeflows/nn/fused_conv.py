"""Value and Hutchinson divergence of the image CNF's conv field in one forward pass, with the
vector-Jacobian product written by hand: no double backward.

Why: FFJORD's estimator eᵀ(∂f/∂x)e is computed by the reference (and by our straightforward
path) as a vjp with ``create_graph=True``; the adjoint then differentiates that graph again at
every backward evaluation. PyTorch's double backward of a convolution is expensive on CPU: among
other terms it forms the weight gradient of the grad-input convolution as a convolution whose
kernel is the whole image (channels taken as the batch), which oneDNN runs slowly, plus copies.

Here the probe e is pushed *forward* through the network alongside the value (a conv net is
linear in its input between nonlinearities, so the tangent of layer l is the same convolution,
without bias, of the tangent of layer l − 1, times act'(z)), and eᵀ(Je) is read off the last
layer: the same number as (eᵀJ)e. Value and tangent share each convolution as one batch of 2B.
The VJP of (f, −div) w.r.t. x and the layers' weights and bias maps is the reverse pass of that
doubled network: per layer one weight-gradient and one input-gradient convolution of the 2B
batch, and through the activation (h = σ(z), v = σ'(z)·u)

    ∂/∂u = σ'(z)·ḡv,    ∂/∂z = σ'(z)·ḡh + σ''(z)·u·ḡv.

The field is given to the kernel as, per layer, the convolution weight acting on the image
channels and a *bias map* β (1, C, H, W) that adds everything the batch shares: the bias and the
conditioning channels' convolution (FFJORD's t channel, AFFJORD's augmented channels; at batch 1,
as :mod:`odeflows.nn.conv_layers` does). Weights and bias maps are computed by ordinary autograd
ops from the parameters (also hypernetwork-generated ones), so their gradients reach the
parameters, t and the augmented state as usual.

Activations and weights are kept channels-last, the layout in which oneDNN's 3×3 convolutions
run fastest on CPU here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

ACTIVATIONS = ("softplus", "tanh")
_CL = torch.channels_last


def _act(name: str, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(act(z), act'(z))."""
    if name == "softplus":
        return F.softplus(z), torch.sigmoid(z)
    h = torch.tanh(z)
    return h, torch.addcmul(torch.ones_like(h), h, h, value=-1)


def _act_second(name: str, d1: torch.Tensor, h: torch.Tensor | None) -> torch.Tensor:
    """act''(z) from act'(z) (softplus: σ(1 − σ)) or act (tanh: −2 tanh · (1 − tanh²))."""
    if name == "softplus":
        return d1 - d1 * d1
    assert h is not None
    return -2 * h * d1


def _cl(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=_CL) if x.dim() == 4 else x


def _conv(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, w, None, padding=w.shape[-1] // 2)


def _conv_backward(g: torch.Tensor, x: torch.Tensor, w: torch.Tensor, need_input: bool,
                   need_weight: bool) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    p = w.shape[-1] // 2
    gx, gw, _ = torch.ops.aten.convolution_backward(
        g, x, w, None, [1, 1], [p, p], [1, 1], False, [0, 0], 1,
        [need_input, need_weight, False])
    return gx, gw


def _sum_to(g: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum a (B, C, H, W) gradient down to a bias map's (1, C, H, W) or (1, C, 1, 1)."""
    dims = [0] + [d for d in (2, 3) if shape[d] == 1]
    return g.sum(dims, keepdim=True)


def value_and_divergence(act: str, x: torch.Tensor, e: torch.Tensor,
                         weights: Sequence[torch.Tensor], maps: Sequence[torch.Tensor],
                         save: bool = False) -> tuple[torch.Tensor, torch.Tensor, list | None]:
    """f(x) and −eᵀ(∂f/∂x)e per sample (B,), and what the VJP needs if ``save``."""
    B = x.shape[0]
    H0e = _cl(e)
    H = torch.cat([_cl(x), H0e])
    saved: list[torch.Tensor] = []
    last = len(weights) - 1
    for i, (w, beta) in enumerate(zip(weights, maps, strict=True)):
        Z = _conv(H, w)
        Z[:B] += beta
        if save:
            saved.append(H)
        if i == last:
            break
        u = Z[B:]
        h, d1 = _act(act, Z[:B])
        H = torch.cat([h, d1 * u])
        if save:
            saved += [u, d1] if act == "softplus" else [u, d1, h]
    f, je = Z[:B], Z[B:]
    ntr = torch.linalg.vecdot(je.flatten(1), H0e.flatten(1)).neg_()
    return f, ntr, (saved if save else None)


class _ValueAndDivergence(torch.autograd.Function):
    """(x, e, weights, bias maps) → (f, −eᵀJe); e is a constant (the probe)."""

    @staticmethod
    def forward(ctx: Any, act: str, n_layers: int, x: torch.Tensor, e: torch.Tensor,
                *params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weights, maps = params[:n_layers], params[n_layers:]
        f, ntr, saved = value_and_divergence(act, x, e, weights, maps, save=True)
        ctx.act, ctx.n_layers = act, n_layers
        ctx.map_shapes = [m.shape for m in maps]
        ctx.save_for_backward(e, *weights, *saved)
        return f, ntr

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, gf: torch.Tensor | None, gntr: torch.Tensor | None) -> tuple:
        act, L = ctx.act, ctx.n_layers
        e, *rest = ctx.saved_tensors
        weights, saved = rest[:L], rest[L:]
        per_hidden = 2 if act == "softplus" else 3
        B = e.shape[0]
        e = _cl(e)
        gf = torch.zeros_like(e) if gf is None else _cl(gf)
        gu = e * (-gntr).view(B, 1, 1, 1) if gntr is not None else torch.zeros_like(e)
        gZ = torch.cat([gf, gu])
        g_weights: list[torch.Tensor] = [None] * L  # type: ignore[list-item]
        g_maps: list[torch.Tensor] = [None] * L  # type: ignore[list-item]
        gx = None
        for i in range(L - 1, -1, -1):
            base = i * (1 + per_hidden)
            Hin = saved[base]
            g_maps[i] = _sum_to(gZ[:B], ctx.map_shapes[i])
            if i == 0:
                _, g_weights[0] = _conv_backward(gZ, Hin, weights[0], False, True)
                if ctx.needs_input_grad[2]:
                    gx, _ = _conv_backward(gZ[:B], Hin[:B], weights[0], True, False)
                break
            gH, g_weights[i] = _conv_backward(gZ, Hin, weights[i], True, True)
            prev = (i - 1) * (1 + per_hidden)
            u, d1 = saved[prev + 1], saved[prev + 2]
            h = saved[prev + 3] if per_hidden == 3 else None
            gh, gv = gH[:B], gH[B:]
            # ∂/∂u = σ'·ḡv ; ∂/∂z = σ'·ḡh + σ''·u·ḡv
            gz = torch.addcmul(d1 * gh, _act_second(act, d1, h) * u, gv)
            gZ = torch.cat([gz, d1 * gv])
        return (None, None, gx, None, *g_weights, *g_maps)


def apply(act: str, x: torch.Tensor, e: torch.Tensor, weights: Sequence[torch.Tensor],
          maps: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """f and −eᵀ(∂f/∂x)e (B,), differentiable w.r.t. x, the weights and the bias maps; with no
    gradient needed (the adjoint's forward solve) nothing is saved."""
    weights = [_cl(w) for w in weights]
    if torch.is_grad_enabled() and (x.requires_grad or any(
            p.requires_grad for p in (*weights, *maps))):
        return _ValueAndDivergence.apply(act, len(weights), x, e, *weights, *maps)
    f, ntr, _ = value_and_divergence(act, x, e, weights, maps)
    return f, ntr
