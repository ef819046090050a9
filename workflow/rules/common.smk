# Helpers shared by the rules. All logic lives in the odeflows package; this file only maps the
# validated configuration onto file paths.
import sys
from importlib import resources

from snakemake.utils import validate

from odeflows.config import (
    ConfigError,
    RunSpec,
    config_hash,
    dataset_config,
    launcher,
    load_experiment,
    resolve_run,
    run_matrix,
    run_resources,
)
from odeflows.config import IMAGE_EXPERIMENTS

try:
    RUNS = run_matrix(config)
except ConfigError as err:
    # stop before any job runs: nothing is written under results/
    sys.stderr.write(f"\nodeflows configuration error:\n{err}\n\n")
    raise SystemExit(1)
# the same schema (workflow/schemas/config.schema.yaml links to it); fills in defaults
validate(config, str(resources.files("odeflows") / "schemas" / "workflow.schema.yaml"))

SCALE = config["scale"]
CONFIG_DIR = config.get("config_dir", "config")
EXPERIMENTS = list(config["experiments"])


wildcard_constraints:
    scale="smoke|laptop|paper",
    experiment="|".join(EXPERIMENTS),
    seed=r"\d+",
    dataset=r"[A-Za-z0-9_]+",
    model=r"[A-Za-z0-9_]+",


RUN_DIR = "results/{scale}/runs/{experiment}/{dataset}/{model}/seed{seed}"


def spec_of(w):
    return RunSpec(w.scale, w.experiment, w.dataset, w.model, int(w.seed))


def run_config_hash(w):
    """Rerun trigger: a run re-trains when (and only when) its resolved config changes."""
    return config_hash(resolve_run(spec_of(w), CONFIG_DIR))


def data_config_hash(w):
    return config_hash(dataset_config(w.dataset, w.scale, CONFIG_DIR))


def scale_resources(w, key, default):
    return run_resources(w.scale, w.experiment, w.dataset, CONFIG_DIR).get(key, default)


def train_launcher(w):
    return launcher(run_resources(w.scale, w.experiment, w.dataset, CONFIG_DIR))


def runs_of(experiment, scale=SCALE):
    return [s for s in RUNS if s.experiment == experiment and s.scale == scale]


def final_outputs():
    out = []
    for exp in EXPERIMENTS:
        out.append(f"results/{SCALE}/tables/{exp}.csv")
        out.append(f"results/{SCALE}/figures/{exp}")
    out.append(f"results/{SCALE}/claims.md")
    if any(e in IMAGE_EXPERIMENTS for e in EXPERIMENTS):
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
from pathlib import Path

SNAKEMAKE_METADATA = Path(".snakemake/metadata")
EXPORTED_METADATA = Path(f"results/{SCALE}/provenance/snakemake-metadata")


def _metadata_path(name):
    return base64.urlsafe_b64decode(name.replace("@", "/") + "=" * (-len(name) % 4)).decode()


def export_snakemake_metadata():
    if not SNAKEMAKE_METADATA.is_dir():
        return
    prefixes = (f"results/{SCALE}/", f"data/prepared/{SCALE}/")
    EXPORTED_METADATA.mkdir(parents=True, exist_ok=True)
    for record in SNAKEMAKE_METADATA.iterdir():
        try:
            target = _metadata_path(record.name)
        except ValueError:
            continue
        if target.startswith(prefixes):
            shutil.copy2(record, EXPORTED_METADATA / record.name)


def restore_snakemake_metadata():
    if not EXPORTED_METADATA.is_dir():
        return
    SNAKEMAKE_METADATA.mkdir(parents=True, exist_ok=True)
    for record in EXPORTED_METADATA.iterdir():
        if not (SNAKEMAKE_METADATA / record.name).exists():
            shutil.copy2(record, SNAKEMAKE_METADATA / record.name)


restore_snakemake_metadata()
