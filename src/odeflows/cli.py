"""``odeflows`` command line: the commands the Snakemake rules call, usable on their own too."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from odeflows.config import ConfigError, RunSpec


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scale", required=True, choices=["smoke", "laptop", "paper"])
    p.add_argument("--experiment", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--seed", required=True, type=int)
    p.add_argument("--config-dir", default="config", help="directory with experiments/*.yaml")


def cmd_matrix(args: argparse.Namespace) -> int:
    from odeflows.config import run_matrix

    cfg = {"scale": args.scale, "experiments": args.experiments, "config_dir": args.config_dir}
    specs = run_matrix(cfg)
    print("scale\texperiment\tdataset\tmodel\tseed\trun_dir")
    for s in specs:
        print(f"{s.scale}\t{s.experiment}\t{s.dataset}\t{s.model}\t{s.seed}\t{s.path}")
    print(f"# {len(specs)} runs", file=sys.stderr)
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from odeflows.config import dataset_config
    from odeflows.data.prepared import prepare

    cfg = dataset_config(args.dataset, args.scale, args.config_dir)
    if args.download:
        cfg["download"] = True
    meta = prepare(cfg, args.out)
    print(json.dumps(meta, indent=2))
    return 0


def _spec_and_config(args: argparse.Namespace) -> tuple[RunSpec, dict]:
    from odeflows.config import resolve_run

    spec = RunSpec(args.scale, args.experiment, args.dataset, args.model, args.seed)
    return spec, resolve_run(spec, args.config_dir)


def cmd_train(args: argparse.Namespace) -> int:
    spec, cfg = _spec_and_config(args)
    out = args.out or spec.path
    if cfg["task"] == "memory_profile":
        from odeflows.profiling import profile

        summary = profile(cfg, args.data, out)
    else:
        from odeflows.train import train

        summary = train(cfg, args.data, out, progress=not args.quiet)
    print(json.dumps(summary, indent=2))
    return 0  # a failed run is a result (counted as a failed seed), not a workflow error


def cmd_evaluate(args: argparse.Namespace) -> int:
    from odeflows.provenance import read_json

    cfg = read_json(Path(args.run) / "config.json")
    if cfg["task"] == "memory_profile":
        from odeflows.aggregate import evaluate_profile

        result = evaluate_profile(args.run)
    else:
        from odeflows.evaluate import evaluate

        result = evaluate(args.run, args.data)
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_aggregate(args: argparse.Namespace) -> int:
    from odeflows.aggregate import aggregate

    paths = aggregate(args.scale, args.experiment, args.out_dir, args.config_dir,
                      args.reference)
    print("\n".join(map(str, paths)))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from odeflows.plots import plot_experiment

    paths = plot_experiment(args.scale, args.experiment, args.out_dir, args.config_dir)
    print("\n".join(map(str, paths)))
    return 0


def cmd_claims(args: argparse.Namespace) -> int:
    from odeflows.claims import write_claims, write_metrics

    claims = write_claims(args.scale, args.tables_dir, args.out)
    if args.metrics:
        write_metrics(args.tables_dir, args.metrics, claims)
    print(args.out)
    return 0


def cmd_parameters(args: argparse.Namespace) -> int:
    from odeflows.parameters import write_parameter_table

    for path in write_parameter_table(args.out_dir, args.config_dir):
        print(path)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from odeflows.config import run_matrix

    specs = run_matrix({"scale": args.scale, "experiments": args.experiments,
                        "config_dir": args.config_dir})
    print(f"configuration valid: {len(specs)} runs at scale {args.scale}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from odeflows.audit import audit, format_report

    report = audit(args.table, verify=args.verify)
    print(format_report(report))
    if args.verify:
        print("verify: OK — every cell recomputed from the per-seed files and every hash matches"
              if report.ok else "verify: FAILED")
    return 0 if report.ok else 1


def cmd_show(args: argparse.Namespace) -> int:
    from odeflows.api import load_run

    run = load_run(args.run)
    info = {"config": run.config, "evaluation": run.evaluation,
            "parameters": sum(p.numel() for p in run.model.parameters())}
    print(json.dumps(info, indent=2, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="odeflows",
        description="Reproduce neural-ODE papers (FFJORD, AFFJORD, RNODE, ANODE, adjoint). "
                    "Normally driven by `snakemake`; each stage can also be run by hand.")
    sub = parser.add_subparsers(dest="command", required=True)
    from odeflows.config import EXPERIMENTS as experiments

    p = sub.add_parser("matrix", help="list the run matrix of a scale (TSV)")
    p.add_argument("--scale", default="laptop", choices=["smoke", "laptop", "paper"])
    p.add_argument("--experiments", nargs="+", default=list(experiments),
                   help="default: every experiment")
    p.add_argument("--config-dir", default="config")
    p.set_defaults(func=cmd_matrix)

    p = sub.add_parser("parameters", help="parameter counts of the paper configurations beside "
                       "the papers' (AFFJORD Table 2, RNODE Table 2, ANODE App. F.2.2)")
    p.add_argument("--out-dir", required=True, help="writes parameters.csv and parameters.md")
    p.add_argument("--config-dir", default="config")
    p.set_defaults(func=cmd_parameters)

    p = sub.add_parser("validate", help="validate the configuration of a scale")
    p.add_argument("--scale", default="laptop", choices=["smoke", "laptop", "paper"])
    p.add_argument("--experiments", nargs="+", default=list(experiments),
                   help="default: every experiment")
    p.add_argument("--config-dir", default="config")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("prepare", help="generate a dataset's fixed train/val/test splits (image "
                       "sets: read data/raw/<name>, see --download)")
    p.add_argument("--dataset", required=True)
    p.add_argument("--scale", required=True, choices=["smoke", "laptop", "paper"])
    p.add_argument("--download", action="store_true",
                   help="image sets torchvision can fetch: download the raw files into "
                        "data/raw/<name> first (needs network access)")
    p.add_argument("--out", required=True, help="output .npz (a .json sidecar is written too)")
    p.add_argument("--config-dir", default="config")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", help="train (or resume) one run; memory profiles for node_adjoint")
    _add_run_args(p)
    p.add_argument("--data", required=True, help="prepared dataset .npz")
    p.add_argument("--out", help="run directory (default results/<scale>/runs/...)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a finished run on its test split")
    p.add_argument("--run", required=True, help="run directory")
    p.add_argument("--data", required=True, help="prepared dataset .npz")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("aggregate", help="tables (CSV, Markdown, provenance) of one experiment")
    p.add_argument("--scale", required=True, choices=["smoke", "laptop", "paper"])
    p.add_argument("--experiment", required=True, choices=experiments)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--config-dir", default="config")
    p.add_argument("--reference", default=None, help="paper numbers YAML (default: packaged)")
    p.set_defaults(func=cmd_aggregate)

    p = sub.add_parser("plot", help="figures (PNG and PDF) of one experiment")
    p.add_argument("--scale", required=True, choices=["smoke", "laptop", "paper"])
    p.add_argument("--experiment", required=True, choices=experiments)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--config-dir", default="config")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("claims", help="verdicts on the SPEC claims this scale can test")
    p.add_argument("--scale", required=True, choices=["smoke", "laptop", "paper"])
    p.add_argument("--tables-dir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--metrics", help="also write headline numbers as JSON (for dvc metrics)")
    p.set_defaults(func=cmd_claims)

    p = sub.add_parser("audit", help="show the runs behind every cell of a table; --verify "
                                     "recomputes cells and checks hashes")
    p.add_argument("table", help="results/<scale>/tables/<experiment>.csv")
    p.add_argument("--verify", action="store_true",
                   help="recompute every cell from per-seed files and check every hash; "
                        "exit 1 on any mismatch")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("show", help="print a finished run's config, evaluation and size")
    p.add_argument("run", help="run directory")
    p.set_defaults(func=cmd_show)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"odeflows: {err}", file=sys.stderr)
        return 2
    except FileNotFoundError as err:
        print(f"odeflows: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
