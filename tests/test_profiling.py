"""Memory accounting of the node_adjoint experiment."""

from __future__ import annotations

import torch

from odeflows.profiling import SavedTensorMeter, measure_step


def test_meter_counts_saved_tensors_and_their_release():
    meter = SavedTensorMeter()
    w = torch.randn(100, 100, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(meter.pack, meter.unpack):
        y = torch.tanh(w @ w)  # saves w (once, shared storage) and tanh's output
        assert meter.total == 2 * 100 * 100 * 4
        y.sum().backward()
    del y
    assert meter.total == 0 and meter.peak == 2 * 100 * 100 * 4


def test_adjoint_memory_is_flat_and_direct_memory_grows(reg_cfg, toy_data):
    from odeflows.data.prepared import load

    data = load(toy_data("spheres2d", n=128))
    cfg = reg_cfg("node", solver={"method": "rk4", "steps": 2}, train={"batch_size": 64})
    grads = {}
    peaks = {}
    for adjoint in (False, True):
        for steps in (2, 8):
            row = measure_step(cfg, data, steps, adjoint)
            peaks[(adjoint, steps)] = row["peak_saved_bytes"]
            grads[(adjoint, steps)] = row["loss"]
            assert row["nfe_forward"] == 4 * steps
            assert row["nfe_backward"] == (4 * steps if adjoint else 0)
    assert peaks[(False, 8)] > 3 * peaks[(False, 2)]
    assert peaks[(True, 8)] == peaks[(True, 2)]
