"""Model registry: build any model of SPEC from a resolved run config (no file access here)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from odeflows.models.classifiers import ODENet, ResNetMLP
from odeflows.models.cnf import ToyCNF
from odeflows.nn.fields import AugmentedDynamics, AugmentedHyperField, MLPField, TimeHyperField
from odeflows.ode import Solver

CLASSIFIERS = ("resnet", "node", "anode")
FLOWS = ("ffjord", "rnode", "affjord", "affjord_rnode")


def build_model(cfg: dict[str, Any], shape: int | Sequence[int], out_dim: int = 1) -> nn.Module:
    """Instantiate ``cfg['model']`` with the hyper-parameters in ``cfg['model_cfg']`` for inputs of
    ``shape`` (an int or ``(D,)`` for vectors, ``(C, H, W)`` for images)."""
    name, m = cfg["model"], cfg["model_cfg"]
    solver = Solver.from_config(cfg["solver"])
    eval_solver = Solver.from_config(cfg.get("eval_solver") or cfg["solver"])
    shape = (shape,) if isinstance(shape, int) else tuple(int(s) for s in shape)
    if len(shape) == 3:
        return _build_image_model(name, m, shape, out_dim, solver, eval_solver)
    if len(shape) != 1:
        raise ValueError(f"inputs of shape {shape} are neither vectors nor (C, H, W) images")
    dim = shape[0]
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
            fused=m.get("fused", True),
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


def _build_image_model(name: str, m: dict[str, Any], shape: tuple[int, int, int], out_dim: int,
                       solver: Solver, eval_solver: Solver) -> nn.Module:
    if name in ("node", "anode"):
        from odeflows.models.conv_classifiers import ConvODENet

        return ConvODENet(shape, out_dim, solver=solver, eval_solver=eval_solver,
                          filters=int(m["filters"]),
                          augment_channels=int(m.get("augment_channels", 0))
                          if name == "anode" else 0,
                          time_dependent=m.get("time_dependent", True),
                          nonlinearity=m.get("nonlinearity", "relu"))
    if name in FLOWS:
        from odeflows.models.odenvp import MultiscaleCNF

        regularised = name in ("rnode", "affjord_rnode")
        reg_default = 0.01 if regularised else 0.0  # RNODE §6: λ_K = λ_J = 0.01
        return MultiscaleCNF(
            shape, solver=solver, eval_solver=eval_solver,
            augmented=name.startswith("affjord"), layer=m.get("layer", "concat"),
            hidden_dims=tuple(m.get("hidden_dims", (64, 64, 64))),
            num_blocks=int(m.get("num_blocks", 1)), alpha=float(m.get("alpha", 1e-6)),
            T=float(m.get("T", 1.0)), nonlinearity=m.get("nonlinearity", "softplus"),
            divergence=m.get("divergence", "hutchinson"),
            probe=m.get("probe", "gaussian" if regularised else "rademacher"),
            kinetic=float(m.get("kinetic", reg_default)),
            jacobian=float(m.get("jacobian", reg_default)),
            zero_last=bool(m.get("zero_last", regularised)),
            aug_hidden=int(m.get("aug_hidden", 20)), hyper_in=int(m.get("hyper_in", 10)),
            track_regularisers=bool(m.get("track_regularisers", False)))
    raise ValueError(f"model {name!r} has no image version; image models: node, anode, "
                     f"{', '.join(FLOWS)}")


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
