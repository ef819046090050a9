"""Run a reference training script unmodified and time its own loop body, iteration by iteration.

Used by ``bench_cnf.py`` for scripts that print no timings (ehaxholli/ANODEF
``hash_gaussian/examples/cnf_augmented.py`` and ``cnf_normal.py``, rtqichen/torchdiffeq
``examples/cnf.py``). The script runs as ``__main__`` from its own directory (so ANODEF's vendored
torchdiffeq is the one it imports, as when it is run by hand), with three hooks and no edit:

- ``print``: the script prints one ``Iter`` line per training iteration; the time between
  consecutive lines is the time of one whole loop body (batch sampling, solve, backward, Adam
  step). After ``--iters`` lines the run stops (SystemExit), skipping the script's visualisation.
- ``torchdiffeq.odeint`` / ``odeint_adjoint``: wrapped to count the evaluations of the script's
  right-hand side (forward NFE inside the call, backward NFE until the next ``Iter`` line).
- ``--grid-steps N`` (optional): a training-time grid of evenly spaced times (ANODEF's
  ``np.linspace(t1, t0, 21)``, i.e. 20 RK4 steps) is replaced by N + 1 points over the same
  interval, so the fixed-grid reference can be run at the paper's 40 steps. Only the final state
  is used by the scripts, so only the number of steps changes.

Prints one JSON line per iteration: {"iter", "seconds", "nfe_forward", "nfe_backward",
"loss"}.

    python reference_runner.py SCRIPT --iters 50 [--grid-steps 40] [-- script args]
"""

from __future__ import annotations

import argparse
import builtins
import json
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
    loss_re = re.compile(r"loss:? ([-\d.]+)")
    state = {"last": None, "nfe_at_last": 0, "count": 0}
    real_print = builtins.print

    def timed_print(*values, **kw):
        text = " ".join(str(v) for v in values)
        m = iter_re.match(text)
        if not m:
            return real_print(*values, **kw)
        now = time.perf_counter()
        if state["last"] is not None:
            real_print(json.dumps({"iter": int(m.group(1)), "seconds": now - state["last"],
                                   "nfe_forward": forward_nfe["n"],
                                   "nfe_backward": nfe[0] - state["nfe_at_last"]
                                   - forward_nfe["n"],
                                   "loss": float(loss_re.search(text).group(1))
                                   if loss_re.search(text) else None}), flush=True)
        state["count"] += 1
        state["nfe_at_last"] = nfe[0]
        state["last"] = time.perf_counter()
        if state["count"] > args.iters:
            raise SystemExit(0)


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
