"""CNF log-densities, regularisers and sampling against analytic and brute-force answers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from odeflows.models import build_model
from odeflows.models.cnf import ToyCNF
from odeflows.ode import Solver, count_nfe, reset_nfe

TIGHT = Solver("dopri5", rtol=1e-9, atol=1e-9)


class LinearField(nn.Module):
    """f(x) = A x (time-independent): the flow is x(t) = exp(tA) x0."""

    def __init__(self, A: torch.Tensor):
        super().__init__()
        self.A = nn.Parameter(A)

    def forward(self, x, cond):
        return x @ self.A.T


def _linear_cnf(A, T=0.7, **kw):
    return ToyCNF(A.shape[0], LinearField(A), solver=TIGHT, eval_solver=TIGHT, t_data=0.0,
                  t_base=T, **kw).double()


@pytest.mark.parametrize("divergence", ["exact", "hutchinson"])
def test_linear_flow_log_density_is_analytic(divergence):
    torch.manual_seed(0)
    A = torch.randn(3, 3, dtype=torch.float64) * 0.5
    T = 0.7
    model = _linear_cnf(A, T, divergence=divergence)
    x = torch.randn(6, 3, dtype=torch.float64)
    out = model(x)
    z = x @ torch.linalg.matrix_exp(T * A).T
    base = torch.distributions.MultivariateNormal(torch.zeros(3, dtype=torch.float64),
                                                  torch.eye(3, dtype=torch.float64))
    expected = base.log_prob(z) + T * torch.trace(A)
    torch.testing.assert_close(out["z"], z, atol=1e-7, rtol=1e-7)
    if divergence == "exact":
        torch.testing.assert_close(out["logp"], expected, atol=1e-7, rtol=1e-7)
    else:  # one probe per solve: unbiased, so the mean over solves converges
        gen = torch.Generator().manual_seed(0)
        model.solver = Solver("dopri5", rtol=1e-6, atol=1e-6)
        est = torch.stack([model(x, gen)["logp"] for _ in range(200)])
        se = est.std(0) / math.sqrt(len(est))
        assert torch.all((est.mean(0) - expected).abs() < 4 * se + 1e-9)


def test_regularisers_match_closed_form_integrals():
    """f = a x: ∫‖f‖²/(2D) dt = a²‖x0‖²(e^{2aT} − 1)/(2a)/(2D) and ∫‖J‖²_F/D dt = a² T."""
    a, T, D = 0.6, 0.8, 2
    model = _linear_cnf(a * torch.eye(D, dtype=torch.float64), T, kinetic=1.0, jacobian=1.0)
    x = torch.tensor([[1.0, -2.0], [0.5, 0.0]], dtype=torch.float64)
    out = model(x)
    ke = a**2 * x.pow(2).sum(1) * (math.exp(2 * a * T) - 1) / (2 * a) / (2 * D)
    torch.testing.assert_close(out["kinetic"], ke, atol=1e-7, rtol=1e-7)
    torch.testing.assert_close(out["jacobian"], torch.full((2,), a**2 * T, dtype=torch.float64))
    # a reversed time interval (data at t=T, base at 0, as AFFJORD) gives the same positive values
    rev = ToyCNF(D, LinearField(-a * torch.eye(D, dtype=torch.float64)), solver=TIGHT,
                 eval_solver=TIGHT, t_data=T, t_base=0.0, kinetic=1.0, jacobian=1.0).double()
    out_r = rev(x)
    torch.testing.assert_close(out_r["kinetic"], ke, atol=1e-7, rtol=1e-7)
    torch.testing.assert_close(out_r["logp"], out["logp"], atol=1e-7, rtol=1e-7)


def test_regularised_loss_adds_weighted_terms():
    model = _linear_cnf(0.3 * torch.eye(2, dtype=torch.float64), 0.5, kinetic=0.01, jacobian=0.02)
    x = torch.randn(8, 2, dtype=torch.float64)
    loss, stats = model.loss(x)
    expected = stats["nll"] + 0.01 * stats["kinetic"] + 0.02 * stats["jacobian"]
    assert loss.item() == pytest.approx(expected, rel=1e-9)


def _toy_model(flow_cfg, model, tol=1e-6):
    cfg = flow_cfg(model, solver={"method": "dopri5", "rtol": tol, "atol": tol, "steps": None},
                   model_options={"base_std": 1.0, "t_data": 1.0, "t_base": 0.0})
    cfg["eval_solver"] = cfg["solver"]
    torch.manual_seed(3)
    m = build_model(cfg, 2).double()
    with torch.no_grad():  # make the random flow far from the identity
        for p in m.parameters():
            p.mul_(3.0)
    return m.eval()


@pytest.mark.parametrize("model", ["ffjord", "affjord"])
def test_density_integrates_to_one(flow_cfg, model):
    m = _toy_model(flow_cfg, model)
    axis = torch.linspace(-6.5, 6.5, 105, dtype=torch.float64)
    xx, yy = torch.meshgrid(axis, axis, indexing="xy")
    grid = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    logp = m.log_prob(grid)
    mass = logp.exp().sum().item() * float(axis[1] - axis[0]) ** 2
    assert mass == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("model", ["ffjord", "affjord"])
def test_log_det_matches_brute_force_jacobian_of_the_map(flow_cfg, model):
    """log p(x) − log p_base(z) must equal log|det ∂z/∂x| of the integrated map."""
    m = _toy_model(flow_cfg, model, tol=1e-9)
    x = torch.randn(4, 2, dtype=torch.float64)
    out = m(x)
    log_det = out["logp"] - m.base_log_prob(out["z"])

    def to_base(points):
        return m(points)["z"]

    for i in range(len(x)):
        jac = torch.autograd.functional.jacobian(lambda p: to_base(p.unsqueeze(0))[0], x[i])
        torch.testing.assert_close(log_det[i], torch.linalg.slogdet(jac)[1], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("model", ["ffjord", "affjord"])
def test_sample_round_trip(flow_cfg, model):
    m = _toy_model(flow_cfg, model, tol=1e-9)
    x = torch.randn(16, 2, dtype=torch.float64)
    z = m(x)["z"]
    torch.testing.assert_close(m.transform_to_data(z), x, atol=1e-5, rtol=1e-5)
    samples = m.sample(32, torch.Generator().manual_seed(0))
    assert samples.shape == (32, 2) and torch.isfinite(samples).all()


def test_rk4_nfe_per_solve(flow_cfg):
    cfg = flow_cfg("ffjord", solver={"method": "rk4", "steps": 40})
    m = build_model(cfg, 2)
    x = torch.randn(8, 2)
    for _ in range(2):  # counted per solve, not accumulated across solves
        reset_nfe(m)
        loss, _ = m.loss(x)
        assert count_nfe(m) == 160  # AFFJORD §4.1: "40 time steps (160 function evaluations)"
        loss.backward()
        assert count_nfe(m) == 160  # direct backprop: no extra evaluations


def test_adjoint_gradients_match_direct(flow_cfg):
    grads = []
    for adjoint in (False, True):
        cfg = flow_cfg("affjord", solver={"method": "dopri5", "rtol": 1e-8, "atol": 1e-8,
                                          "steps": None, "adjoint": adjoint})
        torch.manual_seed(0)
        m = build_model(cfg, 2).double()
        loss, _ = m.loss(torch.randn(16, 2, dtype=torch.float64))
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters()]))
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-4)


def test_learnable_end_time_receives_gradient(flow_cfg):
    cfg = flow_cfg("ffjord", model_options={"t_data": 0.0, "t_base": 0.5, "learnable_T": True})
    m = build_model(cfg, 2)
    loss, _ = m.loss(torch.randn(8, 2) * 2)
    loss.backward()
    assert m.sqrt_T.grad is not None and float(m.sqrt_T.grad.abs()) > 0
    assert float(m.end_time.detach()) == pytest.approx(0.5)
