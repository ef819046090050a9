"""A user's own modules, named in the configuration, that register models, datasets, tasks or
claims: ``modules: [mypackage.flows, extensions/my_model.py]`` in ``config/config.yaml`` or in an
experiment file. Dotted names are imported as usual (the working directory is on the path);
paths ending in ``.py`` are loaded from that file, relative to the working directory."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

__all__ = ["PluginError", "load", "source_files"]

_loaded: dict[str, ModuleType] = {}


class PluginError(ImportError):
    """A module named in the configuration cannot be imported."""


def load(modules: Iterable[str]) -> list[ModuleType]:
    """Import each module once; returns them in order."""
    out = []
    for name in modules:
        if name not in _loaded:
            _loaded[name] = _import(name)
        out.append(_loaded[name])
    return out


def _import(name: str) -> ModuleType:
    if name.endswith(".py"):
        path = Path(name)
        if not path.is_file():
            raise PluginError(f"module file {name!r} named in the configuration does not exist "
                              f"(paths are relative to the working directory {Path.cwd()})")
        mod_name = f"odeflows_plugin_{path.stem}"
        spec = importlib.util.spec_from_file_location(mod_name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        spec.loader.exec_module(module)
        return module
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        raise PluginError(f"module {name!r} named in the configuration cannot be imported: "
                          f"{err}") from err


def source_files(modules: Iterable[str]) -> list[Path]:
    """The files of loaded plugin modules (their content is part of a run's code version)."""
    files = []
    for name in modules:
        module = _loaded.get(name)
        if module is not None and getattr(module, "__file__", None):
            files.append(Path(module.__file__))
    return files
