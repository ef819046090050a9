"""The image CNF's fused value-and-divergence kernel (forward-mode tangent, hand-written VJP)
against autograd: its backward (gradcheck), the value and the Hutchinson term eᵀ(∂f/∂x)e of every
field variant, and whole training steps of the multiscale model (loss, every gradient, NFE) with
the adjoint and with backpropagation through the solver, in float64."""

from __future__ import annotations

import pytest
import torch

from odeflows.models.odenvp import MultiscaleCNF
from odeflows.nn import fused_conv
from odeflows.nn.conv_layers import HyperConv2d
from odeflows.ode import Solver, count_nfe, reset_nfe

F64 = torch.float64
VARIANTS = [(False, "concat"), (False, "hyper"), (True, "concat"), (True, "hyper")]
VARIANT_IDS = ["ffjord-concat", "ffjord-hyper", "affjord-concat", "affjord-hyper"]


def _tiny(augmented: bool, layer: str, fused: bool, solver: Solver,
          nonlinearity: str = "softplus", **kw) -> MultiscaleCNF:
    """2×4×4 images, two scales (so squeeze and factor-out are exercised), hidden 8-8."""
    torch.manual_seed(0)
    model = MultiscaleCNF((2, 4, 4), solver=solver, eval_solver=solver, augmented=augmented,
                          layer=layer, hidden_dims=(8, 8), n_scales=2, aug_hidden=6, hyper_in=3,
                          alpha=0.05, nonlinearity=nonlinearity, fused=fused, **kw).double()
    with torch.no_grad():  # hypernets start flat in their input: give them a slope
        for m in model.modules():
            if isinstance(m, HyperConv2d):
                m.hypernet.weight.normal_(0.0, 0.05)
    return model


def _images(n: int = 3) -> torch.Tensor:
    return torch.rand(n, 2, 4, 4, dtype=F64, generator=torch.Generator().manual_seed(1))


def _step(model: MultiscaleCNF, x: torch.Tensor
          ) -> tuple[torch.Tensor, list[torch.Tensor | None], tuple[int, int]]:
    model.zero_grad(set_to_none=True)
    reset_nfe(model)
    loss = -model(x, torch.Generator().manual_seed(5))["logp"].mean()
    nfe = count_nfe(model)
    loss.backward()
    return loss.detach(), [p.grad for p in model.parameters()], (nfe, count_nfe(model) - nfe)


def _assert_same_step(ref: MultiscaleCNF, fused: MultiscaleCNF, x: torch.Tensor) -> None:
    loss_ref, grads_ref, nfe_ref = _step(ref, x)
    loss, grads, nfe = _step(fused, x)
    assert nfe == nfe_ref
    torch.testing.assert_close(loss, loss_ref, rtol=1e-11, atol=1e-11)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        assert (g is None) == (g_ref is None)
        if g is not None:
            torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-11)


# -- the kernel ------------------------------------------------------------------------------
def _random_net(c: int = 2, hidden: int = 5, hw: int = 4, spatial_maps: bool = True):
    torch.manual_seed(0)
    dims = [c, hidden, hidden, c]
    weights = [(torch.randn(o, i, 3, 3, dtype=F64) * 0.4).requires_grad_()
               for i, o in zip(dims[:-1], dims[1:], strict=True)]
    size = hw if spatial_maps else 1  # a conditioning map, or a plain bias (1, C, 1, 1)
    maps = [(torch.randn(1, o, size, size, dtype=F64) * 0.3).requires_grad_() for o in dims[1:]]
    x = torch.randn(3, c, hw, hw, dtype=F64, requires_grad=True)
    e = torch.randint(0, 2, x.shape, generator=torch.Generator().manual_seed(2)).to(F64) * 2 - 1
    return x, e, weights, maps


@pytest.mark.parametrize("act", fused_conv.ACTIVATIONS)
@pytest.mark.parametrize("spatial_maps", [True, False], ids=["bias_maps", "plain_bias"])
@pytest.mark.parametrize("c,hidden", [(2, 5), (6, 3)], ids=["wide", "narrow"])
def test_gradcheck(act, spatial_maps, c, hidden):
    # "narrow": hidden layers with fewer channels than the image (the primer's smallest rungs)
    x, e, weights, maps = _random_net(c=c, hidden=hidden, spatial_maps=spatial_maps)
    L = len(weights)
    assert torch.autograd.gradcheck(
        lambda x, *p: fused_conv._ValueAndDivergence.apply(act, L, x, e, *p),
        (x, *weights, *maps))


@pytest.mark.parametrize("act", fused_conv.ACTIVATIONS)
def test_value_and_divergence_match_autograd(act):
    """f is the plain network; −div is −(eᵀJ)·e from a vjp, as the straightforward path has it."""
    x, e, weights, maps = _random_net()
    f, ntr = fused_conv.apply(act, x, e, weights, maps)
    h = x
    for i, (w, beta) in enumerate(zip(weights, maps, strict=True)):
        h = torch.nn.functional.conv2d(h, w, padding=1) + beta
        if i < len(weights) - 1:
            h = torch.nn.functional.softplus(h) if act == "softplus" else torch.tanh(h)
    vjp = torch.autograd.grad(h, x, e, create_graph=True)[0]
    torch.testing.assert_close(f, h, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(ntr, -(vjp * e).flatten(1).sum(1), rtol=1e-12, atol=1e-12)


def test_no_graph_without_gradients():
    x, e, weights, maps = _random_net()
    with torch.no_grad():
        f, ntr = fused_conv.apply("softplus", x, e, weights, maps)
    assert f.grad_fn is None and ntr.grad_fn is None


# -- the model: fast path against the straightforward one --------------------------------------
@pytest.mark.parametrize("augmented,layer", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("solver", [Solver("dopri5", rtol=1e-6, atol=1e-6, adjoint=True),
                                    Solver("rk4", steps=3)], ids=["adjoint", "direct"])
def test_training_step_matches_autograd_path(augmented, layer, solver):
    x = _images()
    _assert_same_step(_tiny(augmented, layer, False, solver),
                      _tiny(augmented, layer, True, solver), x)


def test_tanh_field_matches_autograd_path():
    solver = Solver("dopri5", rtol=1e-6, atol=1e-6, adjoint=True)
    _assert_same_step(_tiny(False, "concat", False, solver, "tanh"),
                      _tiny(False, "concat", True, solver, "tanh"), _images())


@pytest.mark.parametrize("kw", [dict(divergence="exact"), dict(kinetic=0.1, jacobian=0.1),
                                dict(nonlinearity="elu")], ids=["exact", "rnode", "elu"])
def test_other_configurations_take_the_generic_path(kw):
    """Exact divergence, RNODE's regularisers (the vjp-based Jacobian estimate) and activations
    without a closed-form second derivative here: same numbers as with fused=False."""
    solver = Solver("rk4", steps=2)
    model = _tiny(False, "concat", True, solver, **kw)
    blocks = model.blocks()
    if "nonlinearity" in kw or kw.get("divergence") == "exact":
        assert not any(b.dynamics.fused for b in blocks)
    _assert_same_step(_tiny(False, "concat", False, solver, **kw), model, _images())


@pytest.mark.parametrize("augmented,layer", [VARIANTS[0], VARIANTS[3]],
                         ids=[VARIANT_IDS[0], VARIANT_IDS[3]])
def test_eval_log_prob_and_sampling_unchanged(augmented, layer):
    solver = Solver("dopri5", rtol=1e-7, atol=1e-7)
    ref, fused = (_tiny(augmented, layer, f, solver).eval() for f in (False, True))
    x = _images(4)
    with torch.no_grad():
        torch.testing.assert_close(fused(x, torch.Generator().manual_seed(3))["logp"],
                                   ref(x, torch.Generator().manual_seed(3))["logp"],
                                   rtol=1e-11, atol=1e-11)
    torch.testing.assert_close(fused.sample(3, torch.Generator().manual_seed(4)),
                               ref.sample(3, torch.Generator().manual_seed(4)), rtol=0, atol=0)


def test_float32_mnist_shape_step():
    """The benchmark's model (MNIST shape, 64-64-64, one block per scale) in float32, a few
    RK4 steps: loss and every gradient as the autograd path's to float tolerance."""
    solver = Solver("rk4", steps=2)
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    out = []
    for fused in (False, True):
        torch.manual_seed(0)
        model = MultiscaleCNF((1, 28, 28), solver=solver, eval_solver=solver, fused=fused)
        out.append(_step(model, x))
    (loss_ref, grads_ref, nfe_ref), (loss, grads, nfe) = out
    assert nfe == nfe_ref
    torch.testing.assert_close(loss, loss_ref, rtol=1e-5, atol=1e-5)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref, rtol=1e-3, atol=1e-4 * g_ref.abs().max().item())


def test_keep_freed_memory_is_a_no_op_or_succeeds():
    assert fused_conv.keep_freed_memory() in (True, False)
