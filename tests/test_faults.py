"""Faults on purpose: a smoke run of two cheap experiments is killed with SIGKILL, the whole
Snakemake process group at once, several times — at seeded random moments and on cue inside
training, the tables step and the claims step — and each time unlocked and rerun with
``--rerun-incomplete``. At the end the tables and claims must equal an uninterrupted run's,
timing columns aside: the README promises that an interrupted training resumes from its
checkpoint with exactly the same numbers, and no half-written file may survive a rerun.

The test prints (``pytest -s``) where each kill landed: the odeflows commands running in the
group and the outputs of the jobs Snakemake had started and not finished.
``ODEFLOWS_FAULT_SEED`` picks other random moments."""

from __future__ import annotations

import base64
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import ROOT

NO_PROC = not Path("/proc/self/stat").exists() or os.name != "posix"

# a few seconds of training each (8 runs), an accuracy table, a memory/time table and 14 claims
EXPERIMENTS = ("anode_toy", "node_adjoint")
CONFIG = ["--config", "scale=smoke", f"experiments=[{','.join(EXPERIMENTS)}]"]
SEED = int(os.environ.get("ODEFLOWS_FAULT_SEED", "20261206"))
RUN_TIMEOUT = 300
# the rule that runs each odeflows command
RULE_OF = {"prepare": "prepare_data", "train": "train", "evaluate": "evaluate",
           "tables": "tables", "plot": "plot", "claims": "claims",
           "parameter-counts": "parameter_counts"}
# wall-clock columns and evidence: the only things a rerun may change
TIMING_COLUMN = re.compile(r"seconds|hours|time|wall|date|host|elapsed", re.I)
TIMED_TEXT = re.compile(r"seconds|hours|wall|it/s|s/it|\d\s*(s|ms|min|h)\b", re.I)


def _workflow_copy(dst: Path) -> Path:
    # the package itself runs from this checkout (PYTHONPATH)
    dst.mkdir(parents=True)
    for name in ("Snakefile", "workflow", "config", "envs", "profiles"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst / name)
    return dst


def _env() -> dict[str, str]:
    # the jobs' shell commands find this interpreter's `odeflows`
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, "PYTHONPATH": str(ROOT / "src"), "MPLBACKEND": "Agg"}


def _snakemake(wd: Path, *args: str, log: Path) -> subprocess.Popen:
    """Snakemake in a session of its own: its process group is itself and every job it runs."""
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "snakemake", *args, *CONFIG], cwd=wd,
                                env=_env(), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _run_to_end(wd: Path, *args: str, log: Path) -> None:
    proc = _snakemake(wd, "--cores", "2", *args, log=log)
    assert proc.wait(timeout=RUN_TIMEOUT) == 0, log.read_text()[-4000:]


# -- what runs, what Snakemake thinks is unfinished ----------------------------------------------
def _jobs_in_group(pgid: int) -> list[str]:
    """The rules whose odeflows command is running in the process group, read from /proc."""
    rules = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            argv = Path(entry.path, "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        # after the command name (which may hold spaces): state, parent pid, process group
        if int(stat.rsplit(")", 1)[1].split()[2]) != pgid:
            continue
        rules += [RULE_OF[nxt] for arg, nxt in zip(argv, argv[1:], strict=False)
                  if os.path.basename(arg) == "odeflows" and nxt in RULE_OF]
    return sorted(rules)


def _incomplete_outputs(wd: Path, since: float = 0.0) -> list[str]:
    """The outputs Snakemake marked incomplete (.snakemake/incomplete holds one file per output
    of a job that started and did not finish, named by the base64 of its path, split at 255
    characters); ``since``: only those of jobs started after that time."""
    root = wd / ".snakemake" / "incomplete"
    if not root.is_dir():
        return []
    names = []
    for marker in root.rglob("*"):
        if marker.is_file() and marker.stat().st_mtime >= since:
            b64 = "".join(p.removeprefix("@") for p in marker.relative_to(root).parts)
            names.append(base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)).decode())
    return sorted(names)


def _checkpoints(wd: Path) -> dict[str, int]:
    """Run directory -> the iteration of its checkpoint, for the runs that have one."""
    found = {}
    for ckpt in wd.glob("results/smoke/runs/*/*/*/seed*/checkpoint.pt"):
        state = torch.load(ckpt, weights_only=False, map_location="cpu")
        found[str(ckpt.parent.relative_to(wd))] = int(state["state"]["iteration"])
    return found


# -- cues: when to kill ----------------------------------------------------------------------
def _files(wd: Path, pattern: str) -> dict[Path, tuple[int, int]]:
    out = {}
    for p in wd.glob(pattern):
        try:
            st = p.stat()
        except FileNotFoundError:
            continue
        out[p] = (st.st_ino, st.st_mtime_ns)
    return out


@dataclass
class Cue:
    """Fires when ``pattern`` matches a file that is new or rewritten since the run started, or,
    without a pattern, ``delay`` seconds into the run once some job runs."""
    what: str
    pattern: str | None = None
    delay: float = 0.0
    seen: dict = field(default_factory=dict)

    def arm(self, wd: Path) -> None:
        self.seen = _files(wd, self.pattern) if self.pattern else {}

    def fired(self, wd: Path, pgid: int, elapsed: float) -> bool:
        if self.pattern is None:
            return elapsed >= self.delay and bool(_jobs_in_group(pgid))
        now = _files(wd, self.pattern)
        return any(self.seen.get(p) != sig for p, sig in now.items())


@dataclass
class Kill:
    run: int
    cue: str
    at: float
    jobs: list[str]
    # outputs of the jobs this run started and did not finish; all incomplete outputs
    started: list[str]
    incomplete: list[str]
    checkpoints: dict[str, int]

    def line(self) -> str:
        jobs = ", ".join(f"{r} x{self.jobs.count(r)}" for r in sorted(set(self.jobs))) or "none"
        started = ", ".join(o.removeprefix("results/smoke/") for o in self.started)
        return (f"kill {self.run} ({self.cue}), {self.at:.1f} s into the run: jobs running: "
                f"{jobs}; unfinished outputs: {started or 'none'}")


def _run_and_kill(wd: Path, run: int, cue: Cue, log: Path) -> Kill | None:
    """One Snakemake run killed with SIGKILL when ``cue`` fires; None if it finished first. The
    group is stopped first so that what it was doing at the kill can be read at leisure."""
    cue.arm(wd)
    since = time.time()
    proc = _snakemake(wd, "--cores", "2", "--rerun-incomplete", log=log)
    started = time.monotonic()
    while proc.poll() is None:
        elapsed = time.monotonic() - started
        assert elapsed < RUN_TIMEOUT, log.read_text()[-4000:]
        if not cue.fired(wd, proc.pid, elapsed):
            time.sleep(0.002 if cue.pattern else 0.02)
            continue
        os.killpg(proc.pid, signal.SIGSTOP)
        jobs = _jobs_in_group(proc.pid)
        if not jobs and cue.pattern is None:  # between two jobs: wait for the next one
            os.killpg(proc.pid, signal.SIGCONT)
            continue
        started_here, incomplete = _incomplete_outputs(wd, since), _incomplete_outputs(wd)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        _wait_until_gone(proc.pid)
        return Kill(run, cue.what, elapsed, jobs, started_here, incomplete, _checkpoints(wd))
    return None


def _wait_until_gone(pgid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


# -- the comparison --------------------------------------------------------------------------
def _tables(res: Path) -> dict[str, pd.DataFrame]:
    out = {}
    for csv in sorted((res / "tables").glob("*.csv")):
        df = pd.read_csv(csv)
        out[csv.name] = df.drop(columns=[c for c in df.columns if TIMING_COLUMN.search(c)])
    return out


def _claims(res: Path) -> dict[str, tuple[str, list[str]]]:
    claims = json.loads((res / "claims.json").read_text())
    return {n: (c["verdict"], [e for e in c["evidence"] if not TIMED_TEXT.search(e)])
            for n, c in claims.items()}


def _metrics(repo: Path) -> dict[str, dict]:
    folder = repo / "results" / "metrics" / "smoke"
    out = {}
    for f in sorted(folder.rglob("*.json")):
        data = json.loads(f.read_text())
        out[str(f.relative_to(folder))] = {k: v for k, v in data.items()
                                           if not TIMING_COLUMN.search(k)}
    return out


def _kill_plan(rng: random.Random) -> list[Cue]:
    # Snakemake takes a few seconds to start; the first jobs prepare data and train
    return [
        Cue("a seeded random moment", delay=rng.uniform(4.0, 12.0)),
        Cue("mid-training: a checkpoint was written",
            pattern="results/smoke/runs/*/*/*/seed*/checkpoint.pt"),
        Cue("a seeded random moment", delay=rng.uniform(3.0, 8.0)),
        Cue("the tables step: a per-seed table was written",
            pattern="results/smoke/tables/*_runs.csv"),
        Cue("the claims step: a claim's page was written",
            pattern="results/smoke/report/claim_*.html"),
    ]


@pytest.mark.slow
@pytest.mark.long_running(minutes=3)
@pytest.mark.skipif(NO_PROC, reason="finds the jobs of a process group in /proc")
def test_sigkill_at_any_moment_then_rerun_gives_the_same_tables_and_claims(tmp_path):
    reference = _workflow_copy(tmp_path / "reference")
    faulty = _workflow_copy(tmp_path / "faulty")
    t0 = time.monotonic()
    _run_to_end(reference, log=tmp_path / "reference.log")
    uninterrupted = time.monotonic() - t0

    t0 = time.monotonic()
    kills: list[Kill] = []
    for run, cue in enumerate(_kill_plan(random.Random(SEED)), start=1):
        kill = _run_and_kill(faulty, run, cue, tmp_path / f"faulty-{run}.log")
        if kill is None:
            break
        kills.append(kill)
        # a SIGKILLed Snakemake leaves its lock behind
        unlock = _snakemake(faulty, "--unlock", log=tmp_path / f"unlock-{run}.log")
        assert unlock.wait(timeout=RUN_TIMEOUT) == 0, (tmp_path / f"unlock-{run}.log").read_text()
    _run_to_end(faulty, "--rerun-incomplete", log=tmp_path / "faulty-final.log")
    interrupted = time.monotonic() - t0

    print(f"\nfault seed {SEED}; uninterrupted run {uninterrupted:.0f} s, "
          f"killed {len(kills)} times and rerun {interrupted:.0f} s")
    for kill in kills:
        print(kill.line())
        if kill.checkpoints:
            print(f"    checkpoints left: {kill.checkpoints}")

    landed = [k for k in kills if k.jobs]
    assert len(landed) >= 3, [k.line() for k in kills]
    assert any({"tables", "claims"} & set(k.jobs) for k in landed), \
        [k.line() for k in kills]
    for cue in ("the tables step", "the claims step"):
        kill = next((k for k in kills if k.cue.startswith(cue)), None)
        assert kill is not None and kill.started, f"no kill during {cue}: {kills}"

    # a run killed with a checkpoint on disk resumed from it (its latest, if killed again)
    resumable: dict[str, int] = {}
    for kill in kills:
        for run_dir, iteration in kill.checkpoints.items():
            if f"{run_dir}/summary.json" in kill.incomplete:
                resumable[run_dir] = iteration
    assert resumable, "no kill left a checkpoint to resume from"
    for run_dir, iteration in resumable.items():
        summary = json.loads((faulty / run_dir / "summary.json").read_text())
        assert summary["resumed_from_iteration"] == iteration, (run_dir, summary)

    ref, got = reference / "results" / "smoke", faulty / "results" / "smoke"
    ref_tables, got_tables = _tables(ref), _tables(got)
    assert sorted(got_tables) == sorted(ref_tables)
    for name, table in ref_tables.items():
        pd.testing.assert_frame_equal(got_tables[name], table, check_exact=True, obj=name)
    assert _claims(got) == _claims(ref)
    assert sum(len(lines) for _, lines in _claims(ref).values()) > 0
    assert _metrics(faulty) == _metrics(reference) != {}
    assert (got / "claims.md").exists()
    # no temporary file of an interrupted atomic write is left among the results
    assert not list(got.rglob(".*.tmp*")), list(got.rglob(".*.tmp*"))


# -- what the kills found ----------------------------------------------------------------------
def _writer_stopped_before_rename(path: Path) -> subprocess.Popen:
    """A process inside write_json_atomic(path) that has written its temporary file and waits
    before the rename."""
    code = ("import os, sys, time; from odeflows import provenance; "
            "os.replace = lambda *a: time.sleep(600); "
            "provenance.write_json_atomic(sys.argv[1], {'half': 'written'})")
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], env=_env())
    tmp = path.with_name(f".{path.name}.tmp{proc.pid}")
    deadline = time.monotonic() + 60
    while not (tmp.exists() and tmp.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert tmp.exists(), "the writer never wrote its temporary file"
    return proc


def test_rewriting_a_file_removes_what_a_killed_atomic_write_left(tmp_path):
    """A job killed between writing a file's temporary copy and renaming it (the kill test found
    a .config.json.tmp<pid> in a run directory) leaves the copy behind; the rerun, which writes
    the file again, removes it, but not the copy of a process still writing."""
    from odeflows.rundir import RunDir

    run = RunDir(tmp_path / "run")
    killed = _writer_stopped_before_rename(run.file("config.json"))
    killed.kill()
    killed.wait()
    writing = _writer_stopped_before_rename(run.file("config.json"))
    try:
        ckpt_tmp = run.file(f".checkpoint.pt.tmp{killed.pid}")
        ckpt_tmp.write_bytes(b"half-written")  # as torch.save leaves it
        run.write_config({"seed": 0})
        assert sorted(p.name for p in run.path.iterdir()) == sorted(
            [f".checkpoint.pt.tmp{killed.pid}", f".config.json.tmp{writing.pid}",
             "config.json"])
        run.save_checkpoint({"iteration": 1})
        assert not ckpt_tmp.exists()
        ckpt_tmp.write_bytes(b"half-written")
        run.remove_checkpoint()  # the run completed without another checkpoint
        assert sorted(p.name for p in run.path.iterdir()) == sorted(
            [f".config.json.tmp{writing.pid}", "config.json"])
    finally:
        writing.kill()
        writing.wait()
