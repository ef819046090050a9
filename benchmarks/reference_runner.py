"""Run a reference training script unmodified and time its own loop body, iteration by iteration.

Used by ``bench_cnf.py`` for scripts that print no timings (ehaxholli/ANODEF
``hash_gaussian/examples/cnf_augmented.py`` and ``cnf_normal.py``, rtqichen/torchdiffeq
``examples/cnf.py``). The script runs as ``__main__`` from its own directory (so ANODEF's vendored
torchdiffeq is the one it imports, as when it is run by hand), with three hooks and no edit:

- ``print`` and ``logging.Logger.info``: the script reports one ``Iter`` line per training
  iteration; the time between consecutive lines (wall and process CPU time) is the time of one
  whole loop body (batch sampling, solve, backward, Adam step). After ``--iters`` lines the run
  stops (SystemExit), skipping whatever the script does after training.
- ``torchdiffeq.odeint`` / ``odeint_adjoint``: wrapped to count the evaluations of the script's
  right-hand side (forward NFE inside the call, backward NFE until the next ``Iter`` line).
- ``--grid-steps N`` (optional): a training-time grid of evenly spaced times (ANODEF's
  ``np.linspace(t1, t0, 21)``, i.e. 20 RK4 steps) is replaced by N + 1 points over the same
  interval, so the fixed-grid reference can be run at the paper's 40 steps. Only the final state
  is used by the scripts, so only the number of steps changes.

Prints one JSON line per iteration: {"iter", "seconds", "cpu_seconds", "nfe_forward",
"nfe_backward", "loss"}.

    python reference_runner.py SCRIPT --iters 50 [--grid-steps 40] [-- script args]
"""

from __future__ import annotations

import argparse
import builtins
import json
import logging
import os
import re
import runpy
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("script", type=Path)
    parser.add_argument("--iters", type=int, required=True)
    parser.add_argument("--grid-steps", type=int)
    parser.add_argument("--threads", type=int)
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:cut])
    script = args.script.resolve()
    os.chdir(script.parent)
    sys.path.insert(0, str(script.parent))  # the script's own imports (vendored torchdiffeq)
    sys.argv = [str(script), *argv[cut + 1:]]

    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    import torchdiffeq

    nfe = [0]

    class Counter(torch.nn.Module):
        """The script's right-hand side, counted; its parameters are the adjoint's."""

        def __init__(self, func):
            super().__init__()
            self.func = func

        def forward(self, t, y, *a, **kw):
            nfe[0] += 1
            return self.func(t, y, *a, **kw)

    def regrid(t):
        if args.grid_steps and t.numel() > 2 and t.dim() == 1:
            return torch.linspace(float(t[0]), float(t[-1]), args.grid_steps + 1,
                                  dtype=t.dtype, device=t.device)
        return t

    def wrap(solve):
        def counted(func, y0, t, *a, **kw):
            return solve(Counter(func), y0, regrid(t), *a, **kw)
        return counted

    torchdiffeq.odeint = wrap(torchdiffeq.odeint)
    torchdiffeq.odeint_adjoint = wrap(torchdiffeq.odeint_adjoint)

    # forward NFE: counted by each odeint call; backward = the rest of the iteration
    forward_nfe = {"n": 0}
    iter_re = re.compile(r"Iter:? (\d+)")
    loss_re = re.compile(r"loss:? ([-\d.]+)", re.IGNORECASE)
    state = {"last": None, "cpu_last": None, "nfe_at_last": 0, "count": 0}
    real_print = builtins.print

    def on_line(text: str) -> bool:
        """Record an iteration if ``text`` is an ``Iter`` line; whether it was one."""
        m = iter_re.match(text)
        if not m:
            return False
        now, cpu = time.perf_counter(), time.process_time()
        if state["last"] is not None:
            real_print(json.dumps({"iter": int(m.group(1)), "seconds": now - state["last"],
                                   "cpu_seconds": cpu - state["cpu_last"],
                                   "nfe_forward": forward_nfe["n"],
                                   "nfe_backward": nfe[0] - state["nfe_at_last"]
                                   - forward_nfe["n"],
                                   "loss": float(loss_re.search(text).group(1))
                                   if loss_re.search(text) else None}), flush=True)
        state["count"] += 1
        state["nfe_at_last"] = nfe[0]
        state["last"], state["cpu_last"] = time.perf_counter(), time.process_time()
        if state["count"] > args.iters:
            raise SystemExit(0)
        return True

    def timed_print(*values, **kw):
        if not on_line(" ".join(str(v) for v in values)):
            real_print(*values, **kw)

    real_info = logging.Logger.info

    def timed_info(self, msg, *a, **kw):  # ffjord's train_toy.py logs instead of printing
        real_info(self, msg, *a, **kw)
        on_line(str(msg) % a if a else str(msg))

    logging.Logger.info = timed_info


    def split(solve):
        def inner(func, y0, t, *a, **kw):
            before = nfe[0]
            out = solve(func, y0, t, *a, **kw)
            forward_nfe["n"] = nfe[0] - before
            return out
        return inner

    torchdiffeq.odeint = split(torchdiffeq.odeint)
    torchdiffeq.odeint_adjoint = split(torchdiffeq.odeint_adjoint)
    try:
        runpy.run_path(str(script), init_globals={"print": timed_print}, run_name="__main__")
    except SystemExit:
        pass


if __name__ == "__main__":
    main()
