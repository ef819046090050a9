"""Property-based fuzzing of the configuration: every shipped experiment file, mutated one value
at a time (wrong types, NaN and ±inf, negatives, empty lists, unknown keys at every depth,
deleted keys, renamed scales), gives either a clean error that names the key path (exit 2, no
traceback, nothing written) or, where the mutation is valid by the schemas, a clean plan.

`odeflows validate` runs in-process for most examples, through a subprocess for a few, and the
Snakefile's loading (`snakemake -n`) for a few in the slow tier. Examples are derandomized, so CI
draws the same ones each time; Hypothesis prints the failing one."""

from __future__ import annotations

import contextlib
import copy
import io
import math
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, example, given, note, settings
from hypothesis import strategies as st

from conftest import ROOT
from odeflows.cli import main
from odeflows.config import experiment_ids

CONFIG = ROOT / "config"
EXPERIMENTS = {e: yaml.safe_load((CONFIG / "experiments" / f"{e}.yaml").read_text())
               for e in experiment_ids(CONFIG)}
SCALES = list(yaml.safe_load((CONFIG / "scales.yaml").read_text()))
NON_FINITE = [math.nan, math.inf, -math.inf]
WRONG = ["fifty", "", [], {}, True, None, 0, -1, 3, 2.5, ["x"], {"zz": 1}]
FUZZ = settings(derandomize=True, deadline=None, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
KeyPath = tuple[str | int, ...]


@dataclass
class Mutation:
    experiment: str
    scale: str
    kind: str
    path: KeyPath
    doc: dict[str, Any]
    must_fail: bool  # invalid whatever the rest of the file holds
    names: tuple[str, ...]  # key names the message must give: one of them, or ``every`` one
    every: bool = False

    def named_in(self, message: str) -> bool:
        return (all if self.every else any)(name in message for name in self.names)

    def __str__(self) -> str:
        return (f"{self.kind} at {'.'.join(map(str, self.path)) or '<top level>'} of "
                f"{self.experiment}.yaml, validated at scale {self.scale}")


def _paths(node: Any, prefix: KeyPath = ()) -> list[KeyPath]:
    """Every key path in a document (the top level excluded)."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


def _get(doc: Any, path: KeyPath) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _key_names(path: KeyPath) -> tuple[str, ...]:
    return tuple(str(p) for p in path if isinstance(p, str))


@st.composite
def mutations(draw: st.DrawFn) -> Mutation:
    experiment = draw(st.sampled_from(sorted(EXPERIMENTS)))
    doc = copy.deepcopy(EXPERIMENTS[experiment])
    scale = draw(st.sampled_from(SCALES))
    paths = _paths(doc)
    numbers = [p for p in paths if _is_number(_get(doc, p))]
    lists = [p for p in paths if isinstance(_get(doc, p), list)]
    mappings = [(), *(p for p in paths if isinstance(_get(doc, p), dict))]
    keys = [p for p in paths if isinstance(p[-1], str)]
    kind = draw(st.sampled_from(["wrong type", "non-finite", "negative", "empty list",
                                 "unknown key", "deleted key", "renamed scale"]))
    must_fail = False
    if kind == "wrong type":
        path = draw(st.sampled_from(paths))
        value = draw(st.sampled_from(WRONG + NON_FINITE))
        must_fail = isinstance(value, float) and not math.isfinite(value)
    elif kind == "non-finite":
        path, value, must_fail = draw(st.sampled_from(numbers)), draw(
            st.sampled_from(NON_FINITE)), True
    elif kind == "negative":
        path = draw(st.sampled_from(numbers))
        value = -abs(_get(doc, path)) or -1
    elif kind == "empty list":
        path, value = draw(st.sampled_from(lists)), []
    elif kind == "unknown key":
        parent = draw(st.sampled_from(mappings))
        siblings = sorted(map(str, _get(doc, parent))) or ["key"]
        key = draw(st.sampled_from([f"{siblings[0]}x", f"zz_{siblings[-1]}", "unknown_key"]))
        path, value = (*parent, key), draw(st.sampled_from([1, "x", {}, [1]]))
        # only `columns` takes keys of the user's choice
        must_fail = parent[-1:] != ("columns",)
    elif kind == "deleted key":
        return _deleted(experiment, scale, doc, draw(st.sampled_from(keys)))
    else:
        old = draw(st.sampled_from(sorted(doc["scales"])))
        new = draw(st.sampled_from([f"{old}x", old[:-1], *[s for s in SCALES
                                                           if s not in doc["scales"]]]))
        doc["scales"] = {new if k == old else k: v for k, v in doc["scales"].items()}
        return Mutation(experiment, scale, kind, ("scales", old), doc, new not in SCALES,
                        ("scales", old, new))
    _get(doc, path[:-1])[path[-1]] = value
    return Mutation(experiment, scale, kind, path, doc, must_fail, _key_names(path)[-2:],
                    every=True)


def _deleted(experiment: str, scale: str, doc: dict[str, Any], path: KeyPath) -> Mutation:
    # a key the run needs may be reported as missing from the merged run config instead,
    # which names the key, not the layer it was deleted from
    held = _get(doc, path)
    del _get(doc, path[:-1])[path[-1]]
    names = _key_names(path) + tuple(n for p in _paths(held) for n in _key_names(p))
    return Mutation(experiment, scale, "deleted key", path, doc, False, names)


def _config_dir(base: Path, mutation: Mutation) -> Path:
    """A config dir holding the mutated experiment (the only one validated)."""
    cdir = base / "config"
    (cdir / "experiments").mkdir(parents=True)
    for name in ("datasets.yaml", "scales.yaml", "config.yaml"):
        shutil.copy(CONFIG / name, cdir / name)
    text = yaml.safe_dump(mutation.doc, sort_keys=False)
    (cdir / "experiments" / f"{mutation.experiment}.yaml").write_text(text)
    note(f"mutation: {mutation}\n--- {mutation.experiment}.yaml\n{text}")
    return cdir


def _files(base: Path) -> set[Path]:
    return {p.relative_to(base) for p in base.rglob("*")}


def _check(mutation: Mutation, rc: int, out: str, err: str) -> None:
    note(f"exit {rc}\nstdout: {out}\nstderr: {err}")
    event(f"{mutation.kind}: {'valid' if rc == 0 else 'rejected'}")  # --hypothesis-show-statistics
    assert "Traceback" not in err and "Exception" not in err
    if rc == 0:
        assert not mutation.must_fail, f"accepted: {mutation}"
        assert "configuration valid" in out
        return
    assert rc == 2 and err.startswith("odeflows: invalid configuration"), err
    assert mutation.named_in(err), err


@settings(FUZZ, max_examples=300)
@given(mutations())
# found by the fuzzer: the parameter-matched filters every image model of the set needs
@example(_deleted("anode_images", "laptop", copy.deepcopy(EXPERIMENTS["anode_images"]),
                  ("dataset_model_settings", "digits8x8")))
def test_mutated_experiment_validates_cleanly(mutation):
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        cdir = _config_dir(base, mutation)
        before = _files(base)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(["validate", "--scale", mutation.scale, "--config-dir", str(cdir),
                       "--experiments", mutation.experiment])
        _check(mutation, rc, out.getvalue(), err.getvalue())
        assert _files(base) == before


def _env(cwd: Path) -> dict[str, str]:
    src = cwd / "src" if (cwd / "src").is_dir() else ROOT / "src"
    return {**os.environ, "PYTHONPATH": str(src), "MPLBACKEND": "Agg"}


@settings(FUZZ, max_examples=4)
@given(mutations())
def test_mutated_experiment_through_the_command_line(mutation):
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        cdir = _config_dir(base, mutation)
        before = _files(base)
        out = subprocess.run([sys.executable, "-m", "odeflows", "validate", "--scale",
                              mutation.scale, "--config-dir", str(cdir), "--experiments",
                              mutation.experiment], cwd=base, capture_output=True, text=True,
                             timeout=120, env=_env(base))
        _check(mutation, out.returncode, out.stdout, out.stderr)
        assert _files(base) == before


# what `snakemake -n` needs of the project (the package comes from PYTHONPATH)
WORKFLOW_FILES = ("Snakefile", "workflow", "profiles")


def _snakemake_dry_run(base: Path, scale: str, experiment: str) -> subprocess.CompletedProcess:
    for name in WORKFLOW_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, base / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, base / name)
    return subprocess.run(["snakemake", "-n", "--cores", "1", "--config", f"scale={scale}",
                           f"experiments=[{experiment}]"], cwd=base, capture_output=True,
                          text=True, timeout=300, env=_env(base))


def _check_snakemake(mutation: Mutation, base: Path, out: subprocess.CompletedProcess) -> None:
    note(f"exit {out.returncode}\nstdout: {out.stdout[-3000:]}\nstderr: {out.stderr[-3000:]}")
    assert "Traceback" not in out.stderr and "Exception" not in out.stderr
    assert not (base / "results").exists() and not (base / "data").exists()
    if out.returncode == 0:
        assert not mutation.must_fail, f"accepted: {mutation}"
        return
    assert "odeflows configuration error" in out.stderr, out.stderr
    assert mutation.named_in(out.stderr), out.stderr


@pytest.mark.slow
@settings(FUZZ, max_examples=4)
@given(mutations())
def test_mutated_experiment_through_snakemake(mutation):
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        _config_dir(base, mutation)
        out = _snakemake_dry_run(base, mutation.scale, mutation.experiment)
        _check_snakemake(mutation, base, out)


@pytest.mark.slow
@pytest.mark.parametrize("edit,fragments", [
    (("    epochs: 50\n", "    epochs: fifty\n"),
     ["settings.train.epochs", "'fifty' is not of type 'integer'"]),
    (("    lr: 1.0e-3\n", "    lr: .nan\n"), ["train.lr", "nan is not a finite number"])])
def test_snakemake_rejects_a_bad_default_the_scale_overrides(tmp_path, edit, fragments):
    """The issue's examples, at the default scale: `snakemake -n` stops before the DAG."""
    shutil.copytree(CONFIG, tmp_path / "config")
    path = tmp_path / "config" / "experiments" / "anode_toy.yaml"
    text = path.read_text()
    assert edit[0] in text
    path.write_text(text.replace(*edit, 1))
    out = _snakemake_dry_run(tmp_path, "laptop", "anode_toy")
    assert out.returncode != 0
    for fragment in fragments:
        assert fragment in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and "Exception" not in out.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "data").exists()


@pytest.mark.slow
def test_snakemake_reports_a_bad_workflow_config_as_odeflows_does(tmp_path):
    shutil.copytree(CONFIG, tmp_path / "config")
    out = _snakemake_dry_run(tmp_path, "5", "anode_toy")
    assert out.returncode != 0
    assert "odeflows configuration error" in out.stderr and "config: scale: 5" in out.stderr
    assert "Traceback" not in out.stderr and "ValidationError" not in out.stderr
