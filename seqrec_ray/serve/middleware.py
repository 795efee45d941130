"""ASGI guards in front of the routes: API key and request-body size.

Plain ASGI (not Starlette's BaseHTTPMiddleware) so an oversized body is refused before
any of it reaches JSON parsing, whatever Content-Length claims.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.responses import JSONResponse

from .schemas import error_body

API_KEY_HEADER = "x-api-key"
OPEN_PATHS = ("/healthz",)  # load balancers probe health without credentials

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class ApiKeyMiddleware:
    """401 unless the request carries the key in ``X-API-Key`` or ``Authorization: Bearer``."""

    def __init__(self, app: Any, api_key: str) -> None:
        self.app = app
        self._key = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _path(scope) in OPEN_PATHS or self._authorised(scope):
            return await self.app(scope, receive, send)
        response = JSONResponse(
            error_body("missing or wrong API key: send it as 'X-API-Key: KEY' or 'Authorization: Bearer KEY'"),
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)

    def _authorised(self, scope: Scope) -> bool:
        headers = dict(scope.get("headers") or [])
        given = headers.get(API_KEY_HEADER.encode())
        auth = headers.get(b"authorization", b"")
        if given is None and auth[:7].lower() == b"bearer ":
            given = auth[7:].strip()
        return given is not None and hmac.compare_digest(given, self._key)


class BodyLimitMiddleware:
    """413 for a body over ``max_bytes`` (declared or actual); the app sees a buffered body."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self._max = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                return await _error(scope, receive, send, 400, f"Content-Length {declared.decode(errors='replace')!r} is not a number")
            if int(declared) > self._max:
                return await _error(scope, receive, send, 413, f"body of {int(declared)} bytes is over the limit of {self._max} bytes")
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self._max:
                return await _error(scope, receive, send, 413, f"body is over the limit of {self._max} bytes")
        await self.app(scope, _replay(bytes(body), receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # later calls wait for the disconnect, as the server would

    return replay


async def _error(scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
    await JSONResponse(error_body(detail), status_code=status)(scope, receive, send)


def _path(scope: Scope) -> str:
    path = scope.get("path", "")
    root = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path
