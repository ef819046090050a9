"""Benchmark of the CNF training hot path (not a test: timings depend on the machine).

Measures seconds per training iteration, forward/backward NFE per iteration, seconds per function
evaluation and peak memory saved for backward, for:

- ``ffjord_autograd``: the configuration of FFJORD's ``train_toy.py`` defaults (8gaussians, batch
  100, concatsquash 64-64-64 tanh, dopri5 atol = rtol = 1e-5, exact trace, T = 0.5, Adam 1e-3,
  weight decay 1e-5) with the straightforward trace (one vector-Jacobian product per dimension,
  double backward in training) — our tested ground truth;
- ``ffjord_fast``: the same model with the trace from forward-mode Jacobian propagation;
- ``ffjord_fast_direct``: the fast trace with backpropagation through the solver instead of the
  adjoint (no backward solve; memory grows with steps);
- ``ffjord_hutchinson``, ``ffjord_rk4`` (fixed step 0.05), ``rnode`` (fast path + kinetic and
  Jacobian regularisers, λ = 0.01) and ``affjord`` (AFFJORD §4.1 toy model, RK4 40 steps,
  batch 512).

With ``--reference-dir`` pointing at a checkout of rtqichen/ffjord (kept outside this repository),
its ``train_toy.py`` runs in a subprocess with the same settings and its per-iteration times and
NFE are parsed from its log, so both sides are measured in one run on one machine. Ratios are
reported per function evaluation and per iteration at equal NFE.

    python benchmarks/bench_cnf.py --iters 100 --reference-dir /path/to/ffjord
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from odeflows.data import toy2d
from odeflows.models import build_model
from odeflows.ode import count_nfe, reset_nfe
from odeflows.profiling import SavedTensorMeter

TRAIN_TOY = {
    "model_cfg": {"field": "concatsquash", "hidden_dims": [64, 64, 64], "nonlinearity": "tanh",
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


CASES = {
    "ffjord_autograd": _case(),
    "ffjord_fast": _case(model_cfg={"analytic_trace": True}),
    "ffjord_fast_direct": _case(model_cfg={"analytic_trace": True},
                                solver={"adjoint": False}),
    "ffjord_hutchinson": _case(model_cfg={"divergence": "hutchinson", "probe": "gaussian"}),
    "ffjord_rk4": _case(model_cfg={"analytic_trace": True},
                        solver={"method": "rk4", "step_size": 0.05}),
    "rnode": _case(model_cfg={"analytic_trace": True, "kinetic": 0.01, "jacobian": 0.01}),
    "affjord": _case(model="affjord", data="hash", batch=512,
                     model_cfg={"width": 64, "hyper_hidden": 32, "aug_dim": 2, "aug_hidden": 3,
                                "t_data": 10.0, "t_base": 0.0, "base_std": 0.1 ** 0.5,
                                "analytic_trace": True},
                     solver={"method": "rk4", "steps": 40},
                     train={"lr": 1e-3, "weight_decay": 0.0}),
}


def run_ours(name: str, cfg: dict, iters: int, warmup: int, seed: int) -> dict:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_model(cfg, 2)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg["train"]["lr"],
                           weight_decay=cfg["train"]["weight_decay"])
    gen = torch.Generator().manual_seed(seed)
    times, nfe_f, nfe_b, losses = [], [], [], []
    for _ in range(iters):
        t0 = time.perf_counter()
        # a fresh batch every iteration, as the reference script does (inside its timed region)
        x = torch.from_numpy(toy2d.sample(cfg["data"], cfg["train"]["batch_size"], rng))
        opt.zero_grad(set_to_none=True)
        reset_nfe(model)
        loss, _ = model.loss(x, gen)
        f = count_nfe(model)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
        nfe_f.append(f)
        nfe_b.append(count_nfe(model) - f)
        losses.append(loss.item())
    meter = SavedTensorMeter()
    with torch.autograd.graph.saved_tensors_hooks(meter.pack, meter.unpack):
        x = torch.from_numpy(toy2d.sample(cfg["data"], cfg["train"]["batch_size"], rng))
        loss, _ = model.loss(x, gen)
        loss.backward()
    return summarise(name, times[warmup:], nfe_f[warmup:], nfe_b[warmup:]) | {
        "peak_saved_mib": meter.peak / 2**20, "losses": losses}


def summarise(name: str, times: list[float], nfe_f: list[float], nfe_b: list[float]) -> dict:
    per_nfe = [t / max(f + b, 1) for t, f, b in zip(times, nfe_f, nfe_b, strict=True)]
    return {
        "case": name,
        "iterations_timed": len(times),
        "s_per_iter_median": statistics.median(times),
        "nfe_forward_mean": statistics.fmean(nfe_f),
        "nfe_backward_mean": statistics.fmean(nfe_b),
        "ms_per_nfe_median": 1e3 * statistics.median(per_nfe),
    }


ITER_RE = re.compile(r"Iter (\d+) \| Time ([\d.]+)\([\d.]+\) \| Loss ([-\d.]+)\([-\d.]+\) \| "
                     r"NFE Forward (\d+)\([\d.]+\) \| NFE Backward (\d+)")


def run_reference(ref_dir: Path, iters: int, warmup: int, python: str) -> dict:
    """rtqichen/ffjord train_toy.py at its defaults (8gaussians, concatsquash 64-64-64)."""
    with tempfile.TemporaryDirectory() as save:
        cmd = [python, "train_toy.py", "--data", "8gaussians", "--dims", "64-64-64",
               "--layer_type", "concatsquash", "--niters", str(iters), "--viz_freq", "1000000",
               "--val_freq", "1000000", "--save", save]
        out = subprocess.run(cmd, cwd=ref_dir, capture_output=True, text=True,
                             env={**os.environ, "MPLBACKEND": "Agg"})
    rows = [m.groups() for m in ITER_RE.finditer(out.stdout + out.stderr)]
    if not rows:
        raise RuntimeError("reference run produced no iteration log:\n" + out.stderr[-2000:])
    rows = [(int(i), float(t), float(loss), int(f), int(b)) for i, t, loss, f, b in rows]
    timed = [r for r in rows if r[0] > warmup]
    return summarise("reference_train_toy", [r[1] for r in timed], [r[3] for r in timed],
                     [r[4] for r in timed]) | {"command": " ".join(cmd[:-2])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=4, help="iterations left out of medians")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference-dir", type=Path, help="checkout of rtqichen/ffjord")
    parser.add_argument("--reference-python", default=sys.executable)
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/cnf.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    results = []
    if args.reference_dir:
        results.append(run_reference(args.reference_dir, args.iters, args.warmup,
                                     args.reference_python))
    ours = {name: run_ours(name, CASES[name], args.iters, args.warmup, args.seed)
            for name in args.cases}
    results += list(ours.values())

    ground, fast = ours.get("ffjord_autograd"), ours.get("ffjord_fast")
    checks = {}
    if ground and fast:
        diff = np.abs(np.array(ground["losses"]) - np.array(fast["losses"]))
        checks["fast_vs_autograd_max_abs_loss_diff"] = float(diff.max())
    ref = results[0] if args.reference_dir else None
    if ref:
        for r in results[1:]:
            if r["case"].startswith("ffjord_"):
                nfe_ratio = ((ref["nfe_forward_mean"] + ref["nfe_backward_mean"])
                             / (r["nfe_forward_mean"] + r["nfe_backward_mean"]))
                r["ratio_per_nfe_vs_reference"] = r["ms_per_nfe_median"] / ref["ms_per_nfe_median"]
                r["ratio_per_iter_equal_nfe_vs_reference"] = (
                    r["s_per_iter_median"] * nfe_ratio / ref["s_per_iter_median"])

    print(f"{'case':24s} {'s/iter':>9s} {'NFE f':>7s} {'NFE b':>7s} {'ms/NFE':>8s} "
          f"{'peak MiB':>9s} {'vs ref (equal NFE)':>19s}")
    for r in results:
        ratio = r.get("ratio_per_iter_equal_nfe_vs_reference")
        print(f"{r['case']:24s} {r['s_per_iter_median']:9.4f} {r['nfe_forward_mean']:7.1f} "
              f"{r['nfe_backward_mean']:7.1f} {r['ms_per_nfe_median']:8.3f} "
              f"{r.get('peak_saved_mib', float('nan')):9.2f} "
              f"{'' if ratio is None else f'{ratio:.3f}':>19s}")
    for key, value in checks.items():
        print(f"{key}: {value:.3g}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for r in results:
        r.pop("losses", None)
    args.out.write_text(json.dumps({
        "results": results, "checks": checks, "iters": args.iters, "warmup": args.warmup,
        "threads": args.threads, "torch": torch.__version__, "machine": platform.platform(),
        "cpu_count": os.cpu_count()}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
