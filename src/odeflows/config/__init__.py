"""Load, check and resolve the configuration (the YAML files of a config dir, ``config/`` by
default).

Names live once: scales in ``config/scales.yaml``, datasets in ``config/datasets.yaml``,
experiments as the files ``config/experiments/<id>.yaml``, models, dataset generators and tasks in
their registries. Data flows one way: the workflow config names a scale and experiments; the run
matrix is experiment × dataset × model × seed at that scale; each run's configuration is resolved
by deep merging the experiment's layers, completed with the defaults its model entry, its task and
the training loop declare, and checked strictly — an unknown key anywhere is an error that names
the key path, the file and layer that set it and, where one is close, the intended key. Every
settings layer of every experiment file is also checked on its own, at every scale, so that a
value the selected scale overrides, or one of a scale not selected, is reported now rather than
when that scale runs; numbers must be finite. :func:`plan` checks everything and reports every
problem at once, before anything is run or written.

The modules, each importing only those before it: :mod:`~odeflows.config.errors` (the error),
:mod:`~odeflows.config.schemas` (the shipped schemas and their messages),
:mod:`~odeflows.config.loading` (reading the files), :mod:`~odeflows.config.checks` (names and
settings layers), :mod:`~odeflows.config.resolve` (one run's or dataset's configuration) and
:mod:`~odeflows.config.plan` (every run of a scale, and a training job's resources).
"""

from __future__ import annotations

from odeflows.config.errors import ConfigError
from odeflows.config.loading import experiment_ids, load_datasets, load_experiment, load_scales
from odeflows.config.plan import (
    Plan,
    launcher,
    plan,
    run_matrix,
    run_resources,
    validate_workflow,
)
from odeflows.config.resolve import (
    complete_config,
    dataset_config,
    deep_merge,
    models_on,
    resolve_run,
    scale_entry,
)

__all__ = ["ConfigError", "Plan", "complete_config", "dataset_config", "deep_merge",
           "experiment_ids", "launcher", "load_datasets", "load_experiment", "load_scales",
           "models_on", "plan", "resolve_run", "run_matrix", "run_resources", "scale_entry",
           "validate_workflow"]
