"""Every error the package raises on purpose: one base class, one subclass per thing a caller can act on.

The front ends map these to what they show: the CLI prints one line and exits 2, the HTTP API picks a
status code (kronos.api), the dashboard a message with what to do next.
"""

from __future__ import annotations

EXCERPT_CHARS = 40  # of any input quoted back in a message
MAX_PROBLEMS = 20  # problems one error lists; the rest are counted


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """`value` quoted (repr) for a message, cut to about `limit` characters with its length said when longer."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def listed(items: list[str], limit: int = MAX_PROBLEMS, noun: str = "problem(s)") -> list[str]:
    """The first `limit` items, then "and N more <noun>" for the rest."""
    return items if len(items) <= limit else [*items[:limit], f"and {len(items) - limit:,} more {noun}"]


class KronosError(Exception):
    """Base class of every error this package raises on purpose."""

    def public(self) -> str:
        """The message a remote client may read (HTTP API answers): no server paths. Default: the message."""
        return str(self)


class InvalidInputError(KronosError, ValueError):
    """An argument or an input frame is unusable; `problems` lists each reason, worded for people (at most
    MAX_PROBLEMS of them, then a count of the rest)."""

    def __init__(self, problems: list[str] | str):
        self.problems = listed([problems] if isinstance(problems, str) else list(problems))
        super().__init__("; ".join(self.problems))


class WeightsUnavailableError(KronosError):
    """Model weights or configs could not be found, downloaded or loaded; `path`, a local directory at fault, is named
    in the message for the operator and replaced by `label` (its run's name, a hub id) in `public()`."""

    def __init__(self, message: str, path: str | None = None, label: str = "the checkpoint"):
        super().__init__(message)
        self.path, self.label = path, label

    def public(self) -> str:
        return str(self) if not self.path else str(self).replace(self.path, self.label)


class DataUnavailableError(KronosError):
    """Market data could not be had from any source (network, exchange, local store)."""


class StoreUnavailableError(DataUnavailableError):
    """The local store cannot be used (read-only, not creatable, not SQLite, damaged); `path` is where it is.

    The message names the path and what to do (for the CLI and the dashboard's operator); `public()` does not."""

    def __init__(self, problem: str, path: str, advice: str):
        super().__init__(f"the local store {path} {problem}; {advice}")
        self.path, self.problem, self.advice = path, problem, advice

    def public(self) -> str:
        return f"the server's local store {self.problem}; its operator can fix this (the server log says how)"


class ExchangeUnreachableError(DataUnavailableError):
    """An exchange could not be reached in time, refused (rate limit, region) or sent unusable data."""


class UnknownMarketError(DataUnavailableError):
    """The exchange, symbol or timeframe does not exist where it was asked for."""


class EmptyStoreError(DataUnavailableError):
    """The local store holds no candles for the market asked for; `path` is the store's, named in the message for
    the CLI and the dashboard's operator and left out of `public()`."""

    def __init__(self, message: str, path: str | None = None):
        super().__init__(message)
        self.path = path

    def public(self) -> str:
        return str(self) if not self.path else str(self).replace(f" {self.path}", "")


class ConfigurationError(KronosError):
    """The configuration is unusable: a KRONOS_* environment variable's value, named with what it takes."""


class RetryLaterError(KronosError):
    """The work cannot be done now; `retry_after` is a guess, in whole seconds, of when to try again."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class ServiceBusyError(RetryLaterError):
    """Every worker is busy and the queue is full."""


class ServiceTimeoutError(RetryLaterError):
    """The work did not finish within the stated deadline."""


class WorkCancelledError(ServiceTimeoutError):
    """The work was stopped: every caller waiting for it timed out or went away (kronos.cancellation)."""
