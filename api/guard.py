"""Checks every HTTP request passes before any route sees it: NUL bytes in the URL, the bearer token,
and the body size counted while the body streams in. HEAD is answered as GET without the body.

A plain ASGI middleware rather than a dependency, so that it runs before the body is read: an
unauthenticated or oversized upload is refused without spooling a byte of it, and a route added later
cannot forget the token check.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from store.settings import Settings

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
OPEN_PATHS = ("/healthz", "/docs", "/docs/oauth2-redirect", "/openapi.json")
"""Always open, even with ``protect_reads``: liveness probes and the API's own documentation."""
UPLOAD_PATHS = frozenset({"/models/upload"})


class BodyTooLarge(Exception):
    """Raised from ``receive`` once the body has passed its limit; the guard answers 413."""


def token_matches(authorization: str | None, token: str) -> bool:
    """``Authorization: Bearer <token>``, compared in constant time."""
    if not authorization:
        return False
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def needs_token(method: str, path: str, settings: Settings) -> bool:
    if not settings.api_token or path in OPEN_PATHS or path.startswith("/docs/assets/"):
        return False
    return method in MUTATING_METHODS or settings.protect_reads


def body_limit(path: str, settings: Settings) -> int:
    return settings.max_upload_bytes if path in UPLOAD_PATHS else settings.max_request_bytes


def nul_in_url(scope: Scope) -> str | None:
    """Where a NUL byte is in the URL (decoded path or query string), else None."""
    if "\x00" in scope.get("path", ""):
        return "path"
    if b"\x00" in unquote_to_bytes(scope.get("query_string", b"")):
        return "query"
    return None


def _error(status: int, detail: Any, headers: dict[str, str] | None = None) -> tuple[dict[str, Any], bytes]:
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return {"type": "http.response.start", "status": status, "headers": raw}, body


async def _answer(send: Send, status: int, detail: Any, headers: dict[str, str] | None = None) -> None:
    start, body = _error(status, detail, headers)
    await send(start)
    await send({"type": "http.response.body", "body": body})


def _headers_only(send: Send) -> Send:
    """HEAD is GET without the body (RFC 9110): same status and headers, Content-Length included."""

    async def send_head(message: Message) -> None:
        if message["type"] == "http.response.body":
            if not message.get("more_body", False):
                await send({"type": "http.response.body", "body": b""})
            return
        await send(message)

    return send_head


class RequestGuard:
    """``settings`` is called per request, so tests that override ``get_settings`` reach it too."""

    def __init__(self, app: ASGIApp, settings: Callable[[], Settings]) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope.get("method") == "HEAD":
            await self(dict(scope, method="GET"), receive, _headers_only(send))
            return
        settings = self.settings()
        refusal = refuse_before_body(scope, settings)
        if refusal is not None:
            await _answer(send, *refusal)
            return
        path = scope.get("path", "")
        await _run_with_body_limit(self.app, scope, receive, send, body_limit(path, settings), path)


Refusal = tuple[int, Any, dict[str, str] | None]


def refuse_before_body(scope: Scope, settings: Settings) -> Refusal | None:
    """Status, detail and headers of the answer to a request refused on its URL and headers alone, else None:
    a NUL byte in the URL (422), a missing or wrong bearer token (401), a declared body over the limit (413)."""
    path, method = scope.get("path", ""), scope.get("method", "GET")
    where = nul_in_url(scope)
    if where is not None:
        return 422, [{"loc": [where], "msg": f"the {where} contains a NUL byte (%00)", "type": "nul_byte"}], None
    headers = dict(scope.get("headers", []))
    if needs_token(method, path, settings):
        auth = headers.get(b"authorization", b"").decode("latin-1")
        if not token_matches(auth, settings.api_token or ""):
            what = "a wrong" if auth else "no"
            detail = f"{what} bearer token: send 'Authorization: Bearer <NETREDUCE_API_TOKEN>'"
            return 401, detail, {"WWW-Authenticate": 'Bearer realm="netreduce"'}
    limit = body_limit(path, settings)
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return 413, _too_large(limit, path), None
    return None


def _too_large(limit: int, path: str) -> str:
    return f"the request body is larger than {limit} bytes (the limit for {path})"


async def _run_with_body_limit(app: ASGIApp, scope: Scope, receive: Receive, send: Send, limit: int, path: str) -> None:
    """Run the app, counting the body as it streams in; past ``limit`` the answer is a 413, whatever the app
    made of the interrupted read (FastAPI turns an exception while reading the body into a 400)."""
    too_large = _too_large(limit, path)
    received = 0
    exceeded = started = False

    async def limited_receive() -> Message:
        nonlocal received, exceeded
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                exceeded = True
                raise BodyTooLarge(too_large)
        return message

    async def guarded_send(message: Message) -> None:
        nonlocal started
        if exceeded:
            if message["type"] == "http.response.start" and not started:
                started = True
                await _answer(send, 413, too_large)
            return
        if message["type"] == "http.response.start":
            started = True
        await send(message)

    try:
        await app(scope, limited_receive, guarded_send)
    except BodyTooLarge:
        if started:
            raise
        await _answer(send, 413, too_large)
