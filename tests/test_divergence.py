"""Divergence, Jacobian and regulariser maths against independent computations."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import finite_difference_jacobian
from odeflows.nn import divergence as div_
from odeflows.nn.fields import AugmentedHyperField, MLPField, TimeHyperField


def _fields():
    torch.manual_seed(1)
    t = torch.tensor(0.3, dtype=torch.float64)
    a = torch.randn(1, 2, dtype=torch.float64)
    return [
        ("mlp_concatsquash", MLPField(2, [16, 16], "concatsquash", "tanh").double(), t),
        ("mlp_concat", MLPField(3, [8], "concat", "softplus").double(), t),
        ("time_hyper", TimeHyperField(2, 16, 8).double(), t),
        ("aug_hyper", AugmentedHyperField(2, 2, 16, 8).double(), a),
    ]


def _ids(v):
    return v if isinstance(v, str) else ""


@pytest.mark.parametrize("name,field,cond", _fields(), ids=_ids)
def test_exact_trace_matches_finite_differences(name, field, cond):
    dim = 3 if name == "mlp_concat" else 2
    x = torch.randn(5, dim, dtype=torch.float64)
    jac_fd = finite_difference_jacobian(lambda z: field(z, cond), x)
    xg = x.clone().requires_grad_(True)
    div, frob = div_.exact_autograd(field(xg, cond), xg, create_graph=False)
    torch.testing.assert_close(div, jac_fd.diagonal(dim1=1, dim2=2).sum(1), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(frob, jac_fd.pow(2).sum((1, 2)), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name,field,cond", [f for f in _fields() if hasattr(f[1], "jacobian")],
                         ids=_ids)
def test_closed_form_jacobian_matches_autograd(name, field, cond):
    dim = 3 if name == "mlp_concat" else 2
    x = torch.randn(7, dim, dtype=torch.float64, requires_grad=True)
    f_fast, jac = field.jacobian(x, cond)
    f = field(x, cond)
    torch.testing.assert_close(f_fast, f)
    f_tr, tr = field.trace(x, cond)
    torch.testing.assert_close(f_tr, f)
    torch.testing.assert_close(tr, jac.diagonal(dim1=1, dim2=2).sum(1))
    rows = [torch.autograd.grad(f[:, i].sum(), x, retain_graph=True)[0] for i in range(dim)]
    torch.testing.assert_close(jac, torch.stack(rows, 1))
    # gradients of the fast divergence w.r.t. parameters equal those of the autograd trace
    d_fast = div_.from_jacobian(jac)[0].sum() + tr.sum()
    d_ref = 2 * div_.exact_autograd(f, x, create_graph=True)[0].sum()
    params = [p for p in field.parameters()]
    # biases of the last layer do not enter the divergence: their gradient is "unused" (None)
    g_fast = torch.autograd.grad(d_fast, params, retain_graph=True, allow_unused=True)
    g_ref = torch.autograd.grad(d_ref, params, allow_unused=True)
    for p, a, b in zip(params, g_fast, g_ref, strict=True):
        zero = torch.zeros_like(p)
        torch.testing.assert_close(zero if a is None else a, zero if b is None else b)


@pytest.mark.parametrize("probe", ["gaussian", "rademacher"])
def test_hutchinson_mean_matches_exact_trace(probe):
    torch.manual_seed(0)
    field = MLPField(4, [32], "concatsquash", "tanh").double()
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    f = field(x, torch.tensor(0.2, dtype=torch.float64))
    exact, frob = div_.exact_autograd(f, x, create_graph=False)
    gen = torch.Generator().manual_seed(0)
    ests = torch.stack([torch.stack(div_.hutchinson(f, x, div_.sample_probe(x, probe, gen), False))
                        for _ in range(4000)])  # (K, 2, B)
    mean, se = ests.mean(0), ests.std(0) / math.sqrt(len(ests))
    assert torch.all((mean[0] - exact).abs() < 4 * se[0] + 1e-12)
    assert torch.all((mean[1] - frob).abs() < 4 * se[1] + 1e-12)
    # and the estimator is not trivially exact: single estimates do vary
    assert float(ests[:, 0].std(0).min()) > 0


def test_probe_kinds():
    x = torch.zeros(1000, 3)
    r = div_.sample_probe(x, "rademacher", torch.Generator().manual_seed(0))
    assert set(r.unique().tolist()) == {-1.0, 1.0}
    g = div_.sample_probe(x, "gaussian", torch.Generator().manual_seed(0))
    assert abs(float(g.std()) - 1) < 0.05
    with pytest.raises(ValueError, match="rademacher"):
        div_.sample_probe(x, "uniform")
