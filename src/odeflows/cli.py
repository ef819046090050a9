"""``odeflows`` command line: the commands the Snakemake rules call, usable on their own too.

Imports are deferred to the command that needs them: ``odeflows --help`` and the light commands
start without loading torch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from odeflows.config import ConfigError

__all__ = ["TABLE_BEGIN", "TABLE_END", "main"]


def _names(kind: str, config_dir: str = "config") -> str:
    """Known scales / experiments of the default config dir, for --help (never fails)."""
    try:
        if kind == "scales":
            from odeflows.config import load_scales

            return ", ".join(load_scales(config_dir))
        from odeflows.config import experiment_ids

        return ", ".join(experiment_ids(config_dir)) or "none found"
    except (ConfigError, OSError):
        return f"see {config_dir}/"


def _config_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config-dir", default="config",
                   help="directory with scales.yaml, datasets.yaml and experiments/*.yaml")


def _scale(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--scale", required=required, default=None if required else "laptop",
                   help=f"a scale of config/scales.yaml ({_names('scales')})"
                        + ("" if required else "; default laptop"))


def _modules(p: argparse.ArgumentParser) -> None:
    p.add_argument("--modules", nargs="+", help="the user's own modules to import (those of "
                   "config/config.yaml; an experiment's own are imported from its file)")


def _add_run_args(p: argparse.ArgumentParser) -> None:
    _scale(p)
    p.add_argument("--experiment", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--model", required=True, help="a model or variant of the experiment")
    p.add_argument("--seed", required=True, type=int)
    _modules(p)
    _config_dir(p)


def _workflow(args: argparse.Namespace) -> dict[str, Any]:
    cfg: dict[str, Any] = {"scale": args.scale, "config_dir": args.config_dir}
    if getattr(args, "experiments", None):
        cfg["experiments"] = args.experiments
    if getattr(args, "modules", None):
        cfg["modules"] = args.modules
    return cfg


def cmd_matrix(args: argparse.Namespace) -> int:
    from odeflows.config import plan

    specs = plan(_workflow(args)).runs
    print("scale\texperiment\tdataset\tmodel\tseed\trun_dir")
    for s in specs:
        print(f"{s.scale}\t{s.experiment}\t{s.dataset}\t{s.model}\t{s.seed}\t{s.path}")
    print(f"# {len(specs)} runs", file=sys.stderr)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from odeflows.config import plan

    p = plan(_workflow(args))
    print(f"configuration valid: {len(p.runs)} runs of {len(p.experiments)} experiments at "
          f"scale {p.scale}")
    return 0


def _load_modules(args: argparse.Namespace) -> None:
    from odeflows import plugins

    plugins.load(getattr(args, "modules", None) or [])


def cmd_prepare(args: argparse.Namespace) -> int:
    from odeflows.config import dataset_config
    from odeflows.data.prepared import prepare

    _load_modules(args)
    cfg = dataset_config(args.dataset, args.scale, args.config_dir)
    if args.download:
        cfg["download"] = True
    meta = prepare(cfg, args.out)
    print(json.dumps(meta, indent=2))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from odeflows.config import resolve_run
    from odeflows.data.prepared import verify
    from odeflows.rundir import RunSpec
    from odeflows.tasks import get_task

    spec = RunSpec(args.scale, args.experiment, args.dataset, args.model, args.seed)
    cfg = resolve_run(spec, args.config_dir, args.modules or ())
    verify(args.data)  # before the run directory exists: a bad input leaves nothing behind
    summary = get_task(cfg["task"]).execute(cfg, args.data, args.out or spec.path,
                                            progress=not args.quiet)
    print(json.dumps(summary, indent=2))
    return 0  # a failed run is a result (counted as a failed seed), not a workflow error


def cmd_evaluate(args: argparse.Namespace) -> int:
    from odeflows.data.prepared import verify
    from odeflows.rundir import RunDir
    from odeflows.tasks import get_task

    cfg = RunDir(args.run).config()
    if cfg is None:
        raise FileNotFoundError(f"{Path(args.run) / 'config.json'} is missing: train the run "
                                "first")
    verify(args.data)
    result = get_task(cfg["task"]).evaluate_run(args.run, args.data)
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_tables(args: argparse.Namespace) -> int:
    from odeflows.tables import write_tables

    paths = write_tables(args.scale, args.experiment, args.out_dir, args.config_dir,
                         args.reference, args.modules or ())
    print("\n".join(map(str, paths)))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from odeflows.figures.plot import plot_experiment

    paths = plot_experiment(args.scale, args.experiment, args.out_dir, args.config_dir,
                            args.modules or ())
    print("\n".join(map(str, paths)))
    return 0


def cmd_claims(args: argparse.Namespace) -> int:
    from odeflows.claims import write_claims, write_metrics

    _load_modules(args)
    claims = write_claims(args.scale, args.tables_dir, args.out, args.config_dir,
                          args.report_dir)
    if args.metrics:
        write_metrics(args.tables_dir, args.metrics, claims)
    print(args.out)
    return 0


# The README's claims table lies between these lines; everything between them is rewritten.
TABLE_BEGIN = ("<!-- claims table: written by `odeflows claims-table --write README.md`; edit "
               "its sources, not this -->")
TABLE_END = "<!-- end of claims table -->"


def _splice(text: str, table: str, path: str) -> str:
    """``text`` with the part between the table's markers replaced by ``table``."""
    if text.count(TABLE_BEGIN) != 1 or text.count(TABLE_END) != 1:
        raise FileNotFoundError(f"{path} has no claims table: it needs the lines {TABLE_BEGIN} "
                                f"and {TABLE_END} once each")
    head, rest = text.split(TABLE_BEGIN)
    _, tail = rest.split(TABLE_END)
    return f"{head}{TABLE_BEGIN}\n{table}{TABLE_END}{tail}"


def cmd_claims_table(args: argparse.Namespace) -> int:
    from odeflows.claims.report import claims_table, format_record, record_verdicts

    _load_modules(args)
    record_path = Path(args.record)
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    if args.update_from:
        results = Path(args.update_from)
        try:
            record = record_verdicts(record, args.scale or results.name, results,
                                     commit=args.commit, date=args.date, how=args.how or "")
        except ValueError as err:
            print(f"odeflows: {err}", file=sys.stderr)
            return 2
        record_path.write_text(format_record(record))
        print(f"{record_path}: {args.scale or results.name} from {results / 'claims.json'}",
              file=sys.stderr)
    table = claims_table(record, args.config_dir)
    if args.check:
        text = Path(args.check).read_text()
        if _splice(text, table, args.check) != text:
            print(f"odeflows: the claims table of {args.check} differs from the claims, "
                  f"{args.config_dir}/scales.yaml and {record_path}: rewrite it with "
                  f"`odeflows claims-table --write {args.check}`", file=sys.stderr)
            return 1
        print(f"{args.check}: the claims table is up to date")
    elif args.write:
        path = Path(args.write)
        path.write_text(_splice(path.read_text(), table, args.write))
        print(path)
    else:
        print(table, end="")
    return 0


def cmd_parameter_counts(args: argparse.Namespace) -> int:
    from odeflows.parameter_counts import write_parameter_table

    for path in write_parameter_table(args.out_dir, args.config_dir, args.experiments):
        print(path)
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from odeflows.audit import audit, audit_tree, format_report, format_tree

    if Path(args.table).is_dir():
        if not args.verify:
            raise FileNotFoundError(f"{args.table} is a directory: audit it as a whole with "
                                    f"`odeflows audit {args.table} --verify`, or show one table "
                                    f"with `odeflows audit {args.table}/tables/<experiment>.csv`")
        tree = audit_tree(args.table, accept_code_changes=args.accept_code_changes)
        print(format_tree(tree))
        return 0 if tree.ok else 1
    report = audit(args.table, verify=args.verify, accept_code_changes=args.accept_code_changes)
    print(format_report(report))
    if args.verify:
        print("verify: OK — every cell recomputed from the per-seed files, every hash matches "
              "and the code is this tree's" if report.ok else "verify: FAILED")
    return 0 if report.ok else 1


def cmd_show(args: argparse.Namespace) -> int:
    from odeflows.api import load_run

    run = load_run(args.run)
    info = {"config": run.config, "evaluation": run.evaluation,
            "parameters": sum(p.numel() for p in run.model.parameters())}
    print(json.dumps(info, indent=2, default=str))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from odeflows import plugins
    from odeflows.models import MODELS

    plugins.load(args.modules or [])
    for entry in sorted(MODELS.all(), key=lambda e: (e.name, e.data)):
        opts = ", ".join(f"{k}={v['default']!r}" if "default" in v else f"{k} (required)"
                         for k, v in entry.options.items())
        print(f"{entry.name} [{entry.data}; {'/'.join(sorted(entry.kinds))}"
              f"{'; samples' if entry.samples else ''}] {entry.description}\n    {opts}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="odeflows",
        description="Reproduce neural-ODE papers (FFJORD, AFFJORD, RNODE, ANODE, adjoint). "
                    "Normally driven by `snakemake`; each stage can also be run by hand. "
                    "Configuration errors are reported all at once, before anything runs.")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_matrix(p: argparse.ArgumentParser) -> None:
        _scale(p, required=False)
        p.add_argument("--experiments", nargs="+",
                       help=f"default: every experiment ({_names('experiments')})")
        _modules(p)
        _config_dir(p)

    p = sub.add_parser("matrix", help="list the run matrix of a scale (TSV)")
    with_matrix(p)
    p.set_defaults(func=cmd_matrix)

    p = sub.add_parser("validate", help="check the whole configuration of a scale; every "
                                        "problem is listed, nothing is run")
    with_matrix(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("models", help="list the registered models, their kinds and options")
    _modules(p)
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("parameter-counts", help="parameter counts of the paper configurations "
                       "beside the papers' (AFFJORD Table 2, RNODE Table 2, ANODE App. F.2.2)")
    p.add_argument("--out-dir", required=True, help="writes parameters.csv and parameters.md")
    p.add_argument("--experiments", nargs="+",
                   help="default: every experiment with paper-scale settings")
    _config_dir(p)
    p.set_defaults(func=cmd_parameter_counts)

    p = sub.add_parser("prepare", help="generate a dataset's fixed train/val/test splits (image "
                       "sets: read data/raw/<name>, see --download)")
    p.add_argument("--dataset", required=True, help="a dataset of config/datasets.yaml")
    _scale(p)
    p.add_argument("--download", action="store_true",
                   help="image sets torchvision can fetch: download the raw files into "
                        "data/raw/<name> first (needs network access)")
    p.add_argument("--out", required=True, help="output .npz (a .json sidecar is written too)")
    _modules(p)
    _config_dir(p)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", help="train (or resume) one run; memory-profile experiments "
                                     "profile instead")
    _add_run_args(p)
    p.add_argument("--data", required=True, help="prepared dataset .npz")
    p.add_argument("--out", help="run directory (default results/<scale>/runs/...)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a finished run on its test split")
    p.add_argument("--run", required=True, help="run directory")
    p.add_argument("--data", required=True, help="prepared dataset .npz")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("tables", help="tables (CSV, Markdown, provenance) of one experiment")
    _scale(p)
    p.add_argument("--experiment", required=True, help=_names("experiments"))
    p.add_argument("--out-dir", required=True)
    _config_dir(p)
    p.add_argument("--reference", default=None, help="paper numbers YAML (default: packaged)")
    _modules(p)
    p.set_defaults(func=cmd_tables)

    p = sub.add_parser("plot", help="figures (PNG and PDF) of one experiment")
    _scale(p)
    p.add_argument("--experiment", required=True, help=_names("experiments"))
    p.add_argument("--out-dir", required=True)
    _modules(p)
    _config_dir(p)
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("claims", help="verdicts on the papers' claims this scale can test")
    _scale(p)
    p.add_argument("--tables-dir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--metrics", help="also write a directory of small JSON files, one per claim "
                   "and one per experiment, for `dvc metrics show/diff`")
    p.add_argument("--report-dir", help="also write the HTML report's front page (front.rst: "
                   "the claims table) and one evidence page per claim (claim_NN.html)")
    _modules(p)
    _config_dir(p)
    p.set_defaults(func=cmd_claims)

    p = sub.add_parser("claims-table", help="the README's claims table: every claim with its "
                       "paper reference and the verdicts last measured per scale (printed, "
                       "written into a file or checked against it)")
    p.add_argument("--record", default="docs/claims-status.json",
                   help="the verdicts last measured per scale (default docs/claims-status.json)")
    p.add_argument("--update-from", metavar="RESULTS",
                   help="first replace a scale's verdicts in the record by those of "
                        "RESULTS/claims.json (a results/<scale> tree)")
    p.add_argument("--scale", help="with --update-from: the scale (default: RESULTS's name)")
    p.add_argument("--commit", help="with --update-from: the commit the tables were made by "
                   "(default: the one their per-seed files name)")
    p.add_argument("--date", help="with --update-from: the day measured (default: the day "
                   "claims.json was written, UTC)")
    p.add_argument("--how", help="with --update-from: how it was measured, in a few words "
                   "(\"a clean clone; 2 cores\")")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--write", metavar="FILE", help="rewrite the table between its markers in "
                     "FILE (README.md)")
    out.add_argument("--check", metavar="FILE", help="exit 1 if FILE's table differs from the "
                     "rendering")
    _modules(p)
    _config_dir(p)
    p.set_defaults(func=cmd_claims_table)

    p = sub.add_parser("audit", help="show the runs behind every cell of a table; --verify "
                                     "recomputes cells and checks hashes and code versions, of "
                                     "one table or of a whole results/<scale> tree")
    p.add_argument("table", help="results/<scale>/tables/<experiment>.csv, or results/<scale> "
                                 "(with --verify; run from the project directory)")
    p.add_argument("--verify", action="store_true",
                   help="recompute every cell from per-seed files, check every hash and that "
                        "each run was made by this tree's code; for results/<scale> also the "
                        "prepared data, uncited run directories and `dvc status`; exit 1 on "
                        "any mismatch")
    p.add_argument("--accept-code-changes", action="store_true",
                   help="with --verify: report results made by other code, but do not fail")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("show", help="print a finished run's config, evaluation and size")
    p.add_argument("run", help="run directory")
    p.set_defaults(func=cmd_show)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from odeflows.data.images import CorruptRawData
    from odeflows.data.prepared import PreparedDataError
    from odeflows.plugins import PluginError
    from odeflows.registry import UnknownName

    try:
        return args.func(args)
    except ConfigError as err:
        print(f"odeflows: {err}", file=sys.stderr)
        return 2
    except (FileNotFoundError, UnknownName, PluginError, PreparedDataError,
            CorruptRawData) as err:
        print(f"odeflows: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader went away (`odeflows matrix | head`): not an error; keep Python's exit-time
        # flush of stdout from raising again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
