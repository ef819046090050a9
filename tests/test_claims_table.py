"""The README's claims table is generated: it must equal the rendering of the registered claims,
config/scales.yaml and docs/claims-status.json, and the record is updated from a results tree's
claims.json."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT
from odeflows.claims import registered_claims
from odeflows.claims.report import WIRING_CELL, claims_table, format_record, record_verdicts
from odeflows.cli import TABLE_BEGIN, TABLE_END, main
from odeflows.config import ConfigError, load_scales

RECORD = ROOT / "docs" / "claims-status.json"
README = ROOT / "README.md"


def readme_table() -> str:
    text = README.read_text()
    assert text.count(TABLE_BEGIN) == 1 and text.count(TABLE_END) == 1
    return text.split(TABLE_BEGIN)[1].split(TABLE_END)[0].removeprefix("\n")


def rows(table: str) -> dict[int, list[str]]:
    return {int(cells[0]): cells for line in table.splitlines() if line.startswith("| ")
            and (cells := [c.strip() for c in line.strip("|").split("|")])[0].isdigit()}


def test_readme_table_is_the_rendering():
    rendered = claims_table(json.loads(RECORD.read_text()), ROOT / "config")
    assert readme_table() == rendered, ("README.md's claims table is stale: run `odeflows "
                                        "claims-table --write README.md`")


def test_readme_table_names_every_claim_with_its_statement_and_paper():
    table = readme_table()
    header = next(line for line in table.splitlines() if line.startswith("| # |"))
    scales = [c.strip().strip("`") for c in header.strip("|").split("|")][3:]
    by_number = rows(table)
    assert sorted(by_number) == [c.number for c in registered_claims()]
    record = json.loads(RECORD.read_text())
    configured = load_scales(ROOT / "config")
    for c in registered_claims():
        number, statement, paper, *cells = by_number[c.number]
        assert (statement, paper) == (c.statement.rstrip("."), c.paper)
        for scale, cell in zip(scales, cells, strict=True):
            if not configured[scale].get("verdicts", True):
                assert cell == WIRING_CELL
            else:
                entry = record[scale]["claims"].get(str(c.number))
                assert cell == "—" if entry is None else cell.startswith(
                    entry["verdict"] if entry["ran"] else "not run")


def test_check_command_passes_on_the_readme_and_fails_on_an_edited_copy(tmp_path, capsys):
    args = ["claims-table", "--record", str(RECORD), "--config-dir", str(ROOT / "config")]
    assert main([*args, "--check", str(README)]) == 0
    edited = tmp_path / "README.md"
    edited.write_text(README.read_text().replace("| 4 | AFFJORD", "| 4 | FFJORD", 1))
    assert main([*args, "--check", str(edited)]) == 1
    assert "--write" in capsys.readouterr().err
    assert main([*args, "--write", str(edited)]) == 0
    assert edited.read_text() == README.read_text()


def test_a_scale_column_appears_when_it_is_a_wiring_check_or_measured(tmp_path):
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    entry = {"date": "2027-01-02", "commit": "abc1234", "how": "",
             "claims": {"1": {"verdict": "reproduced", "leans": "", "ran": True},
                        "3": {"verdict": "inconclusive", "leans": "not reproduced", "ran": True},
                        "7": {"verdict": "inconclusive", "leans": "", "ran": False}}}
    table = claims_table({"paper": entry}, config)
    assert "`paper` on 2027-01-02 from abc1234." in table
    header = next(line for line in table.splitlines() if line.startswith("| # |"))
    assert header == "| # | claim | paper | `smoke` | `paper` |"
    by_number = rows(table)
    assert by_number[1][3:] == [WIRING_CELL, "reproduced"]
    assert by_number[3][4] == "inconclusive (leans not reproduced)"
    assert by_number[7][4] == "not run" and by_number[2][4] == "—"
    # a record of a scale no longer configured is an error, not a silently dropped column
    with pytest.raises(ConfigError, match="gigantic"):
        claims_table({"gigantic": entry}, config)


def _results(root: Path, commits: list[str], verdict: str = "reproduced") -> Path:
    res = root / "results" / "workstation"
    (res / "tables").mkdir(parents=True)
    claims = {str(c.number): {"claim": c.text, "verdict": verdict, "leans": "", "ran": True}
              for c in registered_claims()}
    claims["3"].update(verdict="inconclusive", leans="reproduced")
    claims["7"]["ran"] = False
    (res / "claims.json").write_text(json.dumps(claims))
    os.utime(res / "claims.json", (1_800_000_000, 1_800_000_000))  # 2027-01-15 08:00 UTC
    for i, commit in enumerate(commits):
        pd.DataFrame({"git_commit": [commit, commit]}).to_csv(res / "tables" / f"e{i}_runs.csv")
    return res


def test_update_from_a_results_tree(tmp_path):
    res = _results(tmp_path, ["0123456789abcdef", "0123456789abcdef"])
    old = json.loads(RECORD.read_text())
    new = record_verdicts(old, "workstation", res, how="a clean clone")
    assert new["laptop"] == old["laptop"]
    ws = new["workstation"]
    assert (ws["date"], ws["commit"], ws["how"]) == ("2027-01-15", "0123456", "a clean clone")
    assert ws["claims"]["3"] == {"verdict": "inconclusive", "leans": "reproduced", "ran": True}
    assert ws["claims"]["7"]["ran"] is False
    assert list(ws["claims"]) == [str(c.number) for c in registered_claims()]
    assert json.loads(format_record(new)) == new

    with pytest.raises(ValueError, match="--commit"):
        record_verdicts(old, "workstation", _results(tmp_path / "two", ["aaaaaaa", "bbbbbbb"]))
    assert record_verdicts(old, "workstation", tmp_path / "two" / "results" / "workstation",
                           commit="ccccccc", date="2027-02-01")["workstation"]["commit"] \
        == "ccccccc"
    with pytest.raises(ValueError, match="wiring check"):
        record_verdicts(old, "smoke", _results(tmp_path / "smoke", ["a"], "not tested"))


def test_update_from_through_the_cli(tmp_path, capsys):
    res = _results(tmp_path, ["fedcba9876543210"])
    record = tmp_path / "claims-status.json"
    shutil.copy(RECORD, record)
    assert main(["claims-table", "--record", str(record), "--config-dir", str(ROOT / "config"),
                 "--update-from", str(res)]) == 0
    assert json.loads(record.read_text())["workstation"]["commit"] == "fedcba9"
    out = capsys.readouterr().out
    assert "`workstation` on 2027-01-15 from fedcba9" in out
    assert rows(out)[3][-1] == "inconclusive (leans reproduced)"
