"""The claims report: evidence gathered from the tables and configs of one scale, every
registered claim judged by its rule, the share-of-protocol gate applied the same way in both
directions, and the verdicts written as Markdown, JSON, HTML evidence pages and DVC metrics; and
the README's claims table, rendered from the registry, the scales and the record of the verdicts
last measured at each scale."""

from __future__ import annotations

import datetime
import json
import textwrap
from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd

from odeflows.claims.budget import budget
from odeflows.claims.core import (
    CLAIMS,
    FINDINGS,
    NOT_TESTED,
    Claim,
    Evidence,
    Protocol,
    percent,
    registered_claims,
    seed_counts,
)
from odeflows.claims.stats import ALPHA, INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from odeflows.provenance import write_text_atomic

VERDICT_COLORS = {REPRODUCED: "#1a7f37", NOT_REPRODUCED: "#cf222e", INCONCLUSIVE: "#9a6700",
                  NOT_TESTED: "#57606a"}
WIRING = "not tested at this scale (a wiring check)"


def load_tables(tables_dir: str | Path) -> dict[str, pd.DataFrame]:
    return {f.name.removesuffix("_runs.csv"): pd.read_csv(f)
            for f in Path(tables_dir).glob("*_runs.csv")}


def _protocols(experiments: list[str], scale: str, config_dir: str | Path
               ) -> dict[str, Protocol]:
    from odeflows.claims.protocol import experiment_deviations

    out = {}
    for exp in experiments:
        try:
            dev = experiment_deviations(exp, scale, config_dir)
        except Exception as err:  # noqa: BLE001 - a config the protocol diff cannot read
            out[exp] = Protocol(f"protocol not compared with the paper's ({err})", None)
            continue
        if dev.cells:
            out[exp] = Protocol("" if dev.at_protocol else dev.summary(), dev.min_step_share,
                                "" if dev.at_protocol else _short(dev))
    return out


def _short(dev: Any) -> str:
    """A protocol summary short enough for the headline table: the substitutions, the kinds of
    difference, the least share of the paper's optimiser steps (the evidence lists each one)."""
    cells = list(dev.cells.values())
    subs = sorted({f"{c.dataset} for {c.paper_dataset}" for c in cells if c.substituted})
    kinds = sorted({d.kind for c in cells for d in c.differences
                    if d.kind != "training length" and d.key != "dataset"})
    parts = [f"on {', '.join(subs)}"] if subs else []
    if kinds:
        parts.append(f"{', '.join(kinds)} differ")
    if dev.min_step_share is not None:
        parts.append(f"{percent(dev.min_step_share)} of the paper's optimiser steps")
    return "; ".join(parts)


def scale_settings(experiments: list[str], config_dir: str | Path
                   ) -> dict[str, dict[str, dict[str, Any]]]:
    """What every configured scale runs of these experiments: seeds, training length, data and
    the share of the paper's optimiser steps."""
    from odeflows.config import ConfigError, load_scales, plan

    out: dict[str, dict[str, dict[str, Any]]] = {}
    for scale in load_scales(config_dir):
        protocols = _protocols(experiments, scale, config_dir)
        for exp in experiments:
            try:
                p = plan({"scale": scale, "experiments": [exp], "config_dir": str(config_dir)})
            except (ConfigError, ImportError):
                continue
            if not p.runs:
                continue
            cfgs = [p.configs[s] for s in p.runs]
            epochs = [c["train"].get("epochs") for c in cfgs if c["train"].get("epochs")]
            iters = [c["train"].get("iterations") for c in cfgs if c["train"].get("iterations")]
            prot = protocols.get(exp)
            out.setdefault(scale, {})[exp] = {
                "seeds": 1 + max(s.seed for s in p.runs),
                "epochs": min(epochs) if epochs else None,
                "iterations": min(iters) if iters else None,
                "datasets": sorted({s.dataset for s in p.runs}),
                "step_share": prot.step_share if prot else None}
    return out


def evidence(scale: str, tables_dir: str | Path, config_dir: str | Path = "config",
             budgets: bool = True) -> Evidence:
    from odeflows.config import dataset_config, experiment_ids, load_datasets, load_scales
    from odeflows.data import get_generator
    from odeflows.tables import paper_facts

    config_dir = Path(config_dir)
    datasets = load_datasets(config_dir) if (config_dir / "datasets.yaml").exists() else {}
    facts = paper_facts()
    training = {t["experiment"]: t for t in facts.get("training", [])}
    numbers = {(n["experiment"], n["dataset"], n["model"], n["metric"]): float(n["value"])
               for n in facts.get("numbers", [])}
    info: dict[str, dict[str, Any]] = {}
    for name, entry in datasets.items():
        gen = get_generator(entry.get("generator", name))
        info[name] = {"data": gen.data}
        try:
            sizes = dataset_config(name, scale, config_dir).get("sizes") or {}
            info[name]["n_test"] = sizes.get("test")
        except Exception:  # noqa: BLE001 - a dataset without sizes at this scale
            pass
        if gen.data == "images":
            native = f"{gen.shape[1]}×{gen.shape[2]}" if gen.shape else ""
            info[name].update({"bits": int(entry.get("bits", gen.bits or 8)), "native": native,
                               "image_size": (entry.get("params") or {}).get("image_size")})
    tables = load_tables(tables_dir)
    # every experiment of the config, not only those with tables here: a claim whose experiment
    # this scale does not run still says which scale does
    ids = sorted(set(tables) | set(experiment_ids(config_dir))) \
        if (config_dir / "experiments").is_dir() else sorted(tables)
    scales_cfg = load_scales(config_dir) if (config_dir / "scales.yaml").exists() else {}
    verdicts = gives_verdicts(scales_cfg.get(scale))
    protocol = _protocols(sorted(tables), scale, config_dir) \
        if (config_dir / "experiments").is_dir() else {}
    return Evidence(tables, scale,
                    {d: e["substitute_for"] for d, e in datasets.items() if "substitute_for" in e},
                    training, info, scale_settings(ids, config_dir) if budgets else {},
                    protocol, numbers, verdicts)


def history(c: Claim) -> str:
    if not c.history:
        return ""
    first, last = c.history[0], c.history[-1]
    if len(c.history) == 1:
        return f"unchanged since {first.date} ({first.why})"
    return f"revised on {last.date} because {last.why} (first written {first.date})"


def tested_on(ev: Evidence, c: Claim) -> tuple[str, str, float | None]:
    """What a verdict was reached on when it is not the paper's protocol (in full, and short),
    and the share of the paper's optimiser steps (the least over the claim's experiments)."""
    parts, short, shares = [], [], []
    for exp in c.experiments:
        prot = ev.protocol.get(exp)
        if prot is None or ev.get(exp) is None:
            continue
        if prot.summary:
            parts.append(prot.summary)
            short.append(prot.short or prot.summary)
        if prot.step_share is not None:
            shares.append(prot.step_share)
    return ("; ".join(dict.fromkeys(parts)), "; ".join(dict.fromkeys(short)),
            min(shares) if shares else None)


def judge(ev: Evidence, c: Claim, budgets: bool = True) -> dict[str, Any]:
    """One claim's verdict: its rule, then the protocol gate, the same in both directions
    (``budgets``: also what would decide it, when it is inconclusive)."""
    verdict, lines = c.check(ev)
    counts = [line for e in c.experiments if ev.get(e) is not None
              for line in seed_counts(ev.get(e))]
    tested, tested_short, share = tested_on(ev, c)
    leans = ""
    if not ev.verdicts:
        leans = verdict if verdict != INCONCLUSIVE else ""
        verdict = NOT_TESTED
    elif verdict != INCONCLUSIVE and c.min_share is not None and share is not None \
            and share < c.min_share:
        lines.append(f"withheld: the runs trained {percent(share)} of the paper's optimiser "
                     f"steps, below the {percent(c.min_share)} this claim's verdict needs; the "
                     f"evidence leans '{verdict}'")
        leans, verdict = verdict, INCONCLUSIVE
    return {"claim": c.text, "verdict": verdict, "leans": leans, "evidence": counts + lines,
            "rule": c.rule, "alpha": ALPHA, "min_share": c.min_share, "failures": c.failures,
            "history": history(c), "experiments": list(c.experiments), "tested": tested,
            "tested_short": tested_short,
            "step_share": share, "ran": bool(counts),
            "at_paper": bool(counts) and not tested and (share is None or share >= 1),
            "budget": budget(ev, c) if budgets and verdict == INCONCLUSIVE and ev.verdicts
            else []}


def evaluate_claims(ev: Evidence) -> dict[int, dict[str, Any]]:
    return {c.number: judge(ev, c) for c in registered_claims()}


def _verdict_text(r: dict[str, Any]) -> str:
    if r["verdict"] == NOT_TESTED:
        return WIRING
    return r["verdict"] + (f" (leans '{r['leans']}')" if r.get("leans") else "")


def _where(r: dict[str, Any], short: bool = False) -> str:
    if r["at_paper"]:
        return "the paper's protocol"
    if r["tested"]:
        return f"a substitute protocol ({r['tested_short'] if short else r['tested']})"
    if r.get("step_share") is not None:
        return f"a substitute protocol ({percent(r['step_share'])} of the paper's optimiser steps)"
    if not r.get("ran", True):
        return "not run at this scale"
    return "—"


def _html_page(n: int, r: dict[str, Any], scale: str) -> str:
    """One claim's evidence as a small self-contained page (the HTML report shows it)."""
    def items(lines: list[str]) -> str:
        return "<ul>" + "".join(f"<li>{escape(str(x))}</li>" for x in lines) + "</ul>"

    budget_html = (f"<h3>What would decide it</h3>{items(r['budget'])}" if r["budget"] else "")
    color = VERDICT_COLORS.get(r["verdict"], "#000")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Claim {n}</title>"
            "<style>body{font-family:sans-serif;max-width:60em;margin:1em auto;"
            "line-height:1.45}li{margin:.3em 0}</style></head><body>"
            f"<h2>Claim {n} at scale <code>{escape(scale)}</code>: <span style='color:{color}'>"
            f"{escape(_verdict_text(r))}</span></h2><p>{escape(r['claim'])}</p>"
            f"<p><b>Tested on</b> {escape(_where(r))}.</p>"
            f"<p><b>Rule</b> (α = {r['alpha']}; {escape(r['history'])}): "
            f"{escape(r['rule'])}.</p><p><b>Failed seeds</b>: {escape(r['failures'])}.</p>"
            f"<h3>Evidence</h3>{items(r['evidence'])}{budget_html}"
            f"<p>Tables read: {escape(', '.join(r['experiments']))}.</p></body></html>\n")


def _front_page(scale: str, result: dict[int, dict[str, Any]]) -> str:
    """The HTML report's first page (reStructuredText): the verdict table, each row linking to
    its evidence page, verdicts coloured."""
    def cell(text: str) -> str:
        return " ".join(text.split()).replace("*", "\\*").replace("`", "'")

    # the report's home page centres this page vertically (a page taller than the window loses
    # its top) in a narrow column beside the workflow graph: start it at the top, give the table
    # the width and leave the graph to the Workflow page's rule list
    style = ("".join(f".v-{v.replace(' ', '-')}{{color:{c}}}" for v, c in VERDICT_COLORS.items())
             + ".prose.max-w-lg{max-width:64rem}#rulegraph{display:none}"
             "div.h-screen.items-center{align-items:flex-start}")
    lines = [".. raw:: html", "", f"   <style>{style}</style>", "", ".. role:: v-reproduced",
             ".. role:: v-not-reproduced", ".. role:: v-inconclusive", ".. role:: v-not-tested",
             "", f"Claims at scale ``{scale}``", "=" * (20 + len(scale)), "",
             "Verdicts computed by odeflows from the per-seed tables of this scale; the numbers "
             "are ours, the claims are the papers'. Each claim's rule is stated on its evidence "
             "page with the date it last changed; *inconclusive* pages say what would decide "
             "the claim. The tables (ours beside the papers' numbers) are under Tables_, the "
             "figures under Figures_.", ""]
    if any(r["verdict"] == NOT_TESTED for r in result.values()):
        lines += [f".. note:: The ``{scale}`` scale is a wiring check: it gives no verdicts.", ""]
    lines += [".. list-table::", "   :header-rows: 1", "   :widths: 4 44 22 30", "",
              "   * - #", "     - claim", "     - verdict", "     - tested on"]
    for n, r in sorted(result.items(), key=lambda kv: (not kv[1]["at_paper"], kv[0])):
        role = "v-" + r["verdict"].replace(" ", "-")
        lines += [f"   * - {n}", f"     - {cell(r['claim'])}",
                  f"     - :{role}:`{cell(_verdict_text(r))}` — `evidence <claim_{n:02d}.html_>`__",
                  f"     - {cell(_where(r, short=True))}"]
    return "\n".join(lines) + "\n"


def write_claims(scale: str, tables_dir: str | Path, out: str | Path,
                 config_dir: str | Path = "config", report_dir: str | Path | None = None
                 ) -> dict[int, dict[str, Any]]:
    ev = evidence(scale, tables_dir, config_dir)
    result = evaluate_claims(ev)
    if report_dir is not None:
        report = Path(report_dir)
        report.mkdir(parents=True, exist_ok=True)
        for n, r in result.items():
            write_text_atomic(report / f"claim_{n:02d}.html", _html_page(n, r, scale))
        write_text_atomic(report / "front.rst", _front_page(scale, result))
    out = Path(out)
    write_text_atomic(out, markdown(scale, ev, result))
    write_text_atomic(out.with_suffix(".json"), json.dumps(result, indent=2) + "\n")
    return result


def markdown(scale: str, ev: Evidence, result: dict[int, dict[str, Any]]) -> str:
    lines = [f"# Claims at scale `{scale}`", "",
             "Verdicts computed from the per-seed tables in this directory's `tables/`; the "
             "numbers are ours, the claims are the papers'. Every comparison is decided by one "
             f"statistical core (Welch intervals at α = {ALPHA}, `odeflows.claims.stats`).", ""]
    if not ev.verdicts:
        lines += [f"**The `{scale}` scale is a wiring check: it gives no verdicts.**", ""]
    groups = [("At the paper's protocol", [n for n, r in result.items() if r["at_paper"]]),
              ("On a substitute protocol", [n for n, r in result.items() if not r["at_paper"]])]
    for title, numbers in groups:
        if not numbers:
            continue
        lines += [f"## {title}", "", "| # | claim | verdict | tested on |", "|---|---|---|---|"]
        lines += [f"| [{n}](#claim-{n}) | {result[n]['claim']} | "
                  f"**{_verdict_text(result[n])}** | {_where(result[n], short=True)} |"
                  for n in numbers]
        lines.append("")
    for n, r in result.items():
        lines += [f"<a id='claim-{n}'></a>", "", f"## Claim {n}: {_verdict_text(r)}", "",
                  r["claim"], "", f"Tested on {_where(r)}.", "",
                  f"Rule (α = {r['alpha']}; {r['history']}): {r['rule']}.", "",
                  f"Failed seeds: {r['failures']}.", ""]
        lines += [f"- {e}" for e in r["evidence"]]
        if r["budget"]:
            lines += ["", "What would decide it:", ""] + [f"- {b}" for b in r["budget"]]
        lines.append("")
    for f in sorted(FINDINGS.all(), key=lambda f: f.key):
        lines += [f"## {f.title}", "", f.intro, ""]
        lines += [f"- {e}" for e in f.lines(ev)] + [""]
    return "\n".join(lines)


def write_metrics(tables_dir: str | Path, out_dir: str | Path, claims: dict[int, dict]
                  ) -> list[Path]:
    """What `dvc metrics show` reads, as rows a person can scan: one file per claim (its verdict
    and what it was tested on) and one per experiment (runs completed and failed, training
    hours, its headline result); `dvc metrics diff` then lists changed verdicts."""
    from odeflows.provenance import read_json, write_json_atomic
    from odeflows.tables import TableTask
    from odeflows.tasks import get_task

    out = Path(out_dir)
    written = []
    for n, r in claims.items():
        path = out / "claims" / f"claim_{int(n):02d}.json"
        write_json_atomic(path, {"verdict": _verdict_text(r),
                                 "tested on": _where(r, short=True)})
        written.append(path)
    for side in sorted(Path(tables_dir).glob("*.provenance.json")):
        info = read_json(side)
        runs = pd.read_csv(info["per_seed_file"]) if Path(info["per_seed_file"]).exists() \
            else pd.DataFrame({"status": []})
        row: dict[str, Any] = {"runs ok": int((runs["status"] == "completed").sum()),
                               "runs failed": int((runs["status"] == "failed").sum())}
        if "train_wall_seconds" in runs:
            row["train hours"] = round(float(pd.to_numeric(
                runs["train_wall_seconds"], errors="coerce").sum()) / 3600, 4)
        headlines = info.get("headlines") or TableTask(
            [get_task(t) for t in info.get("tasks", [])]).headlines
        table = pd.read_csv(info["table"]) if Path(info["table"]).exists() else pd.DataFrame()
        if headlines and f"{headlines[0]}_mean" in table and "dataset" in table:
            col = f"{headlines[0]}_mean"
            lower = any(w in headlines[0] for w in ("loss", "bpd", "nfe"))
            parts = []
            for ds, grp in table.dropna(subset=[col]).groupby("dataset"):
                best = grp.loc[grp[col].idxmin() if lower else grp[col].idxmax()]
                parts.append(f"{ds}: {best['model']} {best[col]:.4g}")
            row[f"best {headlines[0]}"] = "; ".join(parts)
        path = out / "experiments" / f"{info['experiment']}.json"
        write_json_atomic(path, row)
        written.append(path)
    return written


# -- the README's claims table: the registry, the scales, and the verdicts last measured ---------
# The record (docs/claims-status.json) holds, per scale, the date and commit its verdicts were
# measured on, how (free text), and per claim {"verdict", "leans", "ran"} as claims.json gives them.
def gives_verdicts(scale_cfg: Mapping[str, Any] | None) -> bool:
    """Whether a scale's entry in scales.yaml lets its report judge (``verdicts``, default
    true); a wiring check's does not."""
    return bool((scale_cfg or {}).get("verdicts", True))


WIRING_CELL = "not tested — a wiring check"


def _cell(entry: Mapping[str, Any] | None) -> str:
    if entry is None:
        return "—"
    if not entry.get("ran", True):
        return "not run"
    return entry["verdict"] + (f" (leans {entry['leans']})" if entry.get("leans") else "")


def claims_table(record: Mapping[str, Any], config_dir: str | Path = "config") -> str:
    """The README's claims section as Markdown: when and where each scale's verdicts were
    measured, then every registered claim with its statement and paper reference and, per scale,
    its verdict there. A wiring-check scale (``verdicts: false`` in scales.yaml) gives no verdicts
    whatever was measured; a scale that is neither a wiring check nor in ``record`` has no
    column."""
    from odeflows.config import ConfigError, load_scales

    configured = load_scales(config_dir)
    unknown = sorted(set(record) - set(configured))
    if unknown:
        raise ConfigError(f"the verdict record names scales that {Path(config_dir)}/scales.yaml "
                          f"does not: {', '.join(unknown)}")
    wiring = {s for s, cfg in configured.items() if not gives_verdicts(cfg)}
    scales = [s for s in configured if s in wiring or s in record]
    measured = []
    for s in scales:
        if s in record and s not in wiring:
            r = record[s]
            measured.append(f"`{s}` on {r['date']} from {r['commit']}"
                            + (f" ({r['how']})" if r.get("how") else ""))
    lead = (("Verdicts measured: " + "; ".join(measured)) if measured else
            "No verdicts measured yet") + (". \"—\" means not yet run at that scale under the "
                                           "current rules; \"not run\" that the scale does not "
                                           "run the claim's experiment.")
    lines = [textwrap.fill(lead, 99, break_long_words=False, break_on_hyphens=False),
             "", "| # | claim | paper | " + " | ".join(f"`{s}`" for s in scales) + " |",
             "|---|---|---|" + "---|" * len(scales)]
    for c in registered_claims():
        cells = [WIRING_CELL if s in wiring
                 else _cell(record[s]["claims"].get(str(c.number))) for s in scales]
        lines.append(f"| {c.number} | {c.statement.rstrip('.')} | {c.paper or '—'} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def record_verdicts(record: Mapping[str, Any], scale: str, results_dir: str | Path, *,
                    commit: str | None = None, date: str | None = None, how: str = ""
                    ) -> dict[str, Any]:
    """``record`` with ``scale``'s verdicts replaced by those of ``results_dir/claims.json``.
    ``commit`` defaults to the one commit its per-seed tables name, ``date`` to the day
    claims.json was written (UTC)."""
    results = Path(results_dir)
    claims = json.loads((results / "claims.json").read_text())
    if any(r["verdict"] == NOT_TESTED for r in claims.values()):
        raise ValueError(f"{results / 'claims.json'} is a wiring check's report: it has no "
                         "verdicts to record")
    if commit is None:
        commits = sorted({str(c)[:7] for f in (results / "tables").glob("*_runs.csv")
                          for c in pd.read_csv(f).get("git_commit", pd.Series()).dropna()})
        if len(commits) != 1:
            raise ValueError(f"the tables of {results} name {len(commits)} commits "
                             f"({', '.join(commits) or 'none'}): say which with --commit")
        commit = commits[0]
    if date is None:
        mtime = (results / "claims.json").stat().st_mtime
        date = datetime.datetime.fromtimestamp(mtime, datetime.UTC).date().isoformat()
    entry = {"date": date, "commit": commit, "how": how,
             "claims": {str(n): {"verdict": r["verdict"], "leans": r.get("leans", ""),
                                 "ran": bool(r.get("ran", True))}
                        for n, r in sorted(claims.items(), key=lambda kv: int(kv[0]))}}
    return {**record, scale: entry}


def format_record(record: Mapping[str, Any]) -> str:
    """The record as JSON with one line per claim, so that a changed verdict is one changed
    line in a diff."""
    out = ["{"]
    for i, (scale, r) in enumerate(record.items()):
        out.append(f"  {json.dumps(scale)}: {{")
        out += [f"    {json.dumps(k)}: {json.dumps(r[k], ensure_ascii=False)},"
                for k in ("date", "commit", "how")]
        out.append('    "claims": {')
        items = list(r["claims"].items())
        out += [f"      {json.dumps(n)}: {json.dumps(v, ensure_ascii=False)}"
                + ("," if j < len(items) - 1 else "") for j, (n, v) in enumerate(items)]
        out.append("    }")
        out.append("  }" + ("," if i < len(record) - 1 else ""))
    return "\n".join(out + ["}"]) + "\n"


__all__ = ["CLAIMS", "WIRING_CELL", "claims_table", "evaluate_claims", "evidence",
           "format_record", "gives_verdicts", "judge", "load_tables", "record_verdicts",
           "write_claims", "write_metrics"]
