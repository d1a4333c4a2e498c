"""What stands in front of every route of the serving app: one pure ASGI middleware.

It turns an exception that no handler foresaw into a JSON 500 that carries a request id (in the
body and the ``X-Request-ID`` header, and in the log line with the traceback), without closing
the client's keep-alive connection: Starlette's own error middleware answers, then re-raises,
and uvicorn then drops the connection.
"""

from __future__ import annotations

import hmac
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def token_matches(authorization: str, token: str) -> bool:
    """Whether an ``Authorization`` header value is ``Bearer <token>``, compared in constant
    time as bytes (a header may hold any byte; ``hmac.compare_digest`` refuses non-ASCII
    text). Starlette decodes header bytes as Latin-1, so encoding back gives the bytes sent."""
    if not authorization.startswith("Bearer "):
        return False
    given = authorization[7:].encode("latin-1", errors="replace")
    return hmac.compare_digest(given, token.encode("utf-8"))


async def send_json(
    send: Send, status: int, body: Any, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


class Guard:
    """The middleware (``app.add_middleware(Guard)``): the last word on any request."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            request_id = uuid.uuid4().hex
            log.exception(
                "request %s: %s %s failed", request_id, scope.get("method"), scope.get("path")
            )
            if started:  # half an answer has gone out: only closing the connection ends it
                raise
            body = {
                "detail": "internal server error; the server's log has the cause under this id",
                "request_id": request_id,
            }
            await send_json(send, 500, body, [(b"x-request-id", request_id.encode())])
