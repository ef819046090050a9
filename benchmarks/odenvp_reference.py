"""Steady training steps of rtqichen/ffjord's multiscale ``ODENVP`` (the reference), timed.

Run by ``bench_cnf.py`` in a subprocess, beside our ``MultiscaleCNF`` on the same images and
settings. The model is built as FFJORD's ``train_cnf.py --multiscale True`` builds it
(``create_model``'s multiscale branch and ``set_cnf_options`` / ``create_regularization_fns`` from
its ``train_misc.py``): ``ODENVP`` with concat convs, softplus, logit transform, T = 1 trained
(``train_T``), Rademacher probe, ``odeint_adjoint``; its loop body per step: zero_grad, bits/dim
(``compute_bits_per_dim``), backward, ``clip_grad_norm_`` (its ``max_grad_norm`` default),
Adam step. Prints one JSON line per step: {"iter", "seconds", "cpu_seconds", "nfe_forward",
"nfe_backward", "loss", "warmup"}.

    python odenvp_reference.py --ffjord-dir /tmp/ffjord --images x.pt --iters 3 --warmup 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ffjord-dir", type=Path, required=True)
    parser.add_argument("--images", type=Path, required=True, help="a (B, C, H, W) tensor file")
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tol", type=float, default=1e-5)
    parser.add_argument("--method", default="dopri5")
    parser.add_argument("--dims", default="64,64,64")
    parser.add_argument("--num-blocks", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(args.ffjord_dir.resolve()))
    import lib.odenvp as odenvp  # noqa: PLC0415 (the reference checkout is only known now)
    import train_misc  # noqa: PLC0415

    x = torch.load(args.images)
    torch.manual_seed(args.seed)
    # train_cnf.py's argument defaults that its model-building helpers read
    ref_args = argparse.Namespace(
        solver=args.method, atol=args.tol, rtol=args.tol, step_size=None, test_solver=None,
        test_atol=None, test_rtol=None, rademacher=True, residual=False,
        l1int=None, l2int=None, dl2int=None, JFrobint=None, JdiagFrobint=None,
        JoffdiagFrobint=None)
    regularization_fns, _ = train_misc.create_regularization_fns(ref_args)
    model = odenvp.ODENVP(
        (x.shape[0], *x.shape[1:]), n_blocks=args.num_blocks,
        intermediate_dims=tuple(int(d) for d in args.dims.split(",")), nonlinearity="softplus",
        alpha=1e-6, cnf_kwargs={"T": 1.0, "train_T": True,
                                "regularization_fns": regularization_fns})
    train_misc.set_cnf_options(ref_args, model)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=0.0)

    def bits_per_dim(x: torch.Tensor) -> torch.Tensor:  # train_cnf.compute_bits_per_dim
        zero = torch.zeros(x.shape[0], 1).to(x)
        z, delta_logp = model(x, zero)
        logpz = train_misc.standard_normal_logprob(z).view(z.shape[0], -1).sum(1, keepdim=True)
        logpx = logpz - delta_logp
        logpx_per_dim = torch.sum(logpx) / x.nelement()
        return -(logpx_per_dim - np.log(256)) / np.log(2)

    for itr in range(args.warmup + args.iters):
        start, cpu_start = time.perf_counter(), time.process_time()
        optimizer.zero_grad()
        loss = bits_per_dim(x)
        nfe_forward = train_misc.count_nfe(model)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1e10)
        optimizer.step()
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        total = train_misc.count_nfe(model)
        print(json.dumps({"iter": itr, "seconds": seconds, "cpu_seconds": cpu_seconds,
                          "nfe_forward": nfe_forward,
                          "nfe_backward": total - nfe_forward, "loss": loss.item(),
                          "warmup": itr < args.warmup}), flush=True)


if __name__ == "__main__":
    main()
