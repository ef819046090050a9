"""Model sizes against the reference implementations' analytic counts, NFE counting, readouts."""

from __future__ import annotations

import pytest
import torch

from conftest import ROOT
from odeflows.config import ConfigError, resolve_run
from odeflows.models import build_model, num_parameters
from odeflows.ode import count_nfe, reset_nfe
from odeflows.registry import UnknownName
from odeflows.rundir import RunSpec


@pytest.mark.parametrize("experiment,dataset,model,dim,expected", [
    # ANODE reference code / ReScience replication (d=2, h=32, p=5, 5 ResNet blocks)
    ("anode_toy", "spheres2d", "resnet", 2, 813),
    ("anode_toy", "spheres2d", "node", 2, 1253),
    ("anode_toy", "spheres2d", "anode", 2, 1583),
    # torchdiffeq examples/cnf.py field (AFFJORD's FFJORD baseline) and AFFJORD's 2-D model
    ("affjord_toy", "hash", "ffjord", 2, 15904),
    ("affjord_toy", "hash", "affjord", 2, 28627),
])
def test_parameter_counts_match_reference(experiment, dataset, model, dim, expected):
    cfg = resolve_run(RunSpec("paper", experiment, dataset, model, 0), ROOT / "config")
    assert num_parameters(build_model(cfg, dim, 1)) == expected


def test_ffjord_train_toy_default_size(flow_cfg):
    """FFJORD train_toy.py: concatsquash 2-64-64-64-2 is 9,224 weights + the T scalar = 9,225."""
    cfg = flow_cfg("ffjord", model_options={"field": "concatsquash", "hidden_dims": [64, 64, 64],
                                        "learnable_T": True, "t_data": 0.0, "t_base": 0.5})
    assert num_parameters(build_model(cfg, 2)) == 9225


def test_nfe_is_counted_per_solve_forward_and_backward(reg_cfg):
    cfg = reg_cfg("node", solver={"method": "rk4", "steps": 5, "adjoint": True})
    m = build_model(cfg, 2, 1)
    x, y = torch.randn(8, 2), torch.randn(8, 1)
    reset_nfe(m)
    loss = torch.nn.functional.mse_loss(m(x), y)
    assert count_nfe(m) == 20
    loss.backward()
    assert count_nfe(m) == 40  # the adjoint's backward solve: 5 rk4 steps again


def test_anode_appends_zero_dimensions(reg_cfg):
    m = build_model(reg_cfg("anode", model_options={"augment_dim": 3}), 2, 1)
    traj = m.trajectory(torch.randn(4, 2), torch.tensor([0.0, 1.0]))
    assert traj.shape == (2, 4, 5)
    assert torch.all(traj[0, :, 2:] == 0)


def test_project_readout_makes_g1d_unrepresentable_for_node(reg_cfg):
    """A 1-D flow preserves order, so with the output read off the flow NODE cannot map
    −1 → 1 and 1 → −1 whatever its weights; with a linear readout it trivially could."""
    m = build_model(reg_cfg("node", model_options={"readout": "project"}), 1, 1)
    for _ in range(5):
        for p in m.parameters():
            torch.nn.init.normal_(p, std=1.0)
        out = m(torch.tensor([[-1.0], [1.0]]))
        assert out[0, 0] < out[1, 0]


def test_unknown_model_is_rejected(reg_cfg):
    with pytest.raises(ConfigError, match="'transformer'"):
        reg_cfg("transformer")
    cfg = {**reg_cfg("node"), "model": "transformr"}
    with pytest.raises(UnknownName, match="unknown model 'transformr'.*known: .*anode"):
        build_model(cfg, 2, 1)
    with pytest.raises(UnknownName, match="model 'resnet' has no images version"):
        build_model({**reg_cfg("resnet"), "model": "resnet"}, (1, 8, 8), 10)


@pytest.mark.parametrize("model,augmented", [("rnode", False), ("affjord_rnode", True)])
def test_rnode_variants_carry_regulariser_states(flow_cfg, model, augmented):
    m = build_model(flow_cfg(model), 2)
    assert (m.kinetic, m.jacobian) == (0.01, 0.01)
    assert bool(m.aug_dim) == augmented
    loss, stats = m.loss(torch.randn(16, 2))
    assert stats["kinetic"] > 0 and stats["jacobian"] > 0
    loss.backward()
