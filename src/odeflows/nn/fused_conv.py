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

__all__ = ["apply", "keep_freed_memory", "value_and_divergence"]

ACTIVATIONS = ("softplus", "tanh")
_CL = torch.channels_last


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
    """f(x) and −eᵀ(∂f/∂x)e per sample (B,), and what the VJP needs if ``save``: the input of
    every layer ([value; tangent], 2B) and act'(z) of every hidden layer."""
    B = x.shape[0]
    H = torch.empty((2 * B, *x.shape[1:]), dtype=x.dtype, device=x.device, memory_format=_CL)
    H[:B] = x
    H[B:] = e
    e = H[B:]  # channels-last, for the divergence at the end
    saved: list[torch.Tensor] = []
    last = len(weights) - 1
    for i, (w, beta) in enumerate(zip(weights, maps, strict=True)):
        Z = _conv(H, w)
        Z[:B] += beta
        if save:
            saved.append(H)
        if i == last:
            break
        z, u = Z[:B], Z[B:]
        H = torch.empty_like(Z)
        # h = act(z) and the tangent v = act'(z)·u, written straight into the next input
        if act == "softplus":
            d1 = torch.sigmoid(z)
            torch._C._nn.softplus(z, 1, 20, out=H[:B])  # F.softplus, without a copy
        else:
            torch.tanh(z, out=H[:B])
            d1 = torch.addcmul(torch.ones_like(z), H[:B], H[:B], value=-1)
        torch.mul(d1, u, out=H[B:])
        if save:
            saved.append(d1)
    f, je = Z[:B], Z[B:]
    ntr = torch.linalg.vecdot(je.flatten(1), e.flatten(1)).neg_()
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
        ctx.save_for_backward(*weights, *saved)
        return f, ntr

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, gf: torch.Tensor | None, gntr: torch.Tensor | None) -> tuple:
        act, L = ctx.act, ctx.n_layers
        weights, saved = ctx.saved_tensors[:L], ctx.saved_tensors[L:]
        Hs, d1s = saved[0::2], saved[1::2]  # layer inputs; act' of the hidden layers
        B = Hs[0].shape[0] // 2
        e = Hs[0][B:]
        last_in = Hs[-1]  # the output has the last weight's channels, whatever the widths
        gZ = torch.empty((last_in.shape[0], weights[-1].shape[0], *last_in.shape[2:]),
                         dtype=last_in.dtype, device=last_in.device, memory_format=_CL)
        if gf is None:
            gZ[:B].zero_()
        else:
            gZ[:B] = gf
        if gntr is None:
            gZ[B:].zero_()
        else:  # −div = −Σ e·(Je): ∂/∂(Je) = −e per unit of −div
            torch.mul(e, gntr.view(B, 1, 1, 1), out=gZ[B:]).neg_()
        g_weights: list[torch.Tensor | None] = [None] * L
        g_maps: list[torch.Tensor | None] = [None] * L
        gx = None
        for i in range(L - 1, -1, -1):
            g_maps[i] = _sum_to(gZ[:B], ctx.map_shapes[i])
            if i == 0:
                _, g_weights[0] = _conv_backward(gZ, Hs[0], weights[0], False, True)
                if ctx.needs_input_grad[2]:
                    gx, _ = _conv_backward(gZ[:B], Hs[0][:B], weights[0], True, False)
                break
            gH, g_weights[i] = _conv_backward(gZ, Hs[i], weights[i], True, True)
            d1, h, v = d1s[i - 1], Hs[i][:B], Hs[i][B:]
            gh, gv = gH[:B], gH[B:]
            # through h = act(z), v = act'(z)·u:  ∂/∂u = act'·ḡv,  ∂/∂z = act'·ḡh + act''·u·ḡv
            # with act''·u = v·(1 − act') (softplus) or −2h·v (tanh)
            curv = torch.addcmul(v, v, d1, value=-1) if act == "softplus" else h * v * -2
            gZ = torch.empty_like(gH)
            torch.mul(d1, gv, out=gZ[B:])
            torch.mul(d1, gh, out=gZ[:B]).addcmul_(curv, gv)
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


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


def keep_freed_memory(max_block_mib: int = 1024) -> bool:
    """Make glibc keep freed memory in the process instead of returning it to the system.

    Why: an image-CNF evaluation allocates and frees tens of MiB of activations; with glibc's
    defaults blocks that large are fresh ``mmap``s (and the heap top is trimmed), so every
    evaluation page-faults on first touch (about 2,200 minor faults per adjoint evaluation of
    the 28×28 block at batch 8, measured with ``getrusage``) — some 10–15% of a training step.
    Equivalent to ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` in the environment.
    The price: the resident size stays at its peak. Process-wide, so it is the caller's choice
    (the training entry point or the benchmark), not something a model does on import.
    Returns whether it took effect (False off glibc)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        size = max_block_mib * 2**20
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, size) and
                    libc.mallopt(_M_TRIM_THRESHOLD, 2 * size))
    except (OSError, AttributeError):
        return False
