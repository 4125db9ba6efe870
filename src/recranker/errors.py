"""User-facing errors: one line, naming the file/line or parameter at fault.

The CLI catches :class:`RecrankerError` and prints ``error: <message>`` with exit code 2,
so every message must stand on its own in a single line.
"""

from __future__ import annotations

from pathlib import Path


class RecrankerError(Exception):
    """A problem the user can fix (bad input, bad parameter, missing file)."""


class ParamError(RecrankerError):
    """A hyper-parameter the library found wrong once it saw the data or the model.

    ``key`` is relative to the settings object the library was given (``lora.target_modules``);
    the stage that passed that section names it in full with :meth:`within`.
    """

    def __init__(self, key: str, problem: str):
        self.key, self.problem = key, problem
        super().__init__(f"{key}: {problem}")

    def within(self, section: str) -> ParamError:
        return ParamError(f"{section}.{self.key}", self.problem)


class DataFormatError(RecrankerError):
    """A raw data file does not match its documented format."""

    def __init__(self, path: str | Path, line: int | None, problem: str):
        self.path, self.line, self.problem = str(path), line, problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")
