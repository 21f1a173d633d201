"""ASGI middleware of the HTTP API: the body's size limit and its read timeout, enforced before any of the body
reaches the app."""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kronos.api.errors import error_body


class BodyLimit:
    """A request body over `limit` bytes (declared or sent) gets 413 before any of it reaches the app."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        chunks, size, more = [], int(declared) if declared.isdigit() else 0, True
        while more and size <= self.limit:
            message = await receive()
            if message["type"] != "http.request":
                return
            chunks.append(message.get("body", b""))
            size, more = sum(map(len, chunks)), message.get("more_body", False)
        if size > self.limit:
            text = f"the request body is over {self.limit // 2**20} MiB; send fewer candles (the lookback is enough)"
            return await error_body(413, text)(scope, receive, send)
        body: list[Message] = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay() -> Message:
            return body.pop() if body else await receive()

        await self.app(scope, replay, send)


class BodyTimeout:
    """A request body not received in full within `timeout` seconds of the request's start gets 408 (a client
    trickling its body, or one that stopped sending it) and its connection closed, so it holds no worker or socket
    for longer; what comes after the body (the wait for a disconnect) is not timed."""

    def __init__(self, app: ASGIApp, timeout: float):
        self.app, self.timeout = app, timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        deadline, reading, started = asyncio.get_running_loop().time() + self.timeout, [True], [False]

        async def timed() -> Message:
            if not reading[0]:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - asyncio.get_running_loop().time()))
            except TimeoutError:
                raise _BodyTimedOut from None
            reading[0] = message["type"] == "http.request" and message.get("more_body", False)
            return message

        async def sending(message: Message) -> None:
            started[0] = True
            await send(message)

        try:
            await self.app(scope, timed, sending)
        except _BodyTimedOut:
            if not started[0]:
                text = (f"the request body did not arrive within {self.timeout:g} s; send it at once (a slow or "
                        "stalled upload is cut off)")
                await error_body(408, text, headers={"Connection": "close"})(scope, receive, send)


class _BodyTimedOut(Exception):
    """The body's read timeout passed: BodyTimeout answers 408."""
