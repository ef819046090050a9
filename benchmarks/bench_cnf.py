"""Benchmark of the CNF training hot paths against the reference code, side by side (not a
test: timings depend on the machine). See docs/speed.md.

Measures seconds per training iteration, forward/backward NFE per iteration, milliseconds per
function evaluation and peak memory saved for backward, for:

- ``ffjord_autograd``: the configuration of FFJORD's ``train_toy.py`` defaults (8gaussians, batch
  100, concatsquash 64-64-64 tanh, dopri5 atol = rtol = 1e-5, exact trace, T = 0.5, Adam 1e-3,
  weight decay 1e-5, adjoint) with the straightforward trace (one vector-Jacobian product per
  dimension, double backward in training) — our tested ground truth;
- ``ffjord_fast``: the same model with the trace from forward-mode Jacobian propagation
  (``MLPField.jacobian``, generic autograd ops; ``fused: false``);
- ``ffjord_fused``: the same model with ``odeflows.nn.fused`` (closed-form value, trace and
  hand-written vector-Jacobian product, the adjoint on one flat augmented state integrated by
  ``odeflows.nn.lean_dopri5``; the default for this field);
- ``*_direct``: backpropagation through the solver instead of the adjoint;
- ``ffjord_hutchinson``, ``ffjord_rk4``/``ffjord_fused_rk4`` (fixed step 0.05), ``rnode``/
  ``rnode_fused`` (kinetic and Jacobian regularisers, λ = 0.01);
- ``affjord`` / ``affjord_autograd`` / ``affjord_rnode``: AFFJORD §4.1's toy model at the paper
  setting (hash, batch 512, hypernet field, RK4 40 steps from t = 10 to 0, exact trace, no
  adjoint; fused = ``odeflows.nn.fused_hyper``), and with RNODE's regularisers;
  ``ffjord_hyper`` / ``ffjord_hyper_autograd``: that experiment's FFJORD baseline (time-hypernet
  field); ``ffjord_hyper_dopri5``: torchdiffeq ``examples/cnf.py``'s setting (dopri5, no adjoint);
- ``mnist_multiscale`` / ``mnist_multiscale_autograd``: steady training steps (warm-up excluded,
  bits/dim loss, Adam) of the multiscale image CNF (``MultiscaleCNF``, MNIST shape 1×28×28, one
  block per scale, 64-64-64 concat, softplus, dopri5, Rademacher probe, adjoint) with
  ``--image-batch`` uniform images, fused (``odeflows.nn.fused_conv``) or not; on CUDA too when
  available. Also reported: the convolutions' FLOPs per step, the FLOP/s achieved, and what the
  machine's largest convolution and a 1024³ sgemm reach on their own.

References (checkouts kept outside this repository, run in subprocesses with the same threads):
``--ffjord-dir`` (rtqichen/ffjord: ``train_toy.py``, its log parsed; ``lib/odenvp.py`` by
``odenvp_reference.py`` on the same images), ``--anodef-dir`` (ehaxholli/ANODEF
``hash_gaussian/examples/cnf_augmented.py`` and ``cnf_normal.py``) and ``--torchdiffeq-dir``
(rtqichen/torchdiffeq ``examples/cnf.py``), the last three by ``reference_runner.py``, which times
the scripts' own loop bodies. With ``--rounds R`` the references and our cases alternate R times
(robust to other load on a shared machine) and the table reports medians over rounds.

Ratio vs the reference "at equal NFE" = (our s/iter × reference NFE/iter ÷ our NFE/iter) ÷
reference s/iter, NFE = forward + backward evaluations: our time per iteration rescaled to the
reference's number of function evaluations. Below 1 is faster than the reference.

    python benchmarks/bench_cnf.py --threads 1 --rounds 3 --iters 40 --reference-iters 20 \
        --ffjord-dir /tmp/ref_ffjord --anodef-dir /tmp/ref_ANODEF \
        --torchdiffeq-dir /tmp/ref_torchdiffeq
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from odeflows.data import toy2d
from odeflows.models import build_model
from odeflows.ode import Solver, count_nfe, reset_nfe
from odeflows.profiling import SavedTensorMeter

TRAIN_TOY = {
    "model_options": {"field": "concatsquash", "hidden_dims": [64, 64, 64], "nonlinearity": "tanh",
                      "t_data": 0.0, "t_base": 0.5, "base_std": 1.0, "divergence": "exact",
                      "analytic_trace": False},
    # the reference's CNF integrates with odeint_adjoint: backward NFE are adjoint solves
    "solver": {"method": "dopri5", "rtol": 1e-5, "atol": 1e-5, "adjoint": True},
    "train": {"lr": 1e-3, "weight_decay": 1e-5, "batch_size": 100},
    "data": "8gaussians",
}


def _case(model: str = "ffjord", data: str = "8gaussians", batch: int = 100, **over) -> dict:
    cfg = json.loads(json.dumps(TRAIN_TOY))
    cfg.update(model=model, data=data)
    cfg["train"]["batch_size"] = batch
    for key, value in over.items():
        cfg[key] = {**cfg[key], **value}
    cfg["eval_solver"] = cfg["solver"]
    return cfg


FAST = {"analytic_trace": True, "fused": False}
FUSED = {"analytic_trace": True, "fused": True}
RK4 = {"method": "rk4", "step_size": 0.05}
RNODE = {"kinetic": 0.01, "jacobian": 0.01}
CASES = {
    "ffjord_autograd": _case(),
    "ffjord_fast": _case(model_options=FAST),
    "ffjord_fast_direct": _case(model_options=FAST, solver={"adjoint": False}),
    "ffjord_fused": _case(model_options=FUSED),
    "ffjord_fused_direct": _case(model_options=FUSED, solver={"adjoint": False}),
    "ffjord_hutchinson": _case(model_options={"divergence": "hutchinson", "probe": "gaussian"}),
    "ffjord_rk4": _case(model_options=FAST, solver=RK4),
    "ffjord_fused_rk4": _case(model_options=FUSED, solver=RK4),
    "rnode": _case(model_options=FAST | RNODE),
    "rnode_fused": _case(model_options=FUSED | RNODE),
}
# AFFJORD §4.1 (``affjord_toy``): hypernet fields, RK4 40 steps (160 evaluations) from t = 10
# (data) to 0 (base N(0, 0.1 I)), batch 512, exact trace, backpropagation through the solver
HYPER = {"width": 64, "hyper_hidden": 32, "t_data": 10.0, "t_base": 0.0,
         "base_std": 0.1 ** 0.5, "analytic_trace": True}
PAPER_RK4 = {"method": "rk4", "steps": 40, "adjoint": False}
ADAM = {"lr": 1e-3, "weight_decay": 0.0}
AUG = {"aug_dim": 2, "aug_hidden": 3}
CASES |= {
    "affjord": _case(model="affjord", data="hash", batch=512, model_options=HYPER | AUG,
                     solver=PAPER_RK4, train=ADAM),
    "affjord_autograd": _case(model="affjord", data="hash", batch=512,
                              model_options=HYPER | AUG | {"fused": False}, solver=PAPER_RK4,
                              train=ADAM),
    "affjord_rnode": _case(model="affjord_rnode", data="hash", batch=512,
                           model_options=HYPER | AUG | RNODE, solver=PAPER_RK4, train=ADAM),
    # the FFJORD baseline of the same experiment: the time-hypernet field of torchdiffeq cnf.py
    "ffjord_hyper": _case(data="hash", batch=512, model_options=HYPER | {"field": "hyper_t"},
                          solver=PAPER_RK4, train=ADAM),
    "ffjord_hyper_autograd": _case(data="hash", batch=512,
                                   model_options=HYPER | {"field": "hyper_t", "fused": False},
                                   solver=PAPER_RK4, train=ADAM),
    # torchdiffeq examples/cnf.py itself: dopri5 1e-5 without adjoint, circles
    "ffjord_hyper_dopri5": _case(data="circles", batch=512,
                                 model_options=HYPER | {"field": "hyper_t"},
                                 solver={"method": "dopri5", "adjoint": False}, train=ADAM),
}
# which reference each case is compared with (cases without one are reported alone)
REFERENCE_OF = {
    **{c: "ffjord_train_toy" for c in CASES
       if c.startswith("ffjord_") and not c.startswith("ffjord_hyper")
       and CASES[c]["solver"]["method"] == "dopri5"},
    "affjord": "anodef_augmented", "affjord_autograd": "anodef_augmented",
    "ffjord_hyper": "anodef_normal", "ffjord_hyper_autograd": "anodef_normal",
    "ffjord_hyper_dopri5": "torchdiffeq_cnf",
}
IMAGE_CASE = "mnist_multiscale"
DEFAULT_CASES = ["ffjord_autograd", "ffjord_fused", "ffjord_fused_direct", "rnode_fused",
                 "affjord", "affjord_rnode", "ffjord_hyper", "ffjord_hyper_dopri5", IMAGE_CASE]
IMAGE_CASES = {IMAGE_CASE: True, f"{IMAGE_CASE}_autograd": False}  # name → fused


def _apply_fused(model: nn.Module, cfg: dict) -> nn.Module:
    """``model_options.fused`` (default true): false drops the fused dynamics, keeping the generic
    path. Applied here because the choice is a ToyCNF argument that build_model may not forward."""
    dyn = getattr(model, "dynamics", None)
    if dyn is not None and hasattr(dyn, "fused") and not cfg["model_options"].get("fused", True):
        dyn.fused = None
        dyn.fused_rk4 = None
    return model


def run_ours(name: str, cfg: dict, iters: int, warmup: int, seed: int) -> dict:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = _apply_fused(build_model(cfg, 2), cfg)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg["train"]["lr"],
                           weight_decay=cfg["train"]["weight_decay"])
    gen = torch.Generator().manual_seed(seed)
    times, cpu, nfe_f, nfe_b, losses = [], [], [], [], []
    for _ in range(iters):
        t0, c0 = time.perf_counter(), time.process_time()
        # a fresh batch every iteration, as the reference script does (inside its timed region)
        x = torch.from_numpy(toy2d.sample(cfg["data"], cfg["train"]["batch_size"], rng))
        opt.zero_grad(set_to_none=True)
        reset_nfe(model)
        loss, _ = model.loss(x, gen)
        f = count_nfe(model)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        nfe_f.append(f)
        nfe_b.append(count_nfe(model) - f)
        losses.append(loss.item())
    meter = SavedTensorMeter()
    with torch.autograd.graph.saved_tensors_hooks(meter.pack, meter.unpack):
        x = torch.from_numpy(toy2d.sample(cfg["data"], cfg["train"]["batch_size"], rng))
        loss, _ = model.loss(x, gen)
        loss.backward()
    return summarise(name, times[warmup:], nfe_f[warmup:], nfe_b[warmup:], cpu[warmup:]) | {
        "peak_saved_mib": meter.peak / 2**20, "losses": losses}


def summarise(name: str, times: list[float], nfe_f: list[float], nfe_b: list[float],
              cpu: list[float] | None = None) -> dict:
    """Medians of wall (and process CPU) seconds per iteration; mean NFE."""
    per_nfe = [t / max(f + b, 1) for t, f, b in zip(times, nfe_f, nfe_b, strict=True)]
    out = {
        "case": name,
        "iterations_timed": len(times),
        "s_per_iter_median": statistics.median(times),
        "nfe_forward_mean": statistics.fmean(nfe_f),
        "nfe_backward_mean": statistics.fmean(nfe_b),
        "ms_per_nfe_median": 1e3 * statistics.median(per_nfe),
    }
    if cpu:
        out["cpu_s_per_iter_median"] = statistics.median(cpu)
    return out


# glibc settings equivalent to odeflows.nn.fused_conv.keep_freed_memory(), for a reference
# process measured under the same allocator behaviour (--keep-freed-memory both)
KEEP_FREED_ENV = {"MALLOC_MMAP_THRESHOLD_": str(2**30), "MALLOC_TRIM_THRESHOLD_": str(2**31)}
_REFERENCE_EXTRA_ENV: dict[str, str] = {}


def _reference_env(threads: int) -> dict[str, str]:
    return {**os.environ, "MPLBACKEND": "Agg", **_REFERENCE_EXTRA_ENV,
            **{k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}}


# reference scripts, run by reference_runner.py (their own loop bodies, timed between the
# per-iteration lines they print or log): (checkout, script, grid steps, script arguments)
SCRIPT_REFERENCES = {
    # rtqichen/ffjord train_toy.py at its defaults (8gaussians, concatsquash 64-64-64, adjoint)
    "ffjord_train_toy": ("ffjord", "train_toy.py", None,
                         ["--data", "8gaussians", "--dims", "64-64-64", "--layer_type",
                          "concatsquash", "--niters", "{niters}", "--viz_freq", "1000000",
                          "--val_freq", "1000000", "--save", "{save}"]),
    # ehaxholli/ANODEF, the official AFFJORD code; its grid (21 points = 20 RK4 steps) is
    # replaced by the paper's 40 steps so that both sides take 160 evaluations
    "anodef_augmented": ("anodef", "hash_gaussian/examples/cnf_augmented.py", 40, []),
    "anodef_normal": ("anodef", "hash_gaussian/examples/cnf_normal.py", 40, []),
    # rtqichen/torchdiffeq examples/cnf.py at its defaults (dopri5, no adjoint)
    "torchdiffeq_cnf": ("torchdiffeq", "examples/cnf.py", None, []),
}


def run_script_reference(name: str, root: Path, iters: int, warmup: int, python: str,
                         threads: int) -> dict:
    _, script, grid_steps, script_args = SCRIPT_REFERENCES[name]
    with tempfile.TemporaryDirectory() as save:
        cmd = [python, str(Path(__file__).with_name("reference_runner.py")), str(root / script),
               "--iters", str(iters), "--threads", str(threads)]
        if grid_steps:
            cmd += ["--grid-steps", str(grid_steps)]
        cmd += ["--", *(a.format(niters=iters + 10, save=save) for a in script_args)]
        out = subprocess.run(cmd, capture_output=True, text=True, env=_reference_env(threads))
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith('{"iter"')]
    if not rows:
        raise RuntimeError(f"{name}: no iteration log:\n" + out.stderr[-2000:])
    timed = [r for r in rows if r["iter"] > warmup]
    return summarise(name, [r["seconds"] for r in timed], [r["nfe_forward"] for r in timed],
                     [r["nfe_backward"] for r in timed], [r["cpu_seconds"] for r in timed]) | {
        "command": " ".join(cmd[1:]), "losses": [r["loss"] for r in rows]}


def image_flops(model: nn.Module, batch: int) -> list[float]:
    """FLOPs of one evaluation of every block's field (value + Hutchinson term: the convolutions
    of the value and of one tangent or vjp, 2 × 2·B·H·W·c_in·c_out·9 per layer), in block order.
    The batch-1 conditioning convolutions and elementwise work are left out (< 1%)."""
    out = []
    for block in model.blocks():
        h, w = block.dynamics.field.ones.shape[-2:]
        flops = 0.0
        for layer in block.dynamics.field.net.layers:
            shape = layer.weight_shape if hasattr(layer, "weight_shape") else \
                layer.conv.weight.shape
            co, ci = shape[:2]
            ci -= layer.cond_channels
            flops += 2 * 2 * batch * h * w * ci * co * 9
        out.append(flops)
    return out


def run_image_steps(device: str, x: torch.Tensor, solver: Solver, iters: int, warmup: int,
                    seed: int, fused: bool, name: str) -> dict:
    """Steady training steps (bits/dim loss, backward, Adam step) of the multiscale CNF at MNIST
    shape: ``warmup`` steps left out, then ``iters`` timed ones; one more, untimed, under the
    saved-tensor meter."""
    from odeflows.models.odenvp import MultiscaleCNF

    torch.manual_seed(seed)
    model = MultiscaleCNF(tuple(x.shape[1:]), solver=solver, eval_solver=solver, num_blocks=1,
                          hidden_dims=(64, 64, 64), fused=fused).to(device)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    x = x.to(device)
    dims = x[0].numel()
    cuda = device.startswith("cuda")
    blocks = model.blocks()
    per_eval = image_flops(model, x.shape[0])

    def step() -> tuple[float, list[int], list[int], float]:
        opt.zero_grad(set_to_none=True)
        reset_nfe(model)
        out = model(x, gen)
        # bits/dim as FFJORD's compute_bits_per_dim: −(log p(x)/D − log 256)/log 2
        loss = (-(out["logp"] / dims - math.log(256)) / math.log(2)).mean()
        nf = [count_nfe(b) for b in blocks]
        loss.backward()
        opt.step()
        return loss.item(), nf, [count_nfe(b) - f for b, f in zip(blocks, nf, strict=True)]

    times, cpu, nfe_f, nfe_b, flops, losses = [], [], [], [], [], []
    for i in range(warmup + iters):
        if cuda:
            torch.cuda.synchronize(device)
        t0, c0 = time.perf_counter(), time.process_time()
        loss, nf, nb = step()
        if cuda:
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            nfe_f.append(sum(nf))
            nfe_b.append(sum(nb))
            # forward evaluation: value + divergence; adjoint one: that again and its VJP (2×)
            flops.append(sum(f * p + 3 * b * p for f, b, p in zip(nf, nb, per_eval, strict=True)))
        losses.append(loss)
    meter = SavedTensorMeter()
    with torch.autograd.graph.saved_tensors_hooks(meter.pack, meter.unpack):
        step()
    out = summarise(name if device == "cpu" else f"{name}_{device}", times, nfe_f, nfe_b,
                    cpu) | {
        "batch": x.shape[0], "peak_saved_mib": meter.peak / 2**20, "losses": losses,
        "solver": dataclasses.asdict(solver), "fused": fused,
        "flops_per_step": statistics.median(flops),
        "gflops_per_s": statistics.median(f / t for f, t in zip(flops, times, strict=True)) / 1e9,
        "flops_one_evaluation_per_block": per_eval}
    if cuda:
        out["cuda_peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def run_odenvp_reference(ffjord_dir: Path, images: Path, args: argparse.Namespace) -> dict:
    """rtqichen/ffjord's ODENVP on the same images and settings (odenvp_reference.py)."""
    cmd = [args.reference_python, str(Path(__file__).with_name("odenvp_reference.py")),
           "--ffjord-dir", str(ffjord_dir), "--images", str(images), "--iters",
           str(args.image_iters), "--warmup", str(args.image_warmup), "--threads",
           str(args.threads), "--tol", str(args.image_tol), "--method", args.image_method,
           "--seed", str(args.seed)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=_reference_env(args.threads))
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith('{"iter"')]
    if not rows:
        raise RuntimeError("odenvp reference: no step log:\n" + out.stderr[-2000:])
    timed = [r for r in rows if not r["warmup"]]
    return summarise(f"{IMAGE_CASE}_reference_odenvp", [r["seconds"] for r in timed],
                     [r["nfe_forward"] for r in timed], [r["nfe_backward"] for r in timed],
                     [r["cpu_seconds"] for r in timed]) | {
        "batch": args.image_batch, "losses": [r["loss"] for r in rows],
        "command": " ".join(cmd[1:])}


def conv_peak(threads: int, batch: int) -> dict:
    """What this machine's kernels reach on their own: the largest convolution of the model
    (64→64, 3×3, 28×28, value and tangent batch 2B, channels-last, forward) and a 1024³ sgemm,
    best of a few runs."""
    x = torch.randn(2 * batch, 64, 28, 28).contiguous(memory_format=torch.channels_last)
    w = torch.randn(64, 64, 3, 3).contiguous(memory_format=torch.channels_last)
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)

    def best(fn: object, flops: float) -> float:
        fn()
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return flops / min(times) / 1e9

    conv_flops = 2 * 2 * batch * 28 * 28 * 64 * 64 * 9
    return {"threads": threads,
            "conv_gflops_per_s": best(lambda: torch.nn.functional.conv2d(x, w, padding=1),
                                      conv_flops),
            "sgemm_gflops_per_s": best(lambda: a @ b, 2 * 1024 ** 3)}


def run_image_round(args: argparse.Namespace, ffjord_dir: Path | None, cases: list[str]
                    ) -> list[dict]:
    """Our image cases and the reference ODENVP on the same images, one after the other."""
    solver = Solver(args.image_method, rtol=args.image_tol, atol=args.image_tol, adjoint=True)
    gen = torch.Generator().manual_seed(args.seed)
    # dequantised pixels in [0, 1], the same tensor for both sides
    x = torch.rand(args.image_batch, 1, 28, 28, generator=gen)
    out = []
    if ffjord_dir:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "images.pt"
            torch.save(x, path)
            out.append(run_odenvp_reference(ffjord_dir, path, args))
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for name in cases:
        for device in devices:
            out.append(run_image_steps(device, x, solver, args.image_iters, args.image_warmup,
                                       args.seed, IMAGE_CASES[name], name))
    return out


def _median_rows(rows: list[dict]) -> dict:
    """Per-key median over rounds of the numeric fields of one case."""
    out = dict(rows[0])
    for key, value in rows[0].items():
        if isinstance(value, float | int) and not isinstance(value, bool):
            out[key] = statistics.median(r[key] for r in rows)
    out["rounds"] = len(rows)
    return out


RATIO_KEYS = ("ratio_per_nfe_vs_reference", "ratio_per_iter_equal_nfe_vs_reference",
              "cpu_ratio_per_iter_equal_nfe_vs_reference")


def _ratios(ref: dict, r: dict) -> dict:
    """Our time per iteration at the reference's NFE over the reference's: wall clock and, where
    both sides report it, process CPU time (robust to other jobs taking the CPU away)."""
    nfe_ratio = ((ref["nfe_forward_mean"] + ref["nfe_backward_mean"])
                 / (r["nfe_forward_mean"] + r["nfe_backward_mean"]))
    out = {"ratio_per_nfe_vs_reference": r["ms_per_nfe_median"] / ref["ms_per_nfe_median"],
           "ratio_per_iter_equal_nfe_vs_reference":
               r["s_per_iter_median"] * nfe_ratio / ref["s_per_iter_median"]}
    if "cpu_s_per_iter_median" in r and "cpu_s_per_iter_median" in ref:
        out["cpu_ratio_per_iter_equal_nfe_vs_reference"] = (
            r["cpu_s_per_iter_median"] * nfe_ratio / ref["cpu_s_per_iter_median"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=int, default=100, help="iterations per case and round")
    parser.add_argument("--reference-iters", type=int,
                        help="iterations of each reference script per round (default --iters)")
    parser.add_argument("--warmup", type=int, default=4, help="iterations left out of medians")
    parser.add_argument("--rounds", type=int, default=1,
                        help="alternate reference and our cases this many times; report medians")
    parser.add_argument("--cases", nargs="+", default=DEFAULT_CASES,
                        choices=[*CASES, *IMAGE_CASES])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="intra-op threads, ours and the reference's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ffjord-dir", "--reference-dir", dest="ffjord_dir", type=Path,
                        help="checkout of rtqichen/ffjord (train_toy.py, lib/odenvp.py)")
    parser.add_argument("--anodef-dir", type=Path,
                        help="checkout of ehaxholli/ANODEF (the official AFFJORD code)")
    parser.add_argument("--torchdiffeq-dir", type=Path,
                        help="checkout of rtqichen/torchdiffeq (examples/cnf.py)")
    parser.add_argument("--reference-python", default=sys.executable)
    parser.add_argument("--image-batch", type=int, default=16,
                        help=f"batch of the {IMAGE_CASE} steps (FFJORD's MNIST runs use 200)")
    parser.add_argument("--image-iters", type=int, default=3,
                        help=f"timed {IMAGE_CASE} training steps per round (after the warm-up)")
    parser.add_argument("--image-warmup", type=int, default=1)
    parser.add_argument("--image-method", default="dopri5")
    parser.add_argument("--image-tol", type=float, default=1e-5,
                        help="atol = rtol of the image step (FFJORD's MNIST default 1e-5)")
    parser.add_argument("--keep-freed-memory", choices=["ours", "both", "none"], default="ours",
                        help="glibc keeps freed memory (odeflows.nn.fused_conv.keep_freed_memory: "
                             "no page faults on the image activations): in our process (the "
                             "recommended setting), in the reference processes too, or nowhere")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/cnf.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.keep_freed_memory != "none":
        from odeflows.nn.fused_conv import keep_freed_memory

        keep_freed_memory()
    if args.keep_freed_memory == "both":
        _REFERENCE_EXTRA_ENV.update(KEEP_FREED_ENV)
    ref_iters = args.reference_iters or args.iters
    dirs = {"ffjord": args.ffjord_dir, "anodef": args.anodef_dir,
            "torchdiffeq": args.torchdiffeq_dir}

    toy_cases = [c for c in args.cases if c in CASES]
    wanted_refs = sorted({REFERENCE_OF[c] for c in toy_cases if c in REFERENCE_OF})
    missing = [r for r in wanted_refs if not dirs[_reference_root(r)]]
    if missing:
        print(f"no checkout given for the references {', '.join(missing)}: "
              "their cases are reported without ratios", flush=True)
    per_round: dict[str, list[dict]] = {}
    ratio_rounds: dict[str, list[dict]] = {}
    losses: dict[str, list[float]] = {}
    for r in range(args.rounds):
        refs: dict[str, dict] = {}
        for ref_name in wanted_refs:
            root = dirs[_reference_root(ref_name)]
            if not root:
                continue
            ref = run_script_reference(ref_name, root, ref_iters, args.warmup,
                                       args.reference_python, args.threads)
            ref.pop("losses")
            refs[ref_name] = ref
            per_round.setdefault(ref_name, []).append(ref)
        for name in toy_cases:
            res = run_ours(name, CASES[name], args.iters, args.warmup, args.seed)
            losses[name] = res.pop("losses")
            per_round.setdefault(name, []).append(res)
            ref = refs.get(REFERENCE_OF.get(name, ""))
            if ref:
                ratio_rounds.setdefault(name, []).append(_ratios(ref, res))
        image_cases = [c for c in args.cases if c in IMAGE_CASES]
        if image_cases:
            for res in run_image_round(args, dirs["ffjord"], image_cases):
                losses[res["case"]] = res.pop("losses")
                per_round.setdefault(res["case"], []).append(res)
            ref = per_round.get(f"{IMAGE_CASE}_reference_odenvp", [None])[-1]
            for name in image_cases:
                if ref:
                    ratio_rounds.setdefault(name, []).append(_ratios(ref, per_round[name][-1]))
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(
            f"{k} {v[-1]['s_per_iter_median']:.4f} s/iter" for k, v in per_round.items()
            if "s_per_iter_median" in v[-1]), flush=True)
    results = [_median_rows(rows) for rows in per_round.values()]
    for row in results:  # median over rounds of the per-round ratios
        for key in RATIO_KEYS:
            if row["case"] in ratio_rounds and all(key in rr for rr in ratio_rounds[row["case"]]):
                row[key] = statistics.median(rr[key] for rr in ratio_rounds[row["case"]])
        if row["case"] in ratio_rounds:
            row["reference"] = REFERENCE_OF.get(row["case"], f"{IMAGE_CASE}_reference_odenvp")
    peak = conv_peak(args.threads, args.image_batch) if any(
        c in IMAGE_CASES for c in args.cases) else None

    checks = {}
    for ground, other in (("ffjord_autograd", "ffjord_fast"), ("ffjord_autograd", "ffjord_fused"),
                          ("affjord_autograd", "affjord"),
                          ("ffjord_hyper_autograd", "ffjord_hyper")):
        if losses.get(ground) and losses.get(other):
            diff = np.abs(np.array(losses[ground]) - np.array(losses[other]))
            checks[f"{other}_vs_{ground}_max_abs_loss_diff"] = float(diff.max())

    print()
    print("vs ref (equal NFE) = our s/iter × (ref NFE/iter ÷ our NFE/iter) ÷ ref s/iter, wall "
          "clock; cpu: the same with process CPU time; NFE = forward + backward; < 1 is faster" + (
              f"; medians over {args.rounds} rounds" if args.rounds > 1 else ""))
    print(f"{'case':34s} {'s/iter':>9s} {'cpu s/it':>9s} {'NFE f':>7s} {'NFE b':>7s} "
          f"{'ms/NFE':>8s} {'peak MiB':>9s} {'vs ref':>7s} {'cpu':>6s}  reference")
    for r in results:
        if "skipped" in r:
            print(f"{r['case']:34s} skipped: {r['skipped']}")
            continue
        ratio = r.get("ratio_per_iter_equal_nfe_vs_reference")
        cpu_ratio = r.get("cpu_ratio_per_iter_equal_nfe_vs_reference")
        print(f"{r['case']:34s} {r['s_per_iter_median']:9.4f} "
              f"{r.get('cpu_s_per_iter_median', float('nan')):9.4f} {r['nfe_forward_mean']:7.1f} "
              f"{r['nfe_backward_mean']:7.1f} {r['ms_per_nfe_median']:8.3f} "
              f"{r.get('peak_saved_mib', float('nan')):9.2f} "
              f"{'' if ratio is None else f'{ratio:.3f}':>7s} "
              f"{'' if cpu_ratio is None else f'{cpu_ratio:.3f}':>6s}  {r.get('reference', '')}")
    print("peak MiB: tensors saved for backward (CUDA allocator peak in the JSON for CUDA)")
    for r in results:
        if "gflops_per_s" in r:
            print(f"{r['case']}: {r['flops_per_step'] / 1e9:.0f} GFLOP per step (convolutions; "
                  f"one evaluation of the five blocks: "
                  f"{sum(r['flops_one_evaluation_per_block']) / 1e9:.2f} GFLOP), "
                  f"{r['gflops_per_s']:.1f} GFLOP/s achieved")
    if peak:
        print(f"machine, {peak['threads']} thread(s): largest conv alone "
              f"{peak['conv_gflops_per_s']:.1f} GFLOP/s, sgemm 1024³ "
              f"{peak['sgemm_gflops_per_s']:.1f} GFLOP/s")
    for key, value in checks.items():
        print(f"{key}: {value:.3g}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "results": results, "checks": checks, "machine_peak": peak, "iters": args.iters,
        "reference_iters": ref_iters,
        "warmup": args.warmup, "rounds": args.rounds, "per_round": per_round,
        "threads": args.threads, "keep_freed_memory": args.keep_freed_memory,
        "torch": torch.__version__, "machine": platform.platform(),
        "cpu_count": os.cpu_count()}, indent=2))
    print(f"wrote {args.out}")


def _reference_root(ref_name: str) -> str:
    return SCRIPT_REFERENCES[ref_name][0]


if __name__ == "__main__":
    main()
