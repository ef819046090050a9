"""The one error every configuration problem is reported as: all problems found, at once."""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """One or more configuration values are missing, malformed or unknown."""

    def __init__(self, problems: str | list[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        n = len(self.problems)
        head = "invalid configuration" if n == 1 else f"invalid configuration: {n} problems"
        super().__init__(head + ":\n" + "\n".join(f"  - {p}" for p in self.problems))
