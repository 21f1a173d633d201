"""Every error the package raises on purpose: one base class, one subclass per thing a caller can act on.

The front ends map these to what they show: the CLI prints one line and exits 2, the HTTP API picks a
status code (kronos.api), the dashboard a message with what to do next.
"""

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


class ExchangeUnreachableError(DataUnavailableError):
    """An exchange could not be reached in time, refused (rate limit, region) or sent unusable data."""


class UnknownMarketError(DataUnavailableError):
    """The exchange, symbol or timeframe does not exist where it was asked for."""


class EmptyStoreError(DataUnavailableError):
    """The local store holds no candles for the market asked for."""


class RetryLaterError(KronosError):
    """The work cannot be done now; `retry_after` is a guess, in whole seconds, of when to try again."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class ServiceBusyError(RetryLaterError):
    """Every worker is busy and the queue is full."""


class ServiceTimeoutError(RetryLaterError):
    """The work did not finish within the stated deadline."""
