"""Domain errors. Domain code raises these; the web layer turns them into problem+json.

Nothing here knows about HTTP frameworks: a status code is just a number the web layer
reads, and the WebSocket core maps the same errors to error frames.
"""

from __future__ import annotations


class ChatError(Exception):
    """Base of every error a client may see. ``detail`` must be safe to show."""

    status = 400
    code = "bad_request"
    title = "Bad request"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title


class Invalid(ChatError):
    status = 422
    code = "invalid"
    title = "Invalid input"


class TooLarge(ChatError):
    status = 413
    code = "too_large"
    title = "Content too large"


class Unauthorized(ChatError):
    status = 401
    code = "unauthorized"
    title = "Unauthorized"


class Forbidden(ChatError):
    status = 403
    code = "forbidden"
    title = "Forbidden"


class NotFound(ChatError):
    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(ChatError):
    status = 409
    code = "conflict"
    title = "Conflict"


class RateLimited(ChatError):
    status = 429
    code = "rate_limited"
    title = "Too many requests"

    def __init__(self, retry_after: float, detail: str | None = None) -> None:
        super().__init__(detail or "Too many requests; retry later.")
        # Whole seconds for the Retry-After header; milliseconds for error frames.
        self.retry_after = max(1, int(retry_after + 0.999))
        self.retry_after_ms = max(1, int(retry_after * 1000 + 0.999))


class Unavailable(ChatError):
    status = 503
    code = "unavailable"
    title = "Service unavailable"
