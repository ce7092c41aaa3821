"""Security headers on every HTTP answer of every service.

The APIs answer JSON only, so the strictest policy fits them: nothing may be framed,
sniffed into another type, or leak the URL (which may carry a cursor) as a referrer.
The gateway also serves the web client, whose page gets a Content-Security-Policy that
allows its own scripts and styles only; the client talks to auth and history, which
may sit on other origins, so ``connect-src`` allows any http(s) and ws(s) endpoint.
The same policy is in the page's ``<meta>`` tag; only the header can say
``frame-ancestors`` (no clickjacking).

A plain ASGI wrapper, not a BaseHTTPMiddleware: it adds headers to the start message
and never buffers a body. WebSocket scopes pass through untouched.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

WEB_CLIENT_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' http: https: ws: wss:; base-uri 'none'; form-action 'none'; "
    "object-src 'none'; frame-ancestors 'none'"
)
API_POLICY = "default-src 'none'; frame-ancestors 'none'"
# The interactive API docs load their own scripts and styles from the page.
DOCS_PATHS = ("/docs", "/redoc")

COMMON = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class SecurityHeaders:
    def __init__(self, app: ASGIApp, *, web_client: bool = False) -> None:
        self.app = app
        self.web_client = web_client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        policy = self._policy(path)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[Any] = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(k, v) for k, v in COMMON if k not in present]
                if policy is not None and b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", policy))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)

    def _policy(self, path: str) -> bytes | None:
        if path.startswith(DOCS_PATHS):
            return None
        if self.web_client and not path.startswith(("/v1/", "/healthz", "/readyz", "/metrics")):
            return WEB_CLIENT_POLICY.encode()
        return API_POLICY.encode()
