"""The lean dopri5 against torchdiffeq's: the same trajectory (bitwise) and the same number of
evaluations, increasing and decreasing time, float32 and float64, with torchdiffeq's mixed norm
passed as the error norm, and the same failures."""

from __future__ import annotations

import pytest
import torch
from torchdiffeq import odeint
from torchdiffeq._impl.misc import _rms_norm

from odeflows.nn import lean_dopri5
from odeflows.ode import SolverFailure


class _Field:
    """A nonlinear, time-dependent right-hand side that counts its calls and records the
    times it is evaluated at."""

    def __init__(self, n: int, dtype: torch.dtype, seed: int = 0):
        gen = torch.Generator().manual_seed(seed)
        self.A = (torch.randn(n, n, generator=gen) / n ** 0.5).to(dtype)
        self.b = torch.randn(n, generator=gen).to(dtype)
        self.calls: list[float] = []

    def __call__(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.calls.append(float(t))
        return torch.tanh(self.A @ y) * torch.cos(3 * t) + self.b * t - 0.3 * y


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("t0,t1", [(0.0, 1.3), (0.5, -0.7), (2.0, 0.0)])
@pytest.mark.parametrize("tol", [1e-3, 1e-6])
def test_bitwise_torchdiffeq(dtype, t0, t1, tol):
    y0 = torch.randn(37, generator=torch.Generator().manual_seed(1)).to(dtype)
    ref_f, ours_f = _Field(37, dtype), _Field(37, dtype)
    ref = odeint(ref_f, y0, torch.tensor([t0, t1]), rtol=tol, atol=tol, method="dopri5",
                 options={"norm": _rms_norm})[-1]
    ours = lean_dopri5.dopri5(ours_f, y0, t0, t1, tol, tol, _rms_norm)
    assert torch.equal(ours, ref)
    assert ours_f.calls == ref_f.calls  # same evaluations, at the same times


def test_max_num_steps_and_underflow_fail_as_solver_failures():
    y0 = torch.ones(3)
    with pytest.raises(SolverFailure):
        lean_dopri5.dopri5(_Field(3, torch.float32), y0, 0.0, 10.0, 1e-9, 1e-9, _rms_norm,
                           max_num_steps=2)
    with pytest.raises(SolverFailure):
        lean_dopri5.dopri5(lambda t, y: y * float("nan"), y0, 0.0, 2.0, 1e-6, 1e-6, _rms_norm)
