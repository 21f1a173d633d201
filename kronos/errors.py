"""The errors the package raises: one base class, one subclass per thing a caller can act on."""

from __future__ import annotations


class KronosError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidInputError(KronosError, ValueError):
    """An argument or an input frame is unusable; `problems` lists each reason, worded for people."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class WeightsUnavailableError(KronosError):
    """Model weights or configs could not be found, downloaded or loaded."""


class DataUnavailableError(KronosError):
    """Market data could not be had from any source (network, exchange, local store)."""
