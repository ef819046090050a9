"""Model registry: build any model of SPEC from a resolved run config (no file access here)."""

from __future__ import annotations

from typing import Any

from torch import nn

from odeflows.models.classifiers import ODENet, ResNetMLP
from odeflows.models.cnf import ToyCNF
from odeflows.nn.fields import AugmentedDynamics, AugmentedHyperField, MLPField, TimeHyperField
from odeflows.ode import Solver

CLASSIFIERS = ("resnet", "node", "anode")
FLOWS = ("ffjord", "rnode", "affjord", "affjord_rnode")


def build_model(cfg: dict[str, Any], dim: int, out_dim: int = 1) -> nn.Module:
    """Instantiate ``cfg['model']`` with the hyper-parameters in ``cfg['model_cfg']``."""
    name, m = cfg["model"], cfg["model_cfg"]
    solver = Solver.from_config(cfg["solver"])
    eval_solver = Solver.from_config(cfg.get("eval_solver") or cfg["solver"])
    if name == "resnet":
        return ResNetMLP(dim, out_dim, hidden=m.get("hidden", 32), blocks=m.get("blocks", 5),
                         nonlinearity=m.get("nonlinearity", "relu"),
                         readout=m.get("readout", "linear"),
                         final_activation=m.get("final_activation", True))
    if name in ("node", "anode"):
        return ODENet(dim, out_dim, solver=solver, eval_solver=eval_solver,
                      hidden=m.get("hidden", 32),
                      augment_dim=m.get("augment_dim", 0) if name == "anode" else 0,
                      time_dependent=m.get("time_dependent", True),
                      nonlinearity=m.get("nonlinearity", "relu"),
                      readout=m.get("readout", "linear"))
    if name in FLOWS:
        augmented = name.startswith("affjord")
        # RNODE §6: λ_K = λ_J = 0.01 unless the config says otherwise
        reg_default = 0.01 if name in ("rnode", "affjord_rnode") else 0.0
        flow_kw = dict(
            solver=solver, eval_solver=eval_solver,
            t_data=m.get("t_data", 0.0), t_base=m.get("t_base", 0.5),
            learnable_T=m.get("learnable_T", False), base_std=m.get("base_std", 1.0),
            divergence=m.get("divergence", "exact"), probe=m.get("probe", "gaussian"),
            analytic_trace=m.get("analytic_trace", True),
            kinetic=m.get("kinetic", reg_default), jacobian=m.get("jacobian", reg_default),
        )
        if augmented:
            aug_dim = m.get("aug_dim", 2)
            field = AugmentedHyperField(dim, aug_dim, m.get("width", 64), m.get("hyper_hidden", 32))
            aug = AugmentedDynamics(aug_dim, m.get("aug_hidden", 3))
            return ToyCNF(dim, field, aug_dynamics=aug, aug_dim=aug_dim, **flow_kw)
        kind = m.get("field", "concatsquash")
        if kind == "hyper_t":
            field = TimeHyperField(dim, m.get("width", 64), m.get("hyper_hidden", 32))
        else:
            field = MLPField(dim, m.get("hidden_dims", [64, 64, 64]), kind,
                             m.get("nonlinearity", "tanh"))
        return ToyCNF(dim, field, **flow_kw)
    raise ValueError(f"unknown model {name!r}; allowed values: {', '.join(CLASSIFIERS + FLOWS)}")


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
