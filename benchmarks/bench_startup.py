"""Start-up cost of the workflow's processes that do not train: the same commands run against two
versions of the package, in alternating rounds, medians reported with their ratio.

Each command runs in a project directory (one where the workflow ran at some scale, so that
`odeflows tables` and `claims` find runs and tables) with ``PYTHONPATH`` pointing at one
version's ``src``. Example, comparing a commit with the working tree::

    git worktree add /tmp/before <commit>
    python benchmarks/bench_startup.py --project /tmp/smoke-run \
        --before /tmp/before/src --after src --rounds 7

Nothing here is a test: the numbers depend on the machine and what else it is doing, which is why
rounds alternate and medians are compared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = {
    "snakemake -n (plan the DAG)": ["snakemake", "-n", "--config", "scale={scale}"],
    "odeflows validate": ["odeflows", "validate", "--scale", "{scale}"],
    "odeflows tables": ["odeflows", "tables", "--scale", "{scale}", "--experiment",
                        "anode_toy", "--out-dir", "{tmp}/tables", "--config-dir", "config"],
    "odeflows claims": ["odeflows", "claims", "--scale", "{scale}", "--tables-dir",
                        "results/{scale}/tables", "--out", "{tmp}/claims.md", "--metrics",
                        "{tmp}/metrics", "--report-dir", "{tmp}/report", "--config-dir", "config"],
}


def timed(cmd: list[str], cwd: Path, src: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(src.resolve()), "MPLBACKEND": "Agg"}
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with {src}:\n{out.stderr[-2000:]}")
    return seconds


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--project", type=Path, required=True,
                    help="project directory where the workflow ran at --scale")
    ap.add_argument("--before", type=Path, required=True, help="src/ of the baseline version")
    ap.add_argument("--after", type=Path, required=True, help="src/ of the version to compare")
    ap.add_argument("--scale", default="smoke")
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args(argv)
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / "bench_startup"
    times: dict[tuple[str, str], list[float]] = {}
    for r in range(args.rounds):
        order = [("before", args.before), ("after", args.after)]
        for label, src in order if r % 2 == 0 else order[::-1]:
            for name, template in COMMANDS.items():
                cmd = [part.format(scale=args.scale, tmp=tmp / label) for part in template]
                times.setdefault((name, label), []).append(timed(cmd, args.project, src))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    print("| command | before (s) | after (s) | after / before |\n|---|---|---|---|")
    for name in COMMANDS:
        b = statistics.median(times[(name, "before")])
        a = statistics.median(times[(name, "after")])
        print(f"| {name} | {b:.2f} | {a:.2f} | {a / b:.2f} |")


if __name__ == "__main__":
    main()
