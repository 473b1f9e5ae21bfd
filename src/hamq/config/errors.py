"""The one exception the config loader raises.

A config error is read by an operator at 3 a.m. or by Ansible's ``validate:``,
so it always names the file, the line, what is wrong and how to fix it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union


class ConfigError(ValueError):
    """``str()`` is ``"<file>:<line>: <problem>. Fix: <fix>"``.

    ``line`` is ``None`` only when no line applies (the file cannot be read);
    then ``str()`` is ``"<file>: <problem>. Fix: <fix>"``.
    """

    def __init__(self, path: Union[str, Path], line: Optional[int], problem: str, fix: str):
        self.path = str(path)
        self.line = line
        self.problem = problem.rstrip(". ")
        self.fix = fix.rstrip(". ")
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.problem}. Fix: {self.fix}."

    def to_dict(self) -> dict:
        """For ``hamq check-config --json``."""
        return {
            "ok": False,
            "file": self.path,
            "line": self.line,
            "problem": self.problem,
            "fix": self.fix,
            "message": str(self),
        }
