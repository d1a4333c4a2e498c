"""What stands in front of every route of the serving app: one pure ASGI middleware.

In order, for every HTTP request:

1. **Host.** With a list of allowed hosts, a request whose ``Host`` header names another is a
   400, so that a page in a browser cannot reach a loopback server through a name of its own
   (DNS rebinding). The default, chosen by ``flywheel serve``, is the loopback names when the
   server is bound to loopback (:func:`default_allowed_hosts`).
2. **Token.** With a token, every path but ``/health`` (``/model``, ``/docs`` and
   ``/openapi.json`` too) needs ``Authorization: Bearer <token>``, else 401.
3. **Errors.** An exception no handler foresaw becomes a JSON 500 that carries a request id (in
   the body, the ``X-Request-ID`` header, and the log line with the traceback), without closing
   the client's keep-alive connection: Starlette's own error middleware answers, then re-raises,
   and uvicorn then drops the connection.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/health"})  # answered without the token
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def default_allowed_hosts(bind: str) -> list[str] | None:
    """The Host names a server bound to ``bind`` answers to by default: the loopback names
    (and ``bind`` itself) when it is a loopback address or ``localhost``; None (any Host) when
    it is bound to another address, which clients may reach by names it cannot know."""
    name = bind.strip().strip("[]").lower()
    if name == "localhost":
        return list(LOOPBACK_NAMES)
    try:
        loopback = ipaddress.ip_address(name).is_loopback
    except ValueError:
        return None
    if not loopback:
        return None
    return list(dict.fromkeys([*LOOPBACK_NAMES, name]))


def host_name(header: str) -> str:
    """The name in a Host header value, lowercased, without port or brackets (``[::1]:8000``
    is ``::1``) or a trailing dot."""
    value = header.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        value = value[1:end] if end > 0 else value
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def host_allowed(name: str, allowed: Sequence[str]) -> bool:
    """Whether ``name`` is one of ``allowed`` (``*`` is any; ``*.example.com`` any name under
    example.com)."""
    for entry in allowed:
        entry = host_name(entry)
        if entry == "*" or entry == name:
            return True
        if entry.startswith("*.") and name.endswith(entry[1:]):
            return True
    return False


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
    """The middleware (``app.add_middleware(Guard, ...)``): the first and last word on any
    request. ``allowed_hosts`` None: any Host; ``api_token`` None: no token."""

    def __init__(
        self,
        app: ASGIApp,
        api_token: str | None = None,
        allowed_hosts: Sequence[str] | None = None,
    ):
        self.app = app
        self.api_token = api_token or None
        self.allowed_hosts = None if allowed_hosts is None else list(allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.allowed_hosts is not None or self.api_token is not None:
            headers = {k: v for k, v in scope["headers"] if k in (b"host", b"authorization")}
            if self.allowed_hosts is not None:
                name = host_name(headers.get(b"host", b"").decode("latin-1"))
                if not host_allowed(name, self.allowed_hosts):
                    detail = "the Host header names a host this server does not answer to"
                    await send_json(send, 400, {"detail": detail})
                    return
            if self.api_token is not None and scope["path"] not in OPEN_PATHS:
                given = headers.get(b"authorization", b"").decode("latin-1")
                if not token_matches(given, self.api_token):
                    body = {"detail": "a valid bearer token is required"}
                    await send_json(send, 401, body, [(b"www-authenticate", b"Bearer")])
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
