"""ANODE's conv NODE/ANODE: parameter counts against the reference code and the paper, field
layout (zero channels, time channel before every conv), NFE counting, adjoint gradients."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from odeflows.models import num_parameters
from odeflows.models.conv_classifiers import (
    PAPER_CONFIGS,
    ConvODENet,
    build_paper_model,
    parameter_count,
    parameter_rows,
    reference_solver,
)
from odeflows.ode import Solver, count_nfe, reset_nfe

DOPRI = Solver(method="dopri5", rtol=1e-3, atol=1e-3, max_num_steps=1000)


def small(augment_channels: int = 0, solver: Solver = DOPRI, eval_solver: Solver | None = None,
          **kw) -> ConvODENet:
    return ConvODENet((2, 6, 6), 3, solver=solver, eval_solver=eval_solver or solver,
                      filters=4, augment_channels=augment_channels, **kw)


@pytest.mark.parametrize("key", sorted(PAPER_CONFIGS))
def test_paper_config_counts(key):
    """instantiated == analytic == the reference code's count; the paper's printed count is the
    same formula under the recipe stated in the entry (no time channels; 10 classes for TIN)."""
    cfg = PAPER_CONFIGS[key]
    analytic = parameter_count(cfg["shape"], cfg["num_classes"], cfg["filters"],
                               cfg["augment_channels"])
    # meta device: shapes without memory, so the 6.6M-weight Tiny-ImageNet ANODE costs nothing
    with torch.device("meta"):
        model = build_paper_model(key)
    assert num_parameters(model) == analytic == cfg["code_count"]
    recipe = {"num_classes": cfg["num_classes"], "time_dependent": True, **cfg["paper_recipe"]}
    assert parameter_count(cfg["shape"], recipe["num_classes"], cfg["filters"],
                           cfg["augment_channels"], recipe["time_dependent"]) == cfg["paper_count"]


def test_paper_config_table_and_values():
    assert {(PAPER_CONFIGS[k]["filters"], PAPER_CONFIGS[k]["augment_channels"])
            for k in ("mnist/node", "mnist/anode")} == {(92, 0), (64, 5)}
    assert PAPER_CONFIGS["svhn/node"]["code_count"] == PAPER_CONFIGS["cifar10/node"]["code_count"]
    assert PAPER_CONFIGS["tiny_imagenet/node"]["filters"] == 164
    rows = parameter_rows()
    assert len(rows) == len(PAPER_CONFIGS)
    assert all(r["ours"] == r["code_count"] for r in rows)


def test_parameter_count_matches_instantiation_off_paper():
    for p, td in [(0, True), (3, True), (2, False)]:
        m = small(p, time_dependent=td)
        assert num_parameters(m) == parameter_count((2, 6, 6), 3, 4, p, td)


def test_forward_shape_and_dopri5_nfe():
    m = small(1)
    reset_nfe(m)
    out = m(torch.rand(5, 2, 6, 6))
    assert out.shape == (5, 3)
    assert count_nfe(m) > 0


def test_eval_solver_used_in_eval_mode():
    m = small(solver=DOPRI, eval_solver=Solver(method="rk4", steps=3))
    m.eval()
    reset_nfe(m)
    m(torch.rand(2, 2, 6, 6))
    assert count_nfe(m) == 12  # 3 rk4 steps × 4 stages: the eval solver, not dopri5


def test_wrong_image_shape_is_rejected():
    with pytest.raises(ValueError, match="expected input"):
        small()(torch.rand(2, 3, 6, 6))


@pytest.mark.parametrize("p", [0, 3])
def test_zero_channels_appended(p):
    m = small(p)
    assert m.func.func.conv1.conv.in_channels == 2 + p + 1  # + the time channel
    assert m.func.func.conv3.conv.out_channels == 2 + p
    assert m.readout.in_features == (2 + p) * 36
    x = torch.rand(4, 2, 6, 6)
    traj = m.trajectory(x, torch.tensor([0.0, 0.5, 1.0]))
    assert traj.shape == (3, 4, 2 + p, 6, 6)
    assert torch.equal(traj[0, :, :2], x)
    assert torch.all(traj[0, :, 2:] == 0)


def test_time_channel_before_every_conv():
    """Each of the three convs sees a first channel that is constant and equal to t."""
    m = small(2)
    convs = [m.func.func.conv1.conv, m.func.func.conv2.conv, m.func.func.conv3.conv]
    seen: list[tuple[int, torch.Tensor]] = []
    hooks = [c.register_forward_pre_hook(lambda mod, args, i=i: seen.append((i, args[0])))
             for i, c in enumerate(convs)]
    h = torch.rand(2, 4, 6, 6)
    m.func(torch.tensor(0.37), h)
    for hook in hooks:
        hook.remove()
    assert [i for i, _ in seen] == [0, 1, 2]
    for _, inp in seen:
        assert torch.allclose(inp[:, 0], torch.full_like(inp[:, 0], 0.37))
    # and the field really depends on t (a time-independent field would not)
    assert not torch.allclose(m.func(torch.tensor(0.0), h), m.func(torch.tensor(0.9), h))
    m_autonomous = small(2, time_dependent=False)
    assert m_autonomous.func.func.conv2.conv.in_channels == 4


def test_gradients_reach_all_parameters():
    m = small(2)
    F.cross_entropy(m(torch.rand(4, 2, 6, 6)), torch.tensor([0, 1, 2, 0])).backward()
    for name, prm in m.named_parameters():
        assert prm.grad is not None and prm.grad.abs().sum() > 0, name


def _grads(model: ConvODENet, adjoint: bool, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    m = copy.deepcopy(model)
    m.solver = Solver(method="rk4", steps=16, adjoint=adjoint)
    F.cross_entropy(m(x), y).backward()
    return torch.cat([p.grad.flatten() for p in m.parameters()])


@pytest.mark.parametrize("nonlinearity,rel_tol", [
    # smooth field: both gradients are the same rk4 discretisation up to O(h⁴) → near-exact
    ("softplus", 1e-8),
    # ReLU: the adjoint re-integrates h backwards and can cross kinks at slightly different
    # points than the forward pass, so agreement is only to ~1e-3 of the largest gradient
    ("relu", 5e-3),
])
def test_adjoint_and_direct_gradients_agree(nonlinearity, rel_tol):
    s = Solver(method="rk4", steps=16)
    model = ConvODENet((1, 6, 6), 3, solver=s, eval_solver=s, filters=4, augment_channels=2,
                       nonlinearity=nonlinearity).double()
    x, y = torch.rand(3, 1, 6, 6, dtype=torch.float64), torch.tensor([0, 1, 2])
    direct, adjoint = _grads(model, False, x, y), _grads(model, True, x, y)
    scale = direct.abs().max()
    assert (direct - adjoint).abs().max() <= rel_tol * scale


@pytest.mark.parametrize("key", ["mnist/node", "mnist/anode"])
def test_mnist_paper_config_trains_one_step_with_adjoint(key):
    """The parameter-matched MNIST models take an Adam step through the adjoint on CPU (rk4 with
    2 steps instead of dopri5 1e-3, only to keep the test fast)."""
    solver = Solver(method="rk4", steps=2, adjoint=True)
    model = build_paper_model(key, solver=solver)
    assert reference_solver().adjoint and reference_solver().method == "dopri5"
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    x, y = torch.rand(2, 1, 28, 28), torch.tensor([3, 7])
    reset_nfe(model)
    loss = F.cross_entropy(model(x), y)
    assert count_nfe(model) == 8
    opt.zero_grad()
    loss.backward()
    assert count_nfe(model) == 16  # the adjoint's backward solve: 2 rk4 steps again
    opt.step()
    assert torch.isfinite(loss)
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
