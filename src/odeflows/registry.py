"""Named entries: models, dataset generators, tasks and claims each live in one registry.

A registry maps a name to an entry that declares the facts the harness needs; the harness asks
the entry, never tests the name. Built-in entries register themselves when their module is
imported: :meth:`Registry.discover` imports every module of a package (so dropping a module into
``odeflows/models/entries/`` is all it takes), and :func:`odeflows.plugins.load` imports a
user's own modules named in the configuration. Built-in model entries name their builders with
:class:`Deferred`, so what they are is known without importing torch.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

__all__ = ["Deferred", "Registry", "UnknownName", "suggest"]

T = TypeVar("T")


def suggest(name: str, choices: list[str] | tuple[str, ...] | set[str]) -> str:
    """`` (did you mean 'x'?)`` when a close match exists, else an empty string."""
    close = difflib.get_close_matches(str(name), sorted(map(str, choices)), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Deferred:
    """A function named ``"package.module:name"`` and imported on its first call, with leading
    arguments bound (like :func:`functools.partial`).

    Built-in entries declare their builders this way so that what an entry *is* (its kinds,
    options, traits) is known without importing its implementation: planning the workflow,
    validating configurations, tables and claims then run without importing torch, which costs
    each such process seconds."""

    __slots__ = ("target", "args", "_fn")

    def __init__(self, target: str, *args: Any) -> None:
        module, sep, name = target.partition(":")
        if not (module and sep and name):
            raise ValueError(f"{target!r} is not 'package.module:name'")
        self.target = target
        self.args = args
        self._fn: Callable[..., Any] | None = None

    def resolve(self) -> Callable[..., Any]:
        if self._fn is None:
            module, _, name = self.target.partition(":")
            self._fn = getattr(importlib.import_module(module), name)
        return self._fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*self.args, *args, **kwargs)

    def __repr__(self) -> str:
        bound = "".join(f", {a!r}" for a in self.args)
        return f"Deferred({self.target!r}{bound})"


class UnknownName(KeyError):
    """A name that no entry of a registry has; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class Registry(Generic[T]):
    """Entries of one kind, keyed by name (optionally by (name, variant) such as the data kind a
    model implementation handles)."""

    def __init__(self, kind: str, packages: tuple[str, ...] = ()):
        self.kind = kind
        self._packages = packages
        self._entries: dict[str, dict[str | None, T]] = {}
        self._discovered = False

    # -- registration ---------------------------------------------------------------------------
    def add(self, name: str, entry: T, variant: str | None = None) -> T:
        slot = self._entries.setdefault(name, {})
        if variant in slot and slot[variant] is not entry:
            where = f" for {variant}" if variant else ""
            raise ValueError(f"{self.kind} {name!r}{where} is registered twice")
        slot[variant] = entry
        return entry

    def discover(self) -> None:
        """Import every module of the built-in packages once (each registers its entries)."""
        if self._discovered:
            return
        self._discovered = True
        for package in self._packages:
            pkg = importlib.import_module(package)
            for info in pkgutil.iter_modules(pkg.__path__, prefix=f"{package}."):
                importlib.import_module(info.name)

    # -- lookup ---------------------------------------------------------------------------------
    def names(self) -> list[str]:
        self.discover()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self.discover()
        return name in self._entries

    def variants(self, name: str) -> list[str | None]:
        return list(self._slot(name))

    def _slot(self, name: str) -> dict[str | None, T]:
        self.discover()
        if name not in self._entries:
            raise UnknownName(f"unknown {self.kind} {name!r}{suggest(name, self._entries)}; "
                              f"known: {', '.join(sorted(self._entries))}")
        return self._entries[name]

    def get(self, name: str, variant: str | None = None) -> T:
        slot = self._slot(name)
        if variant not in slot:
            have = ", ".join(str(v) for v in slot)
            raise UnknownName(f"{self.kind} {name!r} has no {variant} version (it has: {have})")
        return slot[variant]

    def all(self) -> Iterator[T]:
        self.discover()
        for slot in self._entries.values():
            yield from slot.values()

    def decorator(self, name: str, variant: str | None = None,
                  make: Callable[[Callable], T] | None = None) -> Callable[[Callable], Callable]:
        """``@registry.decorator(name)``: register the decorated function (or ``make(fn)``)."""
        def wrap(fn: Callable) -> Callable:
            self.add(name, make(fn) if make else fn, variant)
            return fn
        return wrap
