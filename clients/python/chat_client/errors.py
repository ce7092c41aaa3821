"""Exceptions raised by the SDK.

REST failures become :class:`ApiError` subclasses chosen by HTTP status, filled from the
service's ``application/problem+json`` body, so callers can ``except NotFound`` rather
than compare numbers. WebSocket refusals of a send become :class:`SendRefused`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ChatClientError(Exception):
    """Base of every exception the SDK raises on purpose."""


class TransportError(ChatClientError):
    """The service could not be reached, or the connection broke mid-request."""


class NotAuthenticated(ChatClientError):
    """The call needs an access token and the client holds none (log in first)."""


class ApiError(ChatClientError):
    """A REST answer with a 4xx or 5xx status, described by its problem+json body."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str = "",
        type: str = "about:blank",
        code: str | None = None,
        errors: list[Mapping[str, Any]] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {title}: {detail}" if title else f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.title = title
        self.type = type
        self.code = code
        self.errors = errors or []
        self.retry_after = retry_after


class BadRequest(ApiError):
    """400: the request could not be read at all."""


class Unauthorized(ApiError):
    """401: the token is missing, invalid or expired, or the credentials are wrong."""


class Forbidden(ApiError):
    """403: the caller may not do this (for example, a non-owner adding members)."""


class NotFound(ApiError):
    """404: no such resource, or it belongs to someone else."""


class Conflict(ApiError):
    """409: a username or email is taken, or a similar clash."""


class PayloadTooLarge(ApiError):
    """413: the body is over the service's limit."""


class InvalidInput(ApiError):
    """422: well-formed but refused; ``errors`` lists the offending fields."""


class RateLimited(ApiError):
    """429: throttled; ``retry_after`` says how many seconds to wait."""


class ServiceUnavailable(ApiError):
    """503: the service is overloaded or a dependency is down; retry later."""


class InternalServerError(ApiError):
    """Any other 5xx answer."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: InvalidInput,
    429: RateLimited,
    503: ServiceUnavailable,
}


def error_for_status(
    status: int, problem: Mapping[str, Any], retry_after: float | None
) -> ApiError:
    """The exception for an error answer, from its status and (possibly empty) body."""
    cls = _BY_STATUS.get(status) or (InternalServerError if status >= 500 else ApiError)
    raw_errors = problem.get("errors")
    errors = [e for e in raw_errors or () if isinstance(e, Mapping)]
    code = problem.get("code")
    return cls(
        status,
        str(problem.get("detail") or problem.get("title") or "request failed"),
        title=str(problem.get("title") or ""),
        type=str(problem.get("type") or "about:blank"),
        code=code if isinstance(code, str) else None,
        errors=errors,
        retry_after=retry_after,
    )


class SendRefused(ChatClientError):
    """The gateway refused a message for good (``not_member``, ``invalid``, ...)."""

    def __init__(self, code: str, message: str, client_id: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.client_id = client_id


class SessionClosed(ChatClientError):
    """The realtime session was closed (by the caller or for good by the server)."""
