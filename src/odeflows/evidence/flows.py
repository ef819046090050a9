"""What each direction of a normalizing flow costs, and how exactly one undoes the other (flow
primer §3.4-3.6; claims 12 and 13).

Both are measured on a trained model through the density surface every flow offers —
``forward(x, generator) -> {"z", "logp"}`` (data → latent), ``sample(n, generator)`` and
``transform_to_data(z)`` (latent → data) — with its networks counted by
:class:`odeflows.ode.Counted`. A model whose inverse is solved numerically declares its solver as
``eval_solver`` (the continuous flows); its round trip is also measured with an adaptive solver
at a series of tolerances.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from odeflows.ode import Solver, count_nfe, reset_nfe

__all__ = ["direction_costs", "flow_evidence", "parameters", "round_trip", "structure",
           "tolerance_key"]


def structure(model: nn.Module) -> str | None:
    """The flow's structure as it declares it (``coupling``, ``autoregressive``, …), or
    ``continuous`` for a model that inverts by integration (it has an ``eval_solver``)."""
    declared = getattr(model, "structure", None)
    if isinstance(declared, str):
        return declared
    return "continuous" if isinstance(getattr(model, "eval_solver", None), Solver) else None


def parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable parameters, effective ones): a model whose stored weights include some that
    can never reach its output (autoregressive masks) says how many can, via
    ``effective_parameters()``."""
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    effective = getattr(model, "effective_parameters", None)
    return total, (int(effective()) if callable(effective) else total)


def _timed(model: nn.Module, fn: Callable[[], Any], repeats: int) -> tuple[int, float]:
    """(network passes of the first call, fastest wall seconds over ``repeats`` calls)."""
    passes, best = 0, math.inf
    for i in range(repeats):
        reset_nfe(model)
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        if i == 0:
            passes = count_nfe(model)
    return passes, best


@torch.no_grad()
def direction_costs(model: nn.Module, x: torch.Tensor, generator: torch.Generator,
                    repeats: int = 3) -> dict[str, float]:
    """Network passes and wall seconds per point of evaluating log p on the batch ``x`` and of
    drawing as many samples. Passes are those of the first call (deterministic given the
    generator); times the fastest of ``repeats`` calls, which discounts interruptions."""
    model.eval()
    n = x.shape[0]
    d_passes, d_time = _timed(model, lambda: model(x, generator), repeats)
    s_passes, s_time = _timed(model, lambda: model.sample(n, generator), repeats)
    return {"cost_points": n, "density_passes": d_passes, "sample_passes": s_passes,
            "density_seconds": d_time / n, "sample_seconds": s_time / n}


def _round_trip(model: nn.Module, x: torch.Tensor, generator: torch.Generator
                ) -> tuple[float, float, int]:
    """(max, mean) over points of ‖x − T⁻¹(T(x))‖ / RMS‖x‖ and the network passes it took."""
    reset_nfe(model)
    z = model(x, generator)["z"]
    back = model.transform_to_data(z).reshape(x.shape)
    passes = count_nfe(model)
    err = (back - x).flatten(1).norm(dim=1)
    # relative to the batch's scale, not each point's: points near the origin would otherwise
    # turn an absolute error at rounding level into an arbitrarily large relative one
    scale = x.flatten(1).norm(dim=1).pow(2).mean().sqrt().clamp_min(torch.finfo(x.dtype).tiny)
    rel = (err / scale).double()
    return float(rel.max()), float(rel.mean()), passes


@contextmanager
def _eval_solver(model: nn.Module, solver: Solver) -> Iterator[None]:
    old = model.eval_solver
    model.eval_solver = solver
    try:
        yield
    finally:
        model.eval_solver = old


def tolerance_key(tol: float) -> str:
    """Column suffix of a tolerance: 1e-05 → ``1e-05``."""
    return f"{tol:.0e}"


@torch.no_grad()
def round_trip(model: nn.Module, x: torch.Tensor, generator: torch.Generator,
               tolerances: Sequence[float] = (), method: str = "dopri5"
               ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """x → z → x error of the trained model, relative to the batch's RMS norm: in float32 as
    evaluated, and in float64, where a discrete flow's error is rounding alone. A model with an
    ``eval_solver`` is also run, in float64 so that rounding cannot hide it, with ``method`` at
    each rtol = atol in ``tolerances``. Returns (eval.json scalars, arrays for figures)."""
    model.eval()
    gen_state = generator.get_state()
    mx, mean, passes = _round_trip(model, x, generator)
    out: dict[str, Any] = {"roundtrip_points": int(x.shape[0]), "roundtrip_max": mx,
                           "roundtrip_mean": mean, "roundtrip_passes": passes}
    wide = copy.deepcopy(model).double()
    x64 = x.double()
    generator.set_state(gen_state)  # the same probes as the float32 trip
    mx, mean, _ = _round_trip(wide, x64, generator)
    out.update(roundtrip_max_f64=mx, roundtrip_mean_f64=mean)
    arrays: dict[str, np.ndarray] = {}
    if isinstance(getattr(model, "eval_solver", None), Solver) and tolerances:
        rows = []
        for tol in tolerances:
            solver = replace(Solver(method=method), rtol=float(tol), atol=float(tol))
            generator.set_state(gen_state)
            with _eval_solver(wide, solver):
                mx, mean, passes = _round_trip(wide, x64, generator)
            rows.append((tol, mx, mean, passes))
            key = tolerance_key(tol)
            out[f"roundtrip_max_tol{key}"] = mx
            out[f"roundtrip_passes_tol{key}"] = passes
        tol_, mx_, mean_, passes_ = (np.array(c) for c in zip(*rows, strict=True))
        arrays = {"tolerance": tol_, "max": mx_, "mean": mean_, "passes": passes_}
    return out, arrays


def flow_evidence(model: nn.Module, x: torch.Tensor, ecfg: dict[str, Any],
                  generator: torch.Generator, run: Any) -> dict[str, Any]:
    """Everything above that a density task's options (``odeflows.tasks.FLOW_EVAL_OPTIONS``)
    ask for, on the first points of the test batch ``x`` (already in the model's input space);
    arrays go to ``roundtrip.npz`` in the run directory."""
    _, effective = parameters(model)
    out: dict[str, Any] = {"data_dim": math.prod(x.shape[1:]), "effective_parameters": effective,
                           "flow_structure": structure(model)}
    if ecfg.get("cost_batch"):
        out.update(direction_costs(model, x[:int(ecfg["cost_batch"])], generator,
                                   int(ecfg["cost_repeats"])))
    if ecfg.get("roundtrip_batch"):
        scalars, arrays = round_trip(model, x[:int(ecfg["roundtrip_batch"])], generator,
                                     ecfg["roundtrip_tolerances"], ecfg["roundtrip_method"])
        out.update(scalars)
        if arrays:
            run.save_arrays("roundtrip", **arrays)
    return out
