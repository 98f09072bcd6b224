"""Request ids and the access log (a pure ASGI middleware: streamed bodies pass untouched).

Each request gets an id: the caller's ``X-Request-ID`` when it is a plausible one (a proxy's or
a platform's, so that its logs and ours can be joined), else a new one. The id is bound to the
logging context for the whole request (``request_id`` on every line it logs, the service calls
it makes in threads included) and returned in the ``X-Request-ID`` response header. When the
response ends, one ``http.request`` line: method, path (never the query string, which may hold
search terms), status, duration. Probes and scrapes log it at DEBUG.
"""

from __future__ import annotations

import logging
import re
import uuid
from time import perf_counter
from typing import Any

import structlog
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-ID"
_ACCEPTED = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

_logger = logging.getLogger("archive_service.api.access")


def request_id_of(scope: Scope) -> str:
    """The caller's request id if acceptable, else a new random one."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate = bytes(value).decode("latin-1")
            if _ACCEPTED.match(candidate):
                return candidate
            break
    return uuid.uuid4().hex


class RequestContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        started = perf_counter()
        status: dict[str, Any] = {"code": 500}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                MutableHeaders(scope=message).append(HEADER, request_id)
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                path = scope.get("path", "")
                _logger.log(
                    logging.DEBUG if path in QUIET_PATHS else logging.INFO,
                    "http.request",
                    extra={
                        "method": scope.get("method"),
                        "path": path,
                        "status": status["code"],
                        "duration_ms": round((perf_counter() - started) * 1000, 3),
                    },
                )
