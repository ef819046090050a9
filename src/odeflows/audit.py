"""Audit a table: show the runs behind every row, and with ``verify`` recompute every cell from
the per-seed files, check every recorded hash, and check that the code which produced each run
is the code in this tree. :func:`audit_tree` does that for every table of ``results/<scale>``
and also checks the prepared data against their sidecars, lists run directories no table cites
and asks DVC whether the tree matches ``dvc.lock``: the one command to run after ``dvc pull``.

The provenance sidecar (``<table>.provenance.json``, written by ``odeflows tables``) names, per
row, the run directories with their seed, config hash, code versions, git commit and dirty flag,
data hash, package versions, device and the MD5 of their files (MD5 is what DVC records in
``dvc.lock`` for each file, so a checkpoint's hash can be matched against DVC's). Code versions
are judged by the content of the code that computes a result (see
:func:`odeflows.versions.code_version`), not by the commit: a docs-only commit changes nothing.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from odeflows import provenance, versions
from odeflows.data.prepared import PreparedDataError, regenerate_hint
from odeflows.data.prepared import verify as verify_prepared
from odeflows.provenance import config_hash
from odeflows.rundir import RunDir
from odeflows.tables import TableTask, reference_numbers, run_rows
from odeflows.tasks import get_task

__all__ = ["AuditReport", "TreeReport", "audit", "audit_tree", "format_report", "format_tree",
           "sidecar_of"]


@dataclass
class AuditReport:
    table: Path
    rows: list[dict[str, Any]]
    problems: list[str] = field(default_factory=list)
    code_changes: list[str] = field(default_factory=list)  # reported; fatal unless accepted
    accept_code_changes: bool = False
    datasets: set[str] = field(default_factory=set)  # prepared files the runs were trained on

    @property
    def ok(self) -> bool:
        return not self.problems and (self.accept_code_changes or not self.code_changes)

    @property
    def runs(self) -> list[str]:
        return list(dict.fromkeys(r["run_dir"] for row in self.rows for r in row["runs"]))


def sidecar_of(table: str | Path) -> Path:
    table = Path(table)
    side = table.with_name(table.stem + ".provenance.json")
    if not side.exists():
        raise FileNotFoundError(f"no provenance sidecar {side} next to {table}; regenerate it "
                                f"with `snakemake --forcerun tables {table}`")
    return side


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return str(a) == str(b)
    fa, fb = float(a), float(b)
    if math.isnan(fa) and math.isnan(fb):
        return True
    return math.isclose(fa, fb, rel_tol=1e-9, abs_tol=1e-12)


def _recorded_code(recorded: Any) -> tuple[str | None, dict[str, str]]:
    """(version, module digests) of a recorded code version: memory-profile evaluations store
    the whole ``code_version()`` result, every other record only its version string."""
    if isinstance(recorded, dict):
        return recorded.get("version"), recorded.get("modules") or {}
    return recorded, {}


def _check_run(run: dict[str, Any], problems: list[str], code: list[str], where: str,
               datasets: set[str]) -> None:
    rd = RunDir(run["run_dir"])
    for name, recorded in (run.get("file_md5") or {}).items():
        f = rd.file(name)
        if not f.exists():
            problems.append(f"{where}: {f} is missing (recorded md5 {recorded})")
        elif provenance.md5_file(f) != recorded:
            problems.append(f"{where}: {f} has changed since the table was made "
                            f"(md5 {provenance.md5_file(f)} != recorded {recorded})")
    cfg = rd.config()
    if run.get("config_hash") and cfg is not None and config_hash(cfg) != run["config_hash"]:
        problems.append(f"{where}: {rd.file('config.json')} does not hash to the recorded "
                        f"config hash {run['config_hash']}")
    record = rd.record()
    data = record.get("data", {})
    path, sha = data.get("path"), data.get("sha256")
    if path:
        datasets.add(path)
    if path and sha and Path(path).exists() and provenance.sha256_current(path) != sha:
        problems.append(f"{where}: dataset {path} no longer matches the hash the run "
                        f"recorded ({sha[:12]}…); {regenerate_hint(path, data.get('dataset'))}")
    if cfg is None:
        return
    for stage, stored, train_modules in (
            ("train", record.get("code_version"), record.get("code_modules") or {}),
            ("evaluate", (rd.evaluation() or {}).get("code_version"), {})):
        recorded, modules = _recorded_code(stored)
        modules = modules or train_modules
        if recorded is None:
            continue
        now = versions.code_version(stage, cfg)
        if now["version"] != recorded:
            changed = sorted(m for m, h in now["modules"].items() if modules.get(m) != h)
            changed += sorted(m for m in modules if m not in now["modules"])
            what = f" (changed: {', '.join(changed)})" if modules else ""
            code.append(f"{where}: produced by other {stage} code than this tree's (version "
                        f"{recorded} != {now['version']}){what}")


def audit(table: str | Path, verify: bool = False,
          accept_code_changes: bool = False) -> AuditReport:
    table = Path(table)
    side = provenance.read_json(sidecar_of(table))
    csv = pd.read_csv(table)
    report = AuditReport(table, side["rows"], accept_code_changes=accept_code_changes)
    if not verify:
        return report
    problems = report.problems
    keys = list(side.get("table_keys") or side.get("keys", ["dataset", "model"]))
    run_dirs = list(dict.fromkeys(r["run_dir"] for row in side["rows"] for r in row["runs"]))
    task = TableTask([get_task(t) for t in side["tasks"]], side.get("columns"))
    recomputed = task.summarise(run_rows(run_dirs), reference_numbers())
    with warnings.catch_warnings():
        # wide tables: pandas warns about its own column inserts, which is no finding of ours
        warnings.simplefilter("ignore", pd.errors.PerformanceWarning)
        merged = csv.merge(recomputed, on=keys, how="outer", suffixes=("", "__recomputed"),
                           indicator=True)
    for _, r in merged.iterrows():
        label = "/".join(str(r[k]) for k in keys)
        if r["_merge"] != "both":
            problems.append(f"row {label}: present only in the "
                            f"{'table' if r['_merge'] == 'left_only' else 'per-seed files'}")
            continue
        for col in csv.columns:
            if col in keys or f"{col}__recomputed" not in merged.columns:
                continue
            if not _close(r[col], r[f"{col}__recomputed"]):
                problems.append(f"cell ({label}, {col}): table says {r[col]!r}, per-seed files "
                                f"give {r[f'{col}__recomputed']!r}")
    for row in side["rows"]:
        label = "/".join(str(v) for v in row["key"].values())
        for run in row["runs"]:
            _check_run(run, problems, report.code_changes, f"row {label}, seed {run.get('seed')}",
                       report.datasets)
    made_by = (side.get("code_versions") or {}).get("tables")
    now = versions.code_version("tables", plugins=side.get("modules") or [])["version"]
    if made_by and made_by != now:
        report.code_changes.append(f"table: made by other tables code than this tree's "
                                   f"(version {made_by})")
    return report


def format_report(report: AuditReport) -> str:
    lines = [f"table: {report.table}"]
    for row in report.rows:
        lines.append("row " + ", ".join(f"{k}={v}" for k, v in row["key"].items())
                     + f" — {len(row['runs'])} runs")
        for run in row["runs"]:
            pk = run.get("packages") or {}
            files = run.get("file_md5") or {}
            lines.append(
                f"  seed {run.get('seed')} [{run.get('status')}] {run['run_dir']}\n"
                f"    config {run.get('config_hash')}  code {run.get('code_version')}  commit "
                f"{str(run.get('git_commit'))[:12]}{' (dirty)' if run.get('git_dirty') else ''}"
                f"  data sha256 {str(run.get('data_sha256'))[:12]}  device {run.get('device')}\n"
                f"    model.pt md5 {files.get('model.pt', '-')}  eval.json md5 "
                f"{files.get('eval.json', '-')}  torch {pk.get('torch')}  "
                f"torchdiffeq {pk.get('torchdiffeq')}  python {pk.get('python')}")
    if report.problems:
        lines.append(f"VERIFY FAILED: {len(report.problems)} problem(s)")
        lines += [f"  - {p}" for p in report.problems]
    if report.code_changes:
        verdict = ("accepted (--accept-code-changes)" if report.accept_code_changes
                   else "VERIFY FAILED")
        lines.append(f"{verdict}: {len(report.code_changes)} result(s) made by other code")
        lines += [f"  - {p}" for p in report.code_changes]
    return "\n".join(lines)


# -- the whole tree of a scale ---------------------------------------------------------------------
@dataclass
class TreeReport:
    tree: Path
    tables: list[AuditReport]
    prepared: list[tuple[str, str | None]]  # (file, problem or None)
    uncited: list[str]  # run directories no table cites: reported, not fatal
    dvc: tuple[bool | None, str]
    problems: list[str] = field(default_factory=list)  # of the tree itself (sidecars missing)

    @property
    def ok(self) -> bool:
        return (not self.problems and all(t.ok for t in self.tables)
                and all(p is None for _, p in self.prepared) and self.dvc[0] is not False)


def _table_paths(tables_dir: Path) -> tuple[list[Path], list[str]]:
    """The tables with a provenance sidecar, and a problem for each experiment table whose
    sidecar is missing (``<exp>_runs.csv`` marks an experiment's table)."""
    tables = sorted(p.with_name(p.name.removesuffix(".provenance.json") + ".csv")
                    for p in tables_dir.glob("*.provenance.json"))
    problems = [f"table {t}: no provenance sidecar {t.with_suffix('')}.provenance.json, so it "
                f"cannot be audited; regenerate it with `snakemake --forcerun tables {t}`"
                for t in sorted(tables_dir.glob("*.csv"))
                if t.with_name(t.stem + "_runs.csv").exists() and t not in tables]
    problems += [f"table {t}: missing beside its provenance sidecar" for t in tables
                 if not t.exists()]
    return [t for t in tables if t.exists()], problems


def _audit_table(table: Path, accept_code_changes: bool) -> AuditReport:
    try:
        return audit(table, verify=True, accept_code_changes=accept_code_changes)
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError) as err:
        report = AuditReport(table, [], accept_code_changes=accept_code_changes)
        report.problems.append(f"cannot be audited: {type(err).__name__}: {err}")
        return report


def _check_prepared(files: list[str]) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for f in files:
        try:
            verify_prepared(f)
            out.append((f, None))
        except PreparedDataError as err:
            out.append((f, str(err)))
    return out


def _run_dirs(runs_dir: Path) -> list[Path]:
    return sorted(p for p in runs_dir.glob("*/*/*/seed*") if p.is_dir())


def audit_tree(tree: str | Path, accept_code_changes: bool = False,
               root: str | Path = ".") -> TreeReport:
    """Verify ``results/<scale>`` as a whole: every table (as :func:`audit` with ``verify``),
    every prepared file of ``data/prepared/<scale>`` and every one a run was trained on against
    its sidecar, the run directories no table cites, and ``dvc status <scale>`` where DVC
    versions ``root`` (the project directory, which run paths in the sidecars are relative
    to)."""
    tree, root = Path(tree), Path(root)
    if not (tree / "tables").is_dir():
        raise FileNotFoundError(f"{tree} has no tables/ directory: pass results/<scale> of a "
                                "finished workflow (or `dvc pull <scale>` first)")
    scale = tree.name
    paths, problems = _table_paths(tree / "tables")
    tables = [_audit_table(t, accept_code_changes) for t in paths]
    prepared_dir = root / "data" / "prepared" / scale
    files = {Path(p).resolve(): str(p) for p in sorted(prepared_dir.glob("*.npz"))}
    for d in sorted({d for t in tables for d in t.datasets}):
        files.setdefault((root / d).resolve(), str(root / d))
    prepared = _check_prepared(list(files.values()))
    cited = {(root / r).resolve() for t in tables for r in t.runs}
    uncited = [str(p) for p in _run_dirs(tree / "runs") if p.resolve() not in cited]
    return TreeReport(tree, tables, prepared, uncited, provenance.dvc_status(root, scale),
                      problems)


def _table_line(report: AuditReport) -> str:
    runs = len(report.runs)
    if report.ok and not report.code_changes:
        return f"OK      {report.table} ({len(report.rows)} rows, {runs} runs)"
    if report.ok:
        return (f"OK      {report.table} ({len(report.rows)} rows, {runs} runs; "
                f"{len(report.code_changes)} made by other code, accepted)")
    fatal = len(report.problems) + (0 if report.accept_code_changes else len(report.code_changes))
    return f"FAILED  {report.table} ({fatal} problem(s))"


def format_tree(report: TreeReport) -> str:
    """One summary line per table (its problems below it), then the prepared data, uncited run
    directories, DVC and a verdict."""
    lines = [f"audit of {report.tree}"]
    for t in report.tables:
        lines.append(_table_line(t))
        lines += [f"    - {p}" for p in t.problems]
        lines += [f"    - {p}" for p in t.code_changes]
    lines += [f"FAILED  {p}" for p in report.problems]
    for f, problem in report.prepared:
        lines.append(f"OK      {f} (matches its sidecar)" if problem is None
                     else f"FAILED  {f}\n    - {problem}")
    if report.uncited:
        lines.append(f"note: {len(report.uncited)} run director(y/ies) no table cites (left by an "
                     "earlier configuration, e.g. more seeds; not part of any result):")
        lines += [f"    {u}" for u in report.uncited]
    clean, said = report.dvc
    lines.append(("OK      dvc: " if clean else "FAILED  dvc: " if clean is False
                  else "note: dvc ") + said)
    bad = [str(t.table) for t in report.tables if not t.ok]
    bad += [f for f, p in report.prepared if p is not None]
    bad += ["dvc status"] * (clean is False) + ["tables without provenance"] * bool(
        report.problems)
    lines.append(f"verify {report.tree}: OK — {len(report.tables)} tables, "
                 f"{len(report.prepared)} prepared files" if report.ok
                 else f"verify {report.tree}: FAILED — {', '.join(bad)}")
    return "\n".join(lines)
