"""Audit a table: show the runs behind every row, and with ``verify`` recompute every cell from
the per-seed files and check every recorded hash.

The provenance sidecar (``<table>.provenance.json``, written by ``aggregate``) names, per row,
the run directories with their seed, config hash, git commit and dirty flag, data hash, package
versions, device and the MD5 of their files (MD5 is what DVC records in ``dvc.lock`` for each
file, so a checkpoint's hash can be matched against DVC's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from odeflows import provenance
from odeflows.aggregate import reference_numbers, run_rows, summarise, summarise_profile
from odeflows.config import config_hash


@dataclass
class AuditReport:
    table: Path
    rows: list[dict[str, Any]]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


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


def _check_run(run: dict[str, Any], problems: list[str], where: str) -> None:
    run_dir = Path(run["run_dir"])
    for name, recorded in (run.get("file_md5") or {}).items():
        f = run_dir / name
        if not f.exists():
            problems.append(f"{where}: {f} is missing (recorded md5 {recorded})")
        elif provenance.md5_file(f) != recorded:
            problems.append(f"{where}: {f} has changed since the table was made "
                            f"(md5 {provenance.md5_file(f)} != recorded {recorded})")
    cfg_file = run_dir / "config.json"
    if run.get("config_hash") and cfg_file.exists():
        if config_hash(provenance.read_json(cfg_file)) != run["config_hash"]:
            problems.append(f"{where}: {cfg_file} does not hash to the recorded config hash "
                            f"{run['config_hash']}")
    rec_file = run_dir / "record.json"
    if rec_file.exists():
        data = provenance.read_json(rec_file).get("data", {})
        path, sha = data.get("path"), data.get("sha256")
        if path and sha and Path(path).exists() and provenance.sha256_file(path) != sha:
            problems.append(f"{where}: dataset {path} no longer matches the hash the run "
                            f"recorded ({sha[:12]}…); re-create it with `snakemake {path}`")


def audit(table: str | Path, verify: bool = False) -> AuditReport:
    table = Path(table)
    side = provenance.read_json(sidecar_of(table))
    csv = pd.read_csv(table)
    keys = side.get("keys", ["dataset", "model"])
    report = AuditReport(table, side["rows"])
    if not verify:
        return report
    problems = report.problems
    run_dirs = [Path(r["run_dir"]) for row in side["rows"] for r in row["runs"]]
    if side.get("task") == "memory_profile":
        recomputed = summarise_profile([str(d) for d in dict.fromkeys(run_dirs)])
        keys = ["model", "mode", "steps"]
    else:
        recomputed = summarise(run_rows(run_dirs), side["task"], reference_numbers())
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
            _check_run(run, problems, f"row {label}, seed {run.get('seed')}")
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
                f"    config {run.get('config_hash')}  commit {str(run.get('git_commit'))[:12]}"
                f"{' (dirty)' if run.get('git_dirty') else ''}  data sha256 "
                f"{str(run.get('data_sha256'))[:12]}  device {run.get('device')}\n"
                f"    model.pt md5 {files.get('model.pt', '-')}  eval.json md5 "
                f"{files.get('eval.json', '-')}  torch {pk.get('torch')}  "
                f"torchdiffeq {pk.get('torchdiffeq')}  python {pk.get('python')}")
    if report.problems:
        lines.append(f"VERIFY FAILED: {len(report.problems)} problem(s)")
        lines += [f"  - {p}" for p in report.problems]
    return "\n".join(lines)
