"""Errors that carry a one-line, user-facing message."""
from __future__ import annotations


class SelbenchError(Exception):
    """Base of every error the CLI reports as one line (no traceback by default)."""


class ConfigError(SelbenchError):
    """A config value is out of range or names something that does not exist."""


class DataError(SelbenchError):
    """Data files are missing or malformed."""


class WriteError(SelbenchError, OSError):
    """A file could not be written; the message names it.  Also an ``OSError`` (same errno and
    ``strerror``), so code that handles failed writes as ``OSError`` keeps working."""

    def __init__(self, path, cause: OSError):
        super().__init__(cause.errno, cause.strerror or str(cause), str(path))
        self.path = str(path)

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.strerror}"

    def __reduce__(self):  # picklable, for errors that cross a process launcher
        return WriteError, (self.path, OSError(self.errno, self.strerror))


class DivergedError(SelbenchError):
    """Training produced a non-finite loss."""

    def __init__(self, step: int, what: str = "loss"):
        super().__init__(f"{what} became NaN/inf at step {step}")
        self.step = step
