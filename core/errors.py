"""Errors that carry a one-line, user-facing message."""


class SelbenchError(Exception):
    """Base of every error the CLI reports as one line (no traceback by default)."""


class ConfigError(SelbenchError):
    """A config value is out of range or names something that does not exist."""


class DataError(SelbenchError):
    """Data files are missing or malformed."""


class DivergedError(SelbenchError):
    """Training produced a non-finite loss."""

    def __init__(self, step: int, what: str = "loss"):
        super().__init__(f"{what} became NaN/inf at step {step}")
        self.step = step
