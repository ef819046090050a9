"""The Snakemake workflow end to end at smoke scale, versioned by DVC: results, rerun behaviour
(configuration and code), push/pull to a fresh clone, table audit and configuration errors. One
smoke run is shared by every test here; the copy's own src/ is what runs (PYTHONPATH), so a test
can edit the code and see which results go out of date."""

from __future__ import annotations

import filecmp
import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

from conftest import ROOT

# the shared smoke run is the longest thing in the suite: started first
pytestmark = [pytest.mark.slow, pytest.mark.long_running(minutes=10)]

PROJECT_FILES = ("Snakefile", "workflow", "config", "envs", "profiles", "src", "docs", "dvc.yaml",
                 ".dvc/config", ".dvcignore", ".gitignore", "results/.gitignore",
                 "data/prepared/.gitignore", "pyproject.toml")
GIT = ["git", "-c", "user.name=odeflows-test", "-c", "user.email=test@odeflows.invalid"]


def _copy_project(dst):
    for name in PROJECT_FILES:
        src, out = ROOT / name, dst / name
        out.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, out, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(src, out)
    return dst


def _run(cmd, cwd, check=True, timeout=1800):
    env = {**os.environ, "PYTHONPATH": str(cwd / "src")} if (cwd / "src").is_dir() else None
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed:\n{out.stdout[-3000:]}\n"
                             f"{out.stderr[-3000:]}")
    return out


def _snakemake(cwd, *args):
    return _run(["snakemake", *args], cwd, check=False)


def _job_counts(stdout: str) -> dict[str, int]:
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)\s*$", stdout, flags=re.M)}


@pytest.fixture(scope="module")
def smoke_repo(tmp_path_factory):
    """A git + DVC repository of the project where `dvc repro smoke` has run the workflow."""
    base = tmp_path_factory.mktemp("odeflows")
    repo = _copy_project(base / "repo")
    _run(["git", "init", "-q"], repo)
    _run([*GIT, "add", "-A"], repo)
    _run([*GIT, "commit", "-qm", "project"], repo)
    _run(["dvc", "remote", "modify", "--local", "local", "url", str(base / "remote")], repo)
    _run(["dvc", "repro", "smoke"], repo)
    return repo


def test_smoke_workflow_end_to_end(smoke_repo):
    res = smoke_repo / "results" / "smoke"
    for exp in ("anode_toy", "affjord_toy", "node_adjoint", "anode_images", "affjord_images",
                "rnode_images", "rnode_ablation", "affjord_rnode", "primer_flows"):
        for suffix in (".csv", ".md", "_runs.csv", ".provenance.json", "_curves.csv"):
            assert (res / "tables" / f"{exp}{suffix}").stat().st_size > 0
        assert list((res / "figures" / exp).glob("*.png"))
        assert list((res / "figures" / exp).glob("*.pdf"))
    assert re.search(r"\|\s*ours\s*\|\s*reference code\s*\|\s*paper\s*\|",
                     (res / "tables" / "parameters.md").read_text())
    claims = (res / "claims.md").read_text()
    for n in range(1, 15):
        assert f"## Claim {n}:" in claims
    assert "## Beyond the papers: AFFJORD + RNODE" in claims
    metrics = smoke_repo / "results" / "metrics" / "smoke"
    claims_rows = sorted((metrics / "claims").glob("claim_*.json"))
    assert [p.stem for p in claims_rows][:10] == [f"claim_{n:02d}" for n in range(1, 11)]
    # a wiring check gives no verdicts: two epochs refute and confirm nothing
    assert "wiring check" in claims and "**reproduced**" not in claims
    assert "**not reproduced**" not in claims
    assert {json.loads(p.read_text())["verdict"] for p in claims_rows} == {
        "not tested at this scale (a wiring check)"}
    assert (metrics / "experiments" / "rnode_images.json").exists()
    log = (smoke_repo / "logs/smoke/train/anode_toy/g1d/node/seed0.log").read_text()
    assert "it/s" in log or "s/it" in log  # progress bars go to the rule's log
    again = _snakemake(smoke_repo, "-n", "--config", "scale=smoke")
    assert "Nothing to be done" in again.stdout + again.stderr
    report = _snakemake(smoke_repo, "--report", "report.html", "--config", "scale=smoke")
    assert report.returncode == 0, report.stderr[-2000:]
    html = (smoke_repo / "report.html").read_text(errors="replace")
    assert "claims.md" in html and "anode_toy" in html


def test_dvc_pull_in_a_fresh_clone_needs_no_rerun(smoke_repo, tmp_path):
    _run(["dvc", "push", "smoke"], smoke_repo)
    _run([*GIT, "add", "dvc.lock", "results/metrics"], smoke_repo)
    _run([*GIT, "commit", "-qm", "results"], smoke_repo)
    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(smoke_repo), str(clone)], tmp_path)
    remote = _run(["dvc", "remote", "list", "--local"], smoke_repo).stdout.split()[1]
    _run(["dvc", "remote", "modify", "--local", "local", "url", remote], clone)
    _run(["dvc", "pull", "smoke"], clone)
    dry = _snakemake(clone, "-n", "--config", "scale=smoke")
    assert dry.returncode == 0
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-3000:]
    tables_a, tables_b = smoke_repo / "results/smoke/tables", clone / "results/smoke/tables"
    names = sorted(p.name for p in tables_a.iterdir())
    match, mismatch, errors = filecmp.cmpfiles(tables_a, tables_b, names, shallow=False)
    assert not mismatch and not errors
    shown = _run(["dvc", "metrics", "show"], clone).stdout
    # a few rows to scan: one per claim and one per experiment
    assert "results/metrics/smoke/claims/claim_01.json" in shown and "verdict" in shown
    # only this scale's rows: no other scale's paths, no marker files, nothing missing
    assert "laptop" not in shown and ".snakemake_timestamp" not in shown
    shown_all = _run(["dvc", "metrics", "show"], clone)
    assert "failed to load" not in shown_all.stdout + shown_all.stderr
    assert len(shown.splitlines()) < 40

    # the audit passes on untouched results and fails on each kind of tampering
    table = "results/smoke/tables/anode_toy.csv"
    ok = _run(["odeflows", "audit", table, "--verify"], clone)
    assert "verify: OK" in ok.stdout
    ev = clone / "results/smoke/runs/anode_toy/g1d/node/seed0/eval.json"
    data = json.loads(ev.read_text())
    data["test_loss"] += 0.5
    ev.write_text(json.dumps(data))
    bad = _run(["odeflows", "audit", table, "--verify"], clone, check=False)
    assert bad.returncode == 1
    assert "cell (g1d/node, test_loss_mean)" in bad.stdout and "eval.json has changed" in bad.stdout
    _run(["dvc", "checkout", "-f", "results/smoke"], clone)
    assert "verify: OK" in _run(["odeflows", "audit", table, "--verify"], clone).stdout
    ckpt = clone / "results/smoke/runs/anode_toy/g1d/anode/seed0/model.pt"
    ckpt.write_bytes(ckpt.read_bytes() + b"tampered")
    bad = _run(["odeflows", "audit", table, "--verify"], clone, check=False)
    assert bad.returncode == 1 and "g1d/anode/seed0/model.pt has changed" in bad.stdout


SMOKE_TABLES = ("anode_toy", "affjord_toy", "node_adjoint", "anode_images", "affjord_images",
                "rnode_images", "rnode_ablation", "affjord_rnode", "primer_flows")


def _audit_tree(repo, monkeypatch, capsys) -> tuple[int, str]:
    """`odeflows audit results/smoke --verify` in ``repo``, in this process (torch is loaded)."""
    from odeflows.cli import main

    monkeypatch.chdir(repo)
    capsys.readouterr()
    rc = main(["audit", "results/smoke", "--verify"])
    return rc, capsys.readouterr().out


def _failed(out: str) -> set[str]:
    return set(re.findall(r"^FAILED  (\S+)", out, flags=re.M))


def test_audit_of_the_whole_tree_passes_untouched(smoke_repo, monkeypatch, capsys):
    rc, out = _audit_tree(smoke_repo, monkeypatch, capsys)
    assert rc == 0, out[-3000:]
    for exp in SMOKE_TABLES:  # one summary line per table, node_adjoint's included
        assert re.search(rf"^OK      results/smoke/tables/{exp}\.csv \(\d+ rows", out, re.M)
    assert "OK      data/prepared/smoke/g1d.npz (matches its sidecar)" in out
    assert "OK      dvc: `dvc status smoke`" in out
    assert "no table cites" not in out
    assert out.strip().splitlines()[-1].startswith("verify results/smoke: OK — 9 tables")


def _swap(a, b):
    data = a.read_bytes()
    a.write_bytes(b.read_bytes())
    b.write_bytes(data)


def _edit_json(path, edit):
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _flip_64_bytes(path):
    data = bytearray(path.read_bytes())
    data[1000:1064] = bytes(b ^ 0xFF for b in data[1000:1064])
    path.write_bytes(bytes(data))


RUNS = "results/smoke/runs"
# each fault, the tables it must fail (nothing else) and the file the report must name
FAULTS = {
    "edited per-seed metric": (
        lambda t: _edit_json(t / RUNS / "anode_toy/g1d/node/seed0/eval.json",
                             lambda d: d.update(test_loss=d["test_loss"] + 0.5)),
        {"anode_toy"}, "anode_toy/g1d/node/seed0/eval.json has changed"),
    "swapped checkpoint": (
        lambda t: _swap(t / RUNS / "anode_toy/g1d/anode/seed0/model.pt",
                        t / RUNS / "anode_toy/g1d/node/seed0/model.pt"),
        {"anode_toy"}, "anode_toy/g1d/anode/seed0/model.pt has changed"),
    "edited config": (
        lambda t: _edit_json(t / RUNS / "affjord_toy/hash/ffjord/seed0/config.json",
                             lambda d: d["train"].update(lr=d["train"]["lr"] * 2)),
        {"affjord_toy"}, "affjord_toy/hash/ffjord/seed0/config.json does not hash"),
    "corrupt prepared file": (
        lambda t: _flip_64_bytes(t / "data/prepared/smoke/g1d.npz"),
        {"anode_toy"}, "dataset data/prepared/smoke/g1d.npz no longer matches"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_audit_of_the_whole_tree_fails_in_the_right_table(smoke_repo, tmp_path, monkeypatch,
                                                          capsys, fault):
    tree = tmp_path / "copy"
    for part in ("results/smoke", "data/prepared/smoke"):
        shutil.copytree(smoke_repo / part, tree / part)
    inject, tables, names = FAULTS[fault]
    inject(tree)
    rc, out = _audit_tree(tree, monkeypatch, capsys)
    assert rc == 1, out[-3000:]
    failed = {t for t in _failed(out) if t.startswith("results/smoke/tables/")}
    assert failed == {f"results/smoke/tables/{t}.csv" for t in tables}, out[-3000:]
    table_block = out.split(f"FAILED  results/smoke/tables/{min(tables)}.csv")[1]
    assert names in table_block.split("\nOK ")[0]  # named under its table
    assert "note: dvc not checked" in out  # the copy is not a DVC repository
    if fault == "corrupt prepared file":
        assert "FAILED  data/prepared/smoke/g1d.npz" in out and "odeflows prepare" in out
    assert out.strip().splitlines()[-1].startswith("verify results/smoke: FAILED")


def test_a_corrupt_object_in_the_remote_is_caught(smoke_repo, tmp_path):
    """DVC trusts an object's name unless the remote is set to `verify`: the default remote is,
    so `dvc pull` refuses a corrupt object; without it the audit still names the file."""
    _run(["dvc", "push", "smoke"], smoke_repo)
    _run([*GIT, "add", "dvc.lock", "results/metrics"], smoke_repo)
    _run([*GIT, "commit", "-qm", "results"], smoke_repo, check=False)  # done if committed
    remote = tmp_path / "remote"
    shutil.copytree(_run(["dvc", "remote", "list", "--local"], smoke_repo).stdout.split()[1],
                    remote)
    side = json.loads((smoke_repo / "results/smoke/tables/anode_toy.provenance.json")
                      .read_text())
    run = next(r for row in side["rows"] for r in row["runs"]
               if r["run_dir"].endswith("g1d/node/seed0"))
    md5 = run["file_md5"]["eval.json"]
    obj = remote / "files" / "md5" / md5[:2] / md5[2:]
    obj.write_bytes(obj.read_bytes() + b"appended")
    outcomes = {}
    for verify in ("true", "false"):
        clone = tmp_path / f"clone-{verify}"
        _run(["git", "clone", "-q", str(smoke_repo), str(clone)], tmp_path)
        _run(["dvc", "remote", "modify", "--local", "local", "url", str(remote)], clone)
        if verify == "false":  # "true" is the committed default (.dvc/config)
            _run(["dvc", "remote", "modify", "--local", "local", "verify", verify], clone)
        outcomes[verify] = (_run(["dvc", "pull", "smoke"], clone, check=False), clone)
    pulled, clone = outcomes["true"]
    assert pulled.returncode != 0
    assert not (clone / run["run_dir"] / "eval.json").exists()
    pulled, clone = outcomes["false"]
    assert pulled.returncode == 0  # DVC copies the corrupt object without a word
    audit = _run(["odeflows", "audit", "results/smoke", "--verify"], clone, check=False)
    assert audit.returncode == 1
    assert "FAILED  results/smoke/tables/anode_toy.csv" in audit.stdout
    assert "g1d/node/seed0/eval.json has changed" in audit.stdout


def test_changing_one_value_reruns_only_its_runs(smoke_repo):
    path = smoke_repo / "config" / "experiments" / "affjord_toy.yaml"
    original = path.read_text()
    data = yaml.safe_load(original)
    data["scales"]["smoke"]["overrides"]["train"]["iterations"] = 31
    path.write_text(yaml.safe_dump(data))
    try:
        dry = _snakemake(smoke_repo, "-n", "--config", "scale=smoke")
        assert _job_counts(dry.stdout).get("train") == 2  # 1 dataset x 2 models x 1 seed
        trained = _trained(dry.stdout)
        assert len(trained) == 2 and all("/affjord_toy/" in p for p in trained)
        assert "config " in dry.stdout  # the reason: the run's config hash changed
        one = _snakemake(smoke_repo, "-n", "--config", "scale=smoke", "--forcerun", "claims",
                         "--", "results/smoke/claims.md")
        assert one.returncode == 0
    finally:
        path.write_text(original)


def _trained(stdout: str) -> list[str]:
    return re.findall(r"output: (results/smoke/runs/\S+)/summary\.json", stdout)


def _edit_code(repo, rel, text="\n# an edit\n"):
    path = repo / rel
    original = path.read_text()
    path.write_text(original + text)
    return lambda: path.write_text(original)


def test_a_code_change_puts_exactly_its_results_out_of_date(smoke_repo):
    # a model's code: only the runs of that model retrain (and only their tables change)
    restore = _edit_code(smoke_repo, "src/odeflows/models/cnf.py")
    try:
        dry = _snakemake(smoke_repo, "-n", "--config", "scale=smoke")
        trained = _trained(dry.stdout)
        # (every 2-D density run: its task's Hutchinson check imports the CNF module)
        assert trained and all(
            "/affjord_toy/" in p or "/affjord_rnode/hash/" in p or "/node_adjoint/" in p
            or "/primer_flows/8gaussians/" in p or "/primer_flows/gaussian2d/" in p
            for p in trained), trained
        assert not any("/anode_toy/" in p or "/anode_images/" in p for p in trained)
        assert "train code" in dry.stdout  # the reason names what changed
        audit = _run(["odeflows", "audit", "results/smoke/tables/affjord_toy.csv", "--verify"],
                     smoke_repo, check=False)
        assert audit.returncode == 1 and "produced by other train code" in audit.stdout
        assert "odeflows.models.cnf" in audit.stdout  # which module differs
        accepted = _run(["odeflows", "audit", "results/smoke/tables/affjord_toy.csv",
                         "--verify", "--accept-code-changes"], smoke_repo, check=False)
        assert accepted.returncode == 0
        other = _run(["odeflows", "audit", "results/smoke/tables/anode_toy.csv", "--verify"],
                     smoke_repo, check=False)
        assert other.returncode == 0, other.stdout[-2000:]
    finally:
        restore()
    # plotting code: figures are redrawn, nothing is retrained or re-evaluated
    restore = _edit_code(smoke_repo, "src/odeflows/figures/draw.py")
    try:
        counts = _job_counts(_snakemake(smoke_repo, "-n", "--config", "scale=smoke").stdout)
        assert counts.get("plot") == 9 and "train" not in counts and "evaluate" not in counts
    finally:
        restore()
    # documentation is no code: nothing to do
    restore = _edit_code(smoke_repo, "docs/extending.md")
    try:
        again = _snakemake(smoke_repo, "-n", "--config", "scale=smoke")
        assert "Nothing to be done" in again.stdout + again.stderr
    finally:
        restore()


def test_invalid_config_stops_before_any_job(tmp_path):
    wd = _copy_project(tmp_path)
    path = wd / "config" / "experiments" / "anode_toy.yaml"
    data = yaml.safe_load(path.read_text())
    data["models"].append("nodee")
    data["settings"]["model_options"]["hiden"] = 64  # found only when runs are resolved
    path.write_text(yaml.safe_dump(data))
    out = _snakemake(wd, "--cores", "1", "--config", "scale=smoke")
    assert out.returncode != 0
    # one message listing every problem, with the key and the closest name, no traceback
    assert "'nodee'" in out.stderr and "did you mean 'node'" in out.stderr
    assert "model_options.hiden" in out.stderr and "did you mean 'hidden'" in out.stderr
    assert "Traceback" not in out.stderr and "Exception" not in out.stderr
    assert not (wd / "results" / "smoke").exists()
    assert not (wd / "data" / "prepared" / "smoke").exists()
    out = _snakemake(wd, "-n", "--config", "scale=huge")
    assert out.returncode != 0 and "allowed values: smoke, laptop, workstation, paper" in out.stderr
