"""Audit a table: show the runs behind every row, and with ``verify`` recompute every cell from
the per-seed files, check every recorded hash, and check that the code which produced each run
is the code in this tree.

The provenance sidecar (``<table>.provenance.json``, written by ``aggregate``) names, per row,
the run directories with their seed, config hash, code versions, git commit and dirty flag, data
hash, package versions, device and the MD5 of their files (MD5 is what DVC records in
``dvc.lock`` for each file, so a checkpoint's hash can be matched against DVC's). Code versions
are judged by the content of the code that computes a result (see
:func:`odeflows.provenance.code_version`), not by the commit: a docs-only commit changes nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from odeflows import provenance
from odeflows.aggregate import TableTask, reference_numbers, run_rows
from odeflows.config import config_hash
from odeflows.rundir import RunDir
from odeflows.tasks import get_task


@dataclass
class AuditReport:
    table: Path
    rows: list[dict[str, Any]]
    problems: list[str] = field(default_factory=list)
    code_changes: list[str] = field(default_factory=list)  # reported; fatal unless accepted
    accept_code_changes: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems and (self.accept_code_changes or not self.code_changes)


def sidecar_of(table: str | Path) -> Path:
    table = Path(table)
    side = table.with_name(table.stem + ".provenance.json")
    if not side.exists():
        raise FileNotFoundError(f"no provenance sidecar {side} next to {table}; regenerate it "
                                f"with `snakemake --forcerun aggregate {table}`")
    return side


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return str(a) == str(b)
    fa, fb = float(a), float(b)
    if math.isnan(fa) and math.isnan(fb):
        return True
    return math.isclose(fa, fb, rel_tol=1e-9, abs_tol=1e-12)


def _check_run(run: dict[str, Any], problems: list[str], code: list[str], where: str) -> None:
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
    if path and sha and Path(path).exists() and provenance.sha256_file(path) != sha:
        problems.append(f"{where}: dataset {path} no longer matches the hash the run "
                        f"recorded ({sha[:12]}…); re-create it with `snakemake {path}`")
    if cfg is None:
        return
    for stage, recorded, modules in (
            ("train", record.get("code_version"), record.get("code_modules") or {}),
            ("evaluate", (rd.evaluation() or {}).get("code_version"), {})):
        if recorded is None:
            continue
        now = provenance.code_version(stage, cfg)
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
            _check_run(run, problems, report.code_changes, f"row {label}, seed {run.get('seed')}")
    made_by = (side.get("code_versions") or {}).get("aggregate")
    now = provenance.code_version("aggregate", plugins=side.get("modules") or [])["version"]
    if made_by and made_by != now:
        report.code_changes.append(f"table: made by other aggregation code than this tree's "
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
