"""Stopping work nobody waits for any more: a token per job, checked at every generation step and before writes.

kronos.serving.service gives each job a Token and makes it the job's thread's current token while the job runs; it
cancels the token once every caller waiting for the job has timed out or gone away (a closed connection).
kronos.serving.jobs does the same for background jobs once their last waiter's lease is dropped or lapses.
Work then stops at its next check and writes nothing more: kronos.serving.batching checks the token of each waiting
request (its forecasts in a shared batch stop once every request of the batch is cancelled; the others go
on), and the store's writes of backtest paths check the current token first.

For an ASGI app (the HTTP API), `DisconnectWatch` notices a client that closed its connection while its request
is being worked on: `client_gone(request.scope)` is then set, for `ForecastService.run(..., cancel=...)`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

from kronos.errors import WorkCancelledError

Message = MutableMapping[str, Any]
SCOPE_KEY = "kronos.client_gone"  # the request scope's entry DisconnectWatch sets
PAUSE_S = 2.0  # the longest a background job's check waits for interactive work to end
_local = threading.local()
_idle = threading.Event()  # set while no interactive work is in flight
_idle.set()
_interactive = [0]
_counting = threading.Lock()


class Token:
    """Whether a job should stop; `cancel` is final. A `background` job's forecasts yield to interactive ones
    (kronos.serving.batching serves those first); while `paused` (its registry gave its turn to another job:
    kronos.serving.jobs) the batcher sets its forecasts aside."""

    def __init__(self, background: bool = False) -> None:
        self._event = threading.Event()
        self.background = background
        self.paused = False

    def cancel(self) -> None:
        """Ask the job to stop at its next check."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise WorkCancelledError once cancelled; a background job first waits (at most PAUSE_S) while interactive
        work is in flight, so that it does not take the cores from a forecast someone is waiting for."""
        if self.background and not _idle.is_set():
            _idle.wait(PAUSE_S)
        if self._event.is_set():
            raise WorkCancelledError("the work was stopped: every caller waiting for it timed out or went away", 1)


def current() -> Token | None:
    """The token of the job this thread runs (None outside a job)."""
    return getattr(_local, "token", None)


def check_current() -> None:
    """Raise WorkCancelledError when this thread's job has been cancelled (nothing outside a job)."""
    token = current()
    if token is not None:
        token.check()


@contextmanager
def running(token: Token) -> Iterator[Token]:
    """Make `token` this thread's current token for the block."""
    previous, _local.token = current(), token
    try:
        yield token
    finally:
        _local.token = previous


@contextmanager
def interactive() -> Iterator[None]:
    """Mark the block as interactive work in flight (a forecast someone waits for): background jobs pause at their
    checks meanwhile (at most PAUSE_S each time)."""
    with _counting:
        _interactive[0] += 1
        _idle.clear()
    try:
        yield
    finally:
        with _counting:
            _interactive[0] -= 1
            if _interactive[0] == 0:
                _idle.set()


def client_gone(scope: MutableMapping[str, Any]) -> threading.Event:
    """Set once the client of this HTTP request closed its connection (with DisconnectWatch; never set without)."""
    return scope.get(SCOPE_KEY) or threading.Event()


class DisconnectWatch:
    """ASGI middleware: it reads a request's body (add it inside a body-size limit), hands it to the app, and
    listens meanwhile for the client's http.disconnect, which sets `client_gone(scope)`; the app's later reads
    get that message as they would have."""

    def __init__(self, app: Callable[..., Awaitable[None]]):
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        gone = scope[SCOPE_KEY] = threading.Event()
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # gone before its request was sent: nothing to answer
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def listen() -> Message:
            message = await receive()
            if message["type"] == "http.disconnect":
                gone.set()
            return message

        listener = asyncio.ensure_future(listen())

        async def replay() -> Message:
            return body.pop() if body else await asyncio.shield(listener)

        try:
            await self.app(scope, replay, send)
        finally:
            listener.cancel()
