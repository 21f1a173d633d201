"""ASGI middleware of the HTTP API: the body size limit, enforced before any of the body reaches the app."""

from __future__ import annotations

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
