"""Model entries are declared without their implementations: every deferred builder resolves,
the declared vocabularies match the implementations', and planning, validation, tables and
claims run without importing torch (each workflow process that does not train saves the seconds
torch takes to import)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from odeflows.models import MODELS
from odeflows.registry import Deferred


def test_every_deferred_function_of_every_entry_resolves():
    deferred = [(entry.name, entry.data, role, fn) for entry in MODELS.all()
                for role, fn in (("build", entry.build), ("fit", entry.fit),
                                 ("reference_count", entry.reference_count))
                if isinstance(fn, Deferred)]
    assert {name for name, *_ in deferred} == set(MODELS.names())
    for name, data, role, fn in deferred:
        assert callable(fn.resolve()), f"{name} on {data}: {role} {fn!r}"
        # the implementation is the module whose code the entry's runs depend on
        assert fn.target.split(":")[0] == MODELS.get(name, data).module


def test_deferred_binds_leading_arguments_and_imports_on_first_call():
    join = Deferred("os.path:join", "a")
    assert join._fn is None  # nothing imported yet
    assert join("b") == "a/b" and join._fn is not None
    assert repr(join) == "Deferred('os.path:join', 'a')"
    with pytest.raises(ValueError, match="package.module:name"):
        Deferred("os.path.join")
    with pytest.raises(AttributeError):
        Deferred("os.path:no_such_function")()


def test_declared_names_match_the_implementations():
    from odeflows.nn import layers, names

    assert tuple(layers.NONLINEARITIES) == names.NONLINEARITIES
    assert tuple(layers.LAYERS) == names.TIME_LAYERS


def test_planning_tables_and_claims_do_not_import_torch():
    code = """
import sys
from odeflows.config import plan
from odeflows.models import MODELS
from odeflows.tasks import TASKS
for scale in ("smoke", "laptop", "workstation", "paper"):
    plan({"scale": scale})
[(e.options, e.kinds) for e in MODELS.all()]
[t.metrics for t in TASKS.all()]
import odeflows.tables, odeflows.audit, odeflows.claims, odeflows.cli
loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
assert not loaded, loaded
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
