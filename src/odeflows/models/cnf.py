"""Continuous normalizing flows on vectors: FFJORD and AFFJORD, with RNODE's regularisers.

One class covers both. State integrated from the data time to the base time:

    FFJORD:   (x, Δ, [K], [J])          dx/dt = f(x, t)
    AFFJORD:  (x, a, Δ, [K], [J])       dx/dt = f(x, a),  da/dt = g(a),  a(t_data) = s (learnt)

with dΔ/dt = −tr(∂f/∂x) (AFFJORD: over x only; the Jacobian of (f, g) is block-triangular since
g ignores x), dK/dt = ‖f‖²/(2D) and dJ/dt = ‖∂f/∂x‖²_F/D (RNODE's kinetic energy and Jacobian
Frobenius integrands, normalised per dimension as in its code). Then
log p(x) = log p_base(x(t_base)) − Δ(t_base).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from odeflows.models import BuildContext
from odeflows.nn import divergence as div_
from odeflows.nn import fused as fused_
from odeflows.nn import fused_hyper
from odeflows.nn.fields import AugmentedDynamics, AugmentedHyperField, MLPField, TimeHyperField
from odeflows.ode import Autonomous, CountedField, Solver, solve

__all__ = ["CNFDynamics", "ToyCNF", "build_affjord", "build_ffjord"]


class CNFDynamics(nn.Module):
    """Right-hand side of the joint state; the Hutchinson probe is set once per solve."""

    def __init__(self, field: nn.Module, aug_dynamics: nn.Module | None, divergence: str,
                 analytic_trace: bool, regularise: bool, direction: float, fused: bool = True):
        super().__init__()
        self.field, self.aug_dynamics = field, aug_dynamics
        self.divergence, self.analytic_trace = divergence, analytic_trace
        self.regularise, self.direction = regularise, direction
        self.probe: torch.Tensor | None = None
        self.with_logp = True
        # --- fused fast path (odeflows.nn.fused) -------------------------------------------
        # The exact analytic trace of a concatsquash-tanh MLP in a few batched ops with a
        # hand-written backward; the generic branches below stay the tested ground truth.
        self.fused: fused_.FusedMLP | None = None
        if (fused and divergence == "exact" and analytic_trace and aug_dynamics is None
                and fused_.supports(field)):
            self.fused = fused_.FusedMLP(field)
        # The hypernet fields (AFFJORD's toy model and its FFJORD baseline) on a fixed RK4 grid:
        # the whole solve is one node with a hand-written backward (odeflows.nn.fused_hyper).
        self.fused_rk4: fused_hyper.FusedHyperRK4 | None = None
        if (fused and divergence == "exact" and analytic_trace
                and fused_hyper.supports(field, aug_dynamics)):
            self.fused_rk4 = fused_hyper.FusedHyperRK4(field, aug_dynamics)
        # --- end fused fast path -----------------------------------------------------------

    def forward(self, t: torch.Tensor, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        x = state[0]
        if self.fused is not None and self.with_logp:  # fused fast path
            if not self.regularise:
                return self.fused.cnf_rhs(x, t)
            d = x[0].numel()
            return self.fused.cnf_rhs(x, t, self.direction / (2 * d), self.direction / d)
        a = state[1] if self.aug_dynamics is not None else None
        cond = a if a is not None else t
        if not self.with_logp:  # sampling: only the trajectory is needed
            f = self.field(x, cond)
            return (f,) if a is None else (f, self.aug_dynamics(a))
        outer_grad = torch.is_grad_enabled()
        with torch.enable_grad():
            if not (outer_grad and x.requires_grad):
                # under odeint_adjoint's no-grad forward x can be a view of a grad-requiring
                # tensor that is no node of f's graph: take a fresh leaf
                x = x.detach().requires_grad_(True)
            fast = self.divergence == "exact" and self.analytic_trace
            if fast and not self.regularise and hasattr(self.field, "trace"):
                f, div = self.field.trace(x, cond)
                frob = div  # unused without regularisers
            elif fast and hasattr(self.field, "jacobian"):
                f, jac = self.field.jacobian(x, cond)
                div, frob = div_.from_jacobian(jac)
            elif self.divergence == "exact" or self.probe is None:
                f = self.field(x, cond)
                div, frob = div_.exact_autograd(f, x, create_graph=outer_grad)
            else:
                f = self.field(x, cond)
                div, frob = div_.hutchinson(f, x, self.probe, create_graph=outer_grad)
        if not outer_grad:
            f, div, frob = f.detach(), div.detach(), frob.detach()
        out = [f]
        if a is not None:
            out.append(self.aug_dynamics(a))
        out.append(-div.unsqueeze(1))
        if self.regularise:
            d = x[0].numel()
            out.append(self.direction * f.pow(2).flatten(1).sum(1, keepdim=True) / (2 * d))
            out.append(self.direction * frob.unsqueeze(1) / d)
        return tuple(out)


class ToyCNF(nn.Module):
    """FFJORD (``aug_dim=0``) or AFFJORD (``aug_dim>0``) density model on R^D.

    ``solver`` is used in train mode, ``eval_solver`` in eval mode. ``learnable_T`` makes the end
    time a trained parameter (T = s², as FFJORD declares but, because its time vector is built with
    ``torch.tensor``, never trains); by default T is fixed as in every reference run.
    ``fused`` (default on) evaluates a concatsquash-tanh MLP field with the exact analytic trace
    through ``odeflows.nn.fused`` (and its flat adjoint solve); ``fused=False`` keeps the generic
    autograd path, which the fused one is tested against.
    """

    def __init__(self, dim: int, field: nn.Module, *, solver: Solver, eval_solver: Solver,
                 aug_dynamics: nn.Module | None = None, aug_dim: int = 0,
                 t_data: float = 0.0, t_base: float = 0.5, learnable_T: bool = False,
                 base_std: float = 1.0, divergence: str = "exact", probe: str = "gaussian",
                 analytic_trace: bool = True, kinetic: float = 0.0, jacobian: float = 0.0,
                 fused: bool = True):
        super().__init__()
        if divergence not in ("exact", "hutchinson"):
            raise ValueError(f"unknown divergence {divergence!r}; "
                             "allowed values: exact, hutchinson")
        self.dim, self.aug_dim = dim, aug_dim
        self.solver, self.eval_solver = solver, eval_solver
        self.t_data, self.base_std, self.probe_kind = t_data, base_std, probe
        self.kinetic, self.jacobian = kinetic, jacobian
        span = t_base - t_data
        self.learnable_T = learnable_T
        if learnable_T:
            self.sqrt_T = nn.Parameter(torch.tensor(math.sqrt(abs(span))))
        self.register_buffer("fixed_T", torch.tensor(abs(span)), persistent=False)
        self.direction = 1.0 if span > 0 else -1.0
        self.aug_init = nn.Parameter(torch.rand(1, aug_dim)) if aug_dim else None
        self.func = CountedField(CNFDynamics(field, aug_dynamics, divergence, analytic_trace,
                                             regularise=bool(kinetic or jacobian),
                                             direction=self.direction, fused=fused))

    # -- time and base distribution -----------------------------------------------------------
    @property
    def end_time(self) -> torch.Tensor:
        return self.sqrt_T.pow(2) if self.learnable_T else self.fixed_T

    def _times(self, reverse: bool = False) -> torch.Tensor:
        t0 = torch.tensor(self.t_data, dtype=torch.float32)
        t1 = t0 + self.direction * self.end_time.float()
        t = torch.stack([t0, t1]) if self.learnable_T else torch.tensor([self.t_data, float(t1)])
        return t.flip(0) if reverse else t

    def base_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        var = self.base_std ** 2
        return -0.5 * (z.pow(2).sum(1) / var + self.dim * math.log(2 * math.pi * var))

    @property
    def dynamics(self) -> CNFDynamics:
        return self.func.func

    def active_solver(self) -> Solver:
        return self.solver if self.training else self.eval_solver

    # -- density --------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, Any]:
        """Integrate data → base; returns log p(x), z, and the regulariser integrals."""
        dyn = self.dynamics
        dyn.with_logp = True
        if dyn.fused is not None:  # fused fast path: re-read the parameters once per solve
            dyn.fused.refresh()
        dyn.probe = (div_.sample_probe(x, self.probe_kind, generator)
                     if dyn.divergence == "hutchinson" else None)
        state: list[torch.Tensor] = [x]
        if self.aug_dim:
            state.append(self.aug_init)
        state.append(torch.zeros(x.shape[0], 1, dtype=x.dtype, device=x.device))
        if dyn.regularise:
            state += [torch.zeros(x.shape[0], 1, dtype=x.dtype, device=x.device)] * 2
        times, solver = self._times(), self.active_solver()
        reg = None
        if dyn.regularise:
            d = x[0].numel()
            reg = (self.direction / (2 * d), self.direction / d)
        if dyn.fused_rk4 is not None and fused_hyper.applies(solver, times):
            sol = dyn.fused_rk4.solve(self.func, state, times, solver, reg)
        elif (dyn.fused is not None and solver.adjoint
                and fused_.adjoint_applies(dyn.fused, self.func, times)):
            # fused fast path: the same adjoint solve without autograd or per-tensor overhead
            sol = fused_.solve_adjoint(dyn.fused, self.func, state, times, solver, reg)
        else:
            sol = solve(self.func, state, times, solver)
        final = [s[-1] for s in sol]
        z = final[0]
        delta = final[2 if self.aug_dim else 1].squeeze(1)
        out = {"z": z, "logp": self.base_log_prob(z) - delta}
        if dyn.regularise:
            out["kinetic"], out["jacobian"] = final[-2].squeeze(1), final[-1].squeeze(1)
        return out

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)["logp"]

    def loss(self, x: torch.Tensor, generator: torch.Generator | None = None
             ) -> tuple[torch.Tensor, dict[str, float]]:
        out = self.forward(x, generator)
        nll = -out["logp"].mean()
        loss, stats = nll, {"nll": nll.item()}
        if self.kinetic or self.jacobian:
            k, j = out["kinetic"].mean(), out["jacobian"].mean()
            loss = loss + self.kinetic * k + self.jacobian * j
            stats.update(kinetic=k.item(), jacobian=j.item())
        return loss, stats

    # -- sampling -------------------------------------------------------------------------------
    def augmented_at_base(self) -> torch.Tensor:
        """a(t_base): the augmented state reached from the learnt a(t_data); shared by every
        sample, so it is all AFFJORD needs to keep for sampling."""
        g = self.dynamics.aug_dynamics
        sol = solve(CountedField(Autonomous(g)), self.aug_init, self._times(), self.eval_solver)
        return sol[-1]

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw z from the base and integrate base → data."""
        dtype = next(self.parameters()).dtype
        z = torch.randn(n, self.dim, generator=generator, dtype=dtype) * self.base_std
        return self.transform_to_data(z)

    @torch.no_grad()
    def transform_to_data(self, z: torch.Tensor) -> torch.Tensor:
        dyn = self.dynamics
        state: list[torch.Tensor] = [z]
        if self.aug_dim:
            state.append(self.augmented_at_base())
        dyn.with_logp = False
        try:
            sol = solve(self.func, state, self._times(reverse=True), self.eval_solver)
        finally:
            dyn.with_logp = True
        return sol[0][-1]


# -- builders of the entries declared in odeflows.models.entries.cnf ------------------------------
def _flow_kw(o: dict, ctx: BuildContext) -> dict:
    return dict(solver=ctx.solver, eval_solver=ctx.eval_solver, t_data=o["t_data"],
                t_base=o["t_base"], learnable_T=o["learnable_T"], base_std=o["base_std"],
                divergence=o["divergence"], probe=o["probe"], analytic_trace=o["analytic_trace"],
                kinetic=o["kinetic"], jacobian=o["jacobian"], fused=o["fused"])


def build_ffjord(o: dict, ctx: BuildContext) -> ToyCNF:
    dim = ctx.shape[0]
    if o["field"] == "hyper_t":
        field = TimeHyperField(dim, o["width"], o["hyper_hidden"])
    else:
        field = MLPField(dim, list(o["hidden_dims"]), o["field"], o["nonlinearity"])
    return ToyCNF(dim, field, **_flow_kw(o, ctx))


def build_affjord(o: dict, ctx: BuildContext) -> ToyCNF:
    dim = ctx.shape[0]
    field = AugmentedHyperField(dim, o["aug_dim"], o["width"], o["hyper_hidden"])
    aug = AugmentedDynamics(o["aug_dim"], o["aug_hidden"])
    return ToyCNF(dim, field, aug_dynamics=aug, aug_dim=o["aug_dim"], **_flow_kw(o, ctx))
