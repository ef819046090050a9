"""The fused RK4 solve of the hypernet CNFs (AFFJORD's toy model and its FFJORD baseline) against
the straightforward path (the fields' autograd ops through torchdiffeq's RK4, the ground truth):
its hand-written backwards (gradcheck), whole training steps (loss, every gradient, NFE), the
grid, the regularisers, 100 Adam steps, evaluation and sampling."""

from __future__ import annotations

import pytest
import torch

from odeflows.models.cnf import ToyCNF
from odeflows.nn import fused_hyper
from odeflows.nn.fields import AugmentedDynamics, AugmentedHyperField, MLPField, TimeHyperField
from odeflows.ode import Solver, count_nfe, reset_nfe

F64 = torch.float64


def _model(augmented: bool, fused: bool, *, reg: float = 0.0, solver: Solver | None = None,
           t_data: float = 10.0, t_base: float = 0.0, width: int = 16, hidden: int = 8,
           dtype: torch.dtype = F64, seed: int = 0, **kw) -> ToyCNF:
    torch.manual_seed(seed)
    if augmented:
        field = AugmentedHyperField(2, 2, width, hidden)
        extra = dict(aug_dynamics=AugmentedDynamics(2, 3), aug_dim=2)
    else:
        field, extra = TimeHyperField(2, width, hidden), {}
    with torch.no_grad():  # spread the weights so that every term matters
        for p in field.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    solver = solver or Solver("rk4", steps=5)
    model = ToyCNF(2, field, solver=solver, eval_solver=solver, t_data=t_data, t_base=t_base,
                   base_std=0.5, kinetic=reg, jacobian=reg, fused=fused, **extra, **kw).to(dtype)
    assert (model.dynamics.fused_rk4 is not None) == fused
    return model


def _step(model: ToyCNF, x: torch.Tensor
          ) -> tuple[torch.Tensor, list[torch.Tensor], tuple[int, int]]:
    """Loss, every gradient, and the (forward, backward) NFE of one training step."""
    model.zero_grad(set_to_none=True)
    reset_nfe(model)
    loss, _ = model.loss(x)
    nfe = count_nfe(model)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()], (
        nfe, count_nfe(model) - nfe)


def _assert_same_step(ref: ToyCNF, fused: ToyCNF, x: torch.Tensor, rtol: float = 1e-10,
                      atol: float = 1e-12) -> None:
    loss_ref, grads_ref, nfe_ref = _step(ref, x)
    loss, grads, nfe = _step(fused, x)
    assert nfe == nfe_ref
    torch.testing.assert_close(loss, loss_ref, rtol=rtol, atol=atol)
    assert len(grads) == len(grads_ref)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref, rtol=rtol * 100, atol=atol * 100)


# -- the kernels' hand-written backwards -------------------------------------------------------
@pytest.mark.parametrize("reg", [None, (0.3, -0.7)])
def test_gradcheck_rk4_solve(reg):
    """Arbitrary weights (also in the rows that the model keeps zero): the backward is the
    derivative of the forward as a function of all its inputs."""
    torch.manual_seed(0)
    B, W, D, steps = 3, 4, 2, 2
    S, R = 4 * steps, D + 2 + (D * D if reg else 0)
    x0 = torch.randn(B, D, dtype=F64, requires_grad=True)
    e0 = torch.randn(B, 3 if reg else 1, dtype=F64, requires_grad=True)
    A = (torch.randn(S, W, D + 1, dtype=F64) * 0.5).requires_grad_()
    C = (torch.randn(S, R, 2 * W + 1, dtype=F64) * 0.5).requires_grad_()
    cfg = fused_hyper._Config([0.3, -0.2], reg)
    assert torch.autograd.gradcheck(lambda *a: fused_hyper._HyperRK4.apply(cfg, *a),
                                    (x0, e0, A, C))


def test_gradcheck_augmented_trajectory():
    torch.manual_seed(0)
    g = AugmentedDynamics(2, 3).double()
    a0 = torch.randn(1, 2, dtype=F64, requires_grad=True)
    params = [p.detach().clone().requires_grad_() for p in
              (g.net[0].weight, g.net[0].bias, g.net[2].weight, g.net[2].bias)]
    with torch.no_grad():  # both branches of the ELU
        params[1].copy_(torch.tensor([1.0, -1.0, 0.2]))
    hs = [0.4, 0.4, -0.25]
    assert torch.autograd.gradcheck(
        lambda *a: fused_hyper._AugmentedTrajectory.apply(hs, *a), (a0, *params))


def test_augmented_trajectory_matches_torch_rk4():
    """The Python-float RK4 of g against torchdiffeq's, stage inputs included."""
    from torchdiffeq import odeint

    torch.manual_seed(1)
    g = AugmentedDynamics(2, 3).double()
    a0 = torch.randn(1, 2, dtype=F64)
    stage_inputs: list[torch.Tensor] = []

    def rhs(t, a):
        stage_inputs.append(a.detach().clone())
        return g(a)

    end = odeint(rhs, a0, torch.tensor([2.0, 0.0]), method="rk4",
                 options={"step_size": 0.5})[-1]
    stages, a_end = fused_hyper.augmented_stages(g, a0, [-0.5] * 4)
    torch.testing.assert_close(a_end, end, rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(stages, torch.cat(stage_inputs), rtol=1e-13, atol=1e-14)


def test_time_grid_and_stage_times_are_torchdiffeqs():
    from torchdiffeq import odeint

    for times, solver in [(torch.tensor([10.0, 0.0]), Solver("rk4", steps=7)),
                          (torch.tensor([0.0, 1.0]), Solver("rk4", step_size=0.3)),
                          (torch.tensor([0.5, 0.0]), Solver("rk4"))]:
        seen: list[float] = []

        def rhs(t, y, seen=seen):
            seen.append(float(t))
            return torch.zeros_like(y)

        odeint(rhs, torch.zeros(1), times, method="rk4",
               options=solver.options(float(times[0]), float(times[1])) or None)
        reversed_ = bool(times[0] > times[1])
        grid = fused_hyper.time_grid(times, solver)
        assert fused_hyper.stage_times(grid, reversed_).reshape(-1).tolist() == seen


def test_supports_and_applies():
    assert fused_hyper.supports(TimeHyperField(2), None)
    assert fused_hyper.supports(AugmentedHyperField(2, 2), AugmentedDynamics(2))
    assert not fused_hyper.supports(AugmentedHyperField(2, 2), None)
    assert not fused_hyper.supports(MLPField(2, [4]), None)
    t = torch.tensor([1.0, 0.0])
    assert fused_hyper.applies(Solver("rk4", steps=4), t)
    assert not fused_hyper.applies(Solver("rk4", steps=4, adjoint=True), t)
    assert not fused_hyper.applies(Solver("dopri5"), t)
    assert not fused_hyper.applies(Solver("rk4", steps=4), t.clone().requires_grad_())


# -- whole training steps against the straightforward path -------------------------------------
@pytest.mark.parametrize("augmented", [False, True], ids=["ffjord_hyper", "affjord"])
@pytest.mark.parametrize("reg", [0.0, 0.05], ids=["plain", "rnode"])
def test_training_step_matches_autograd_path(augmented, reg):
    x = torch.randn(24, 2, dtype=F64)
    _assert_same_step(_model(augmented, False, reg=reg), _model(augmented, True, reg=reg), x)


@pytest.mark.parametrize("augmented", [False, True], ids=["ffjord_hyper", "affjord"])
@pytest.mark.parametrize("times,solver", [
    ((0.0, 1.0), Solver("rk4", step_size=0.3)),  # forward in time, last step clipped
    ((0.5, 0.0), Solver("rk4")),  # no step option: one step over the interval
], ids=["forward_clipped", "single_step"])
def test_grids_match_autograd_path(augmented, times, solver):
    x = torch.randn(10, 2, dtype=F64)
    kw = dict(solver=solver, t_data=times[0], t_base=times[1], reg=0.1)
    _assert_same_step(_model(augmented, False, **kw), _model(augmented, True, **kw), x)


@pytest.mark.parametrize("augmented", [False, True], ids=["ffjord_hyper", "affjord"])
def test_regularisers_match(augmented):
    x = torch.randn(16, 2, dtype=F64)
    out = [_model(augmented, fused, reg=0.2)(x) for fused in (False, True)]
    for key in ("logp", "z", "kinetic", "jacobian"):
        torch.testing.assert_close(out[1][key], out[0][key], rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("augmented", [False, True], ids=["ffjord_hyper", "affjord"])
def test_hundred_adam_steps_stay_together(augmented):
    models = [_model(augmented, fused, reg=0.01) for fused in (False, True)]
    opts = [torch.optim.Adam(m.parameters(), lr=1e-2) for m in models]
    gen = torch.Generator().manual_seed(0)
    for _ in range(100):
        x = torch.randn(16, 2, dtype=F64, generator=gen)
        losses = []
        for m, opt in zip(models, opts, strict=True):
            opt.zero_grad()
            loss, _ = m.loss(x)
            loss.backward()
            opt.step()
            losses.append(loss.detach())
        torch.testing.assert_close(losses[1], losses[0], rtol=1e-8, atol=1e-9)
    for p_ref, p in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(p, p_ref, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("augmented", [False, True], ids=["ffjord_hyper", "affjord"])
def test_float32_paper_setting(augmented):
    """Width 64, hypernet 32, batch 512, RK4 40 steps from t = 10 to 0, in float32."""
    x = torch.randn(512, 2, generator=torch.Generator().manual_seed(0))
    kw = dict(solver=Solver("rk4", steps=40), width=64, hidden=32, dtype=torch.float32)
    _assert_same_step(_model(augmented, False, **kw), _model(augmented, True, **kw), x,
                      rtol=2e-5, atol=1e-5)


@pytest.mark.parametrize("augmented", [False, True], ids=["ffjord_hyper", "affjord"])
def test_eval_log_prob_and_sampling_unchanged(augmented):
    ref, fused = (_model(augmented, f).eval() for f in (False, True))
    x = torch.randn(32, 2, dtype=F64)
    with torch.no_grad():
        torch.testing.assert_close(fused.log_prob(x), ref.log_prob(x), rtol=1e-11, atol=1e-12)
    gens = [torch.Generator().manual_seed(3) for _ in range(2)]
    torch.testing.assert_close(fused.sample(16, gens[1]), ref.sample(16, gens[0]), rtol=0,
                               atol=0)


def test_gradient_with_respect_to_the_data():
    """x itself requiring a gradient (e.g. a score or an attack): through the fused solve."""
    x = torch.randn(8, 2, dtype=F64)
    grads = []
    for fused in (False, True):
        xx = x.clone().requires_grad_()
        _model(True, fused, reg=0.1).log_prob(xx).sum().backward()
        grads.append(xx.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("solver", [Solver("dopri5", rtol=1e-7, atol=1e-7),
                                    Solver("rk4", steps=5, adjoint=True)], ids=["dopri5",
                                                                                "rk4_adjoint"])
def test_other_solvers_take_the_generic_path(solver):
    model = _model(True, True, solver=solver)
    assert not fused_hyper.applies(solver, model._times())
    _assert_same_step(_model(True, False, solver=solver), model, torch.randn(8, 2, dtype=F64))


def test_learnable_end_time_takes_the_generic_path():
    solver = Solver("rk4", steps=4)
    models = [_model(False, f, solver=solver, t_data=0.0, t_base=0.7, learnable_T=True)
              for f in (False, True)]
    assert not fused_hyper.applies(solver, models[1]._times())
    _assert_same_step(models[0], models[1], torch.randn(8, 2, dtype=F64))
