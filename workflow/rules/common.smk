# Helpers shared by the rules. All logic lives in the odeflows package; this file only maps the
# validated configuration onto file paths and rerun triggers.
import os
import sys
from importlib import resources
from pathlib import Path

from snakemake.utils import validate

from odeflows import versions
from odeflows.config import (
    ConfigError,
    dataset_config,
    launcher,
    load_scales,
    plan,
    run_resources,
)
from odeflows.provenance import config_hash
from odeflows.rundir import PATTERN as RUN_DIR
from odeflows.rundir import RunSpec

try:
    # every configuration problem at once, before the DAG: nothing is written under results/
    PLAN = plan(config)
except ConfigError as err:
    sys.stderr.write(f"\nodeflows configuration error:\n{err}\n\n")
    raise SystemExit(1)
# fills in the schema's defaults (the same schema odeflows has checked)
validate(config, str(resources.files("odeflows") / "schemas" / "workflow.schema.yaml"))

SCALE = PLAN.scale
# the user's modules every command imports (an experiment's own are imported from its file; a
# dataset's generator may live in any of them)
WORKFLOW_MODULES = " ".join(["--modules", *config["modules"]]) if config.get("modules") else ""
ALL_MODULES = " ".join(["--modules", *PLAN.modules]) if PLAN.modules else ""
CONFIG_DIR = PLAN.config_dir
EXPERIMENTS = PLAN.experiments


wildcard_constraints:
    scale="|".join(load_scales(CONFIG_DIR)),
    experiment="|".join(EXPERIMENTS),
    seed=r"\d+",
    dataset=r"[A-Za-z0-9_]+",
    model=r"[A-Za-z0-9_]+",


def run_config(w):
    return PLAN.config(RunSpec(w.scale, w.experiment, w.dataset, w.model, int(w.seed)))


# Rerun triggers (Snakemake `params`): a job reruns when, and only when, what it computes from
# changes — its resolved configuration or the content of the code it runs. The values name
# what they are, so `snakemake -n` says which one changed.
def run_config_hash(w):
    return f"config {config_hash(run_config(w))}"


def code(stage, cfg=None, extra=()):
    version = versions.code_version(stage, cfg, extra, PLAN.modules)["version"]
    return f"{stage} code {version}"


def train_code(w):
    return code("train", run_config(w))


def evaluate_code(w):
    return code("evaluate", run_config(w))


def data_config_hash(w):
    return f"config {config_hash(dataset_config(w.dataset, w.scale, CONFIG_DIR))}"


def data_code(w):
    return code("prepare", dataset_config(w.dataset, w.scale, CONFIG_DIR))


def task_modules(experiment):
    from odeflows.tasks import get_task

    return sorted({get_task(PLAN.configs[s]["task"]).module for s in PLAN.runs_of(experiment)})


def scale_resources(w, key, default):
    return run_resources(w.scale, w.experiment, w.dataset, CONFIG_DIR).get(key, default)


def train_runtime(w):
    """Minutes a training job may run (`sbatch -t`); also its priority: longest first."""
    return scale_resources(w, "runtime", 30)


def prepare_priority(w):
    """Above every training job that reads the dataset. Snakemake does not pass a job's priority
    on to the jobs it waits for: with the default 0, a long run whose data is not yet prepared
    waits behind every shorter run whose data is (the first workstation run with priorities
    prepared digits8x8 35 minutes in)."""
    # a RunSpec has the wildcards train_runtime reads (scale, experiment, dataset)
    return 1 + max((train_runtime(s) for s in PLAN.runs
                    if s.scale == w.scale and s.dataset == w.dataset), default=0)


def train_launcher(w):
    return launcher(run_resources(w.scale, w.experiment, w.dataset, CONFIG_DIR))


def runs_of(experiment):
    return PLAN.runs_of(experiment)


def has_images():
    return any(c["data"]["kind"] == "images" for c in PLAN.configs.values())


def front_page():
    page = Path("results", SCALE, "report", "front.rst")
    return str(page) if page.exists() else "workflow/report/workflow.rst"


def final_outputs():
    out = []
    for exp in EXPERIMENTS:
        out.append(f"results/{SCALE}/tables/{exp}.csv")
        out.append(f"results/{SCALE}/figures/{exp}")
    out.append(f"results/{SCALE}/claims.md")
    if has_images():
        out.append(f"results/{SCALE}/tables/parameters.md")
    return out


# --- Snakemake's provenance travels with the results ----------------------------------------
# DVC restores results/ and data/ by content but not their modification times, and a fresh clone
# has no .snakemake/ records, so Snakemake would see "updated input files" everywhere. On success
# the records of this scale's outputs (params, code, input checksums) are exported next to the
# results, which DVC versions with them; a later parse restores missing records, and Snakemake
# then judges up-to-dateness by checksum and params, not by mtime (profiles/default raises the
# checksum size limit so large inputs are checksummed too).
import base64
import shutil

# DVC reads every scale's metrics from one declared folder (dvc.yaml), so a scale's metrics sit
# outside results/<scale>
METRICS_DIR = "results/metrics/{scale}"
SNAKEMAKE_METADATA = Path(".snakemake", "metadata")
EXPORTED_METADATA = Path("results", SCALE, "provenance", "snakemake-metadata")


def _metadata_path(name):
    decoded = base64.urlsafe_b64decode(name + "=" * (-len(name) % 4)).decode()
    return decoded.replace("@", os.sep)


def export_snakemake_metadata():
    if not SNAKEMAKE_METADATA.is_dir():
        return
    prefixes = tuple(str(Path(folder)) + os.sep for folder in (
        Path("results", SCALE), Path("data", "prepared", SCALE), METRICS_DIR.format(scale=SCALE)))
    EXPORTED_METADATA.mkdir(parents=True, exist_ok=True)
    for record in SNAKEMAKE_METADATA.iterdir():
        try:
            target = _metadata_path(record.name)
        except ValueError:
            continue
        if (target + os.sep).startswith(prefixes):
            shutil.copy2(record, EXPORTED_METADATA / record.name)


def restore_snakemake_metadata():
    if not EXPORTED_METADATA.is_dir():
        return
    SNAKEMAKE_METADATA.mkdir(parents=True, exist_ok=True)
    for record in EXPORTED_METADATA.iterdir():
        if not (SNAKEMAKE_METADATA / record.name).exists():
            shutil.copy2(record, SNAKEMAKE_METADATA / record.name)


restore_snakemake_metadata()
