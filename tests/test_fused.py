"""The fused concatsquash-tanh dynamics against autograd: its hand-written backward (gradcheck),
and whole training steps of the CNF (direct and adjoint, incl. the flat fused adjoint solve)
against the straightforward autograd trace with torchdiffeq (the ground truth)."""

from __future__ import annotations

import pytest
import torch
from torchdiffeq._impl.misc import _mixed_norm

from odeflows.models.cnf import ToyCNF
from odeflows.nn import divergence as div_
from odeflows.nn import fused as fused_
from odeflows.nn.fields import MLPField
from odeflows.nn.fused import FusedMLP, _FusedFn, supports
from odeflows.ode import Solver, count_nfe, reset_nfe

F64 = torch.float64


def _field(hidden=(5, 4, 6), dim=2, seed=0) -> MLPField:
    torch.manual_seed(seed)
    field = MLPField(dim, list(hidden)).to(F64)
    with torch.no_grad():  # default init gives near-constant gates; spread them out
        for p in field.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    return field


@pytest.mark.parametrize("reg", [None, (0.3, 0.7)])
def test_gradcheck_fused_function(reg):
    field = _field()
    fused = FusedMLP(field)
    x = torch.randn(7, 2, dtype=F64, requires_grad=True)
    t = torch.tensor(0.3, dtype=F64, requires_grad=True)
    n_out = 2 if reg is None else 4

    def fn(x, t, *params):
        fused.refresh()  # gradcheck perturbs parameters through .data
        return _FusedFn.apply(fused, reg, x, t, *params)[:n_out]

    assert torch.autograd.gradcheck(fn, (x, t, *fused.params()))


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_value_trace_and_frobenius_match_autograd(dim):
    field = _field(hidden=(8, 8), dim=dim)
    x = torch.randn(9, dim, dtype=F64, requires_grad=True)
    t = torch.tensor(0.7, dtype=F64)
    f, tr, frob = FusedMLP(field)(x, t)
    f_ref = field(x, t)
    tr_ref, frob_ref = div_.exact_autograd(f_ref, x, create_graph=False)
    torch.testing.assert_close(f, f_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(tr, tr_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(frob, frob_ref, rtol=1e-12, atol=1e-12)


def test_supports_only_concatsquash_tanh():
    assert supports(MLPField(2, [4]))
    assert not supports(MLPField(2, [4], nonlinearity="softplus"))
    assert not supports(MLPField(2, [4], layer="concat"))
    with pytest.raises(ValueError):
        FusedMLP(MLPField(2, [4], layer="concat"))


def _cnf(fused: bool, solver: Solver, reg: float = 0.0, learnable_T: bool = False) -> ToyCNF:
    # fused=False with analytic_trace=False is the autograd ground truth
    model = ToyCNF(2, _field(hidden=(16, 16, 16)), solver=solver, eval_solver=solver,
                   t_data=0.0, t_base=0.5, analytic_trace=fused, fused=fused,
                   kinetic=reg, jacobian=reg, learnable_T=learnable_T).to(F64)
    assert (model.dynamics.fused is not None) == fused
    return model


def _step(model: ToyCNF, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    loss, _ = model.loss(x)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


SOLVERS = {
    "rk4": dict(method="rk4", steps=6),
    "dopri5": dict(method="dopri5", rtol=1e-6, atol=1e-6),
}


@pytest.mark.parametrize("adjoint", [False, True])
@pytest.mark.parametrize("method", list(SOLVERS))
@pytest.mark.parametrize("reg", [0.0, 0.05])
def test_training_step_matches_autograd_ground_truth(method, adjoint, reg):
    solver = Solver(**SOLVERS[method], adjoint=adjoint)
    x = torch.randn(24, 2, dtype=F64) * 1.5
    loss_ref, grads_ref = _step(_cnf(False, solver, reg), x)
    loss, grads = _step(_cnf(True, solver, reg), x)
    torch.testing.assert_close(loss, loss_ref, rtol=1e-10, atol=1e-10)
    assert len(grads) == len(grads_ref)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref, rtol=1e-8, atol=1e-10)


def test_learnable_end_time_gradient_matches_ground_truth():
    solver = Solver("rk4", steps=6)
    x = torch.randn(16, 2, dtype=F64)
    ref, fused = _cnf(False, solver, learnable_T=True), _cnf(True, solver, learnable_T=True)
    _step(ref, x)
    _step(fused, x)
    torch.testing.assert_close(fused.sqrt_T.grad, ref.sqrt_T.grad, rtol=1e-10, atol=1e-12)


def test_eval_mode_log_prob_and_sampling_match():
    solver = Solver("dopri5", rtol=1e-7, atol=1e-7)
    ref, fused = _cnf(False, solver).eval(), _cnf(True, solver).eval()
    x = torch.randn(32, 2, dtype=F64)
    with torch.no_grad():
        torch.testing.assert_close(fused.log_prob(x), ref.log_prob(x), rtol=1e-10, atol=1e-10)
    gen_a, gen_b = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    torch.testing.assert_close(fused.sample(16, gen_a), ref.sample(16, gen_b), rtol=0, atol=0)


def test_parameter_updates_are_seen():
    """The packed gate parameters are rebuilt after optimizer steps and .data writes."""
    solver = Solver("rk4", steps=4)
    ref, fused = _cnf(False, solver), _cnf(True, solver)
    x = torch.randn(16, 2, dtype=F64)
    opts = [torch.optim.Adam(m.parameters(), lr=0.05) for m in (ref, fused)]
    for _ in range(3):
        for m, opt in zip((ref, fused), opts, strict=True):
            opt.zero_grad()
            m.loss(x)[0].backward()
            opt.step()
    torch.testing.assert_close(fused.loss(x)[0], ref.loss(x)[0], rtol=1e-10, atol=1e-10)
    for m in (ref, fused):
        for p in m.parameters():
            p.data.mul_(1.1)  # invisible to version counters; each solve re-reads parameters
    torch.testing.assert_close(fused.loss(x)[0], ref.loss(x)[0], rtol=1e-10, atol=1e-10)


def test_float32_train_toy_configuration():
    """The reference train_toy model in float32: same loss and gradients to float tolerance."""
    solver = Solver("dopri5", rtol=1e-5, atol=1e-5, adjoint=True)
    out = []
    for fused in (False, True):
        torch.manual_seed(0)
        model = ToyCNF(2, MLPField(2, [64, 64, 64]), solver=solver, eval_solver=solver,
                       analytic_trace=fused, fused=fused)
        out.append(_step(model, torch.randn(100, 2, generator=torch.Generator().manual_seed(0))))
    (loss_ref, grads_ref), (loss, grads) = out
    torch.testing.assert_close(loss, loss_ref, rtol=1e-5, atol=1e-5)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref, rtol=1e-3, atol=1e-5)


def test_fused_adjoint_is_used_and_takes_the_same_steps():
    """The flat adjoint solve reproduces torchdiffeq's odeint_adjoint: same NFE, same gradients."""
    solver = Solver("dopri5", rtol=1e-6, atol=1e-6, adjoint=True)
    x = torch.randn(24, 2, dtype=F64) * 1.5
    counts = []
    for fused in (False, True):
        model = _cnf(fused, solver)
        if fused:
            assert fused_.adjoint_applies(model.dynamics.fused, model.func, model._times())
        reset_nfe(model)
        loss, _ = model.loss(x)
        n_forward = count_nfe(model)
        loss.backward()
        counts.append((n_forward, count_nfe(model) - n_forward))
    assert counts[0] == counts[1]


def test_segment_norm_is_torchdiffeqs_mixed_norm():
    parts = [torch.randn(n, dtype=F64) * s for n, s in ((1, 3.0), (40, 0.1), (7, 2.0), (3, 1.0))]
    norm = fused_._SegmentNorm([p.numel() for p in parts], parts[0])
    torch.testing.assert_close(norm(torch.cat(parts)), _mixed_norm(tuple(parts)))


def test_adjoint_falls_back_where_it_does_not_apply():
    """Learnt end time (times need a gradient) and frozen parameters: torchdiffeq's adjoint with
    the fused Function as its dynamics, still matching."""
    adjoint = Solver("dopri5", rtol=1e-8, atol=1e-8, adjoint=True)
    direct = Solver("dopri5", rtol=1e-8, atol=1e-8)
    x = torch.randn(16, 2, dtype=F64)
    learnt = _cnf(True, adjoint, learnable_T=True)
    assert not fused_.adjoint_applies(learnt.dynamics.fused, learnt.func, learnt._times())
    loss_a, grads_a = _step(learnt, x)
    loss_d, grads_d = _step(_cnf(True, direct, learnable_T=True), x)
    torch.testing.assert_close(loss_a, loss_d, rtol=1e-10, atol=1e-10)
    for g_a, g_d in zip(grads_a, grads_d, strict=True):
        torch.testing.assert_close(g_a, g_d, rtol=1e-4, atol=1e-6)  # adjoint vs direct: solver tol

    models = [_cnf(fused, adjoint) for fused in (False, True)]
    for m in models:
        m.dynamics.field.layers[1].hyper_gate.weight.requires_grad_(False)
    assert not fused_.adjoint_applies(models[1].dynamics.fused, models[1].func, models[1]._times())
    results = []
    for m in models:
        m.loss(x)[0].backward()
        results.append([p.grad for p in m.parameters()])
    for g_ref, g in zip(*results, strict=True):
        assert (g_ref is None) == (g is None)
        if g is not None:
            torch.testing.assert_close(g, g_ref, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("method", list(SOLVERS))
def test_reversed_time_adjoint_matches_ground_truth(method):
    """Data at t = 0.5, base at 0 (as AFFJORD/RNODE configs): torchdiffeq negates time."""
    solver = Solver(**SOLVERS[method], adjoint=True)
    x = torch.randn(16, 2, dtype=F64)
    out = []
    for fused in (False, True):
        model = ToyCNF(2, _field(hidden=(16, 16)), solver=solver, eval_solver=solver, t_data=0.5,
                       t_base=0.0, analytic_trace=fused, fused=fused, kinetic=0.1,
                       jacobian=0.1).to(F64)
        out.append(_step(model, x))
    (loss_ref, grads_ref), (loss, grads) = out
    torch.testing.assert_close(loss, loss_ref, rtol=1e-10, atol=1e-10)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref, rtol=1e-8, atol=1e-10)
